//! The classifier against a labelled set of 375 varied requests (tests/data/labelled_prompts.jsonl,
//! written by a person who did not see the vocabulary). Prints per-type precision and recall;
//! the README's table comes from this output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hermes::classify::{Classifier, JobType};
use hermes::config::Policies;
use hermes::openai::{parse_request, Endpoint};
use serde_json::Value;

#[test]
fn classification_accuracy_on_the_labelled_set() {
    let classifier = Classifier::new(&Policies::builtin().vocabulary).unwrap();
    let data = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/labelled_prompts.jsonl")).unwrap();
    let mut confusion = [[0u32; 6]; 6];
    let mut misses = Vec::new();
    for line in data.lines().filter(|l| !l.trim().is_empty()) {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let label = JobType::parse(v["label"].as_str().unwrap()).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("label");
        obj.insert("model".into(), "auto".into());
        let request = parse_request(Endpoint::ChatCompletions, Value::Object(obj.clone()).to_string().as_bytes()).unwrap();
        let got = classifier.classify(&request).job_type;
        let (l, g) = (JobType::ALL.iter().position(|j| *j == label).unwrap(), JobType::ALL.iter().position(|j| *j == got).unwrap());
        confusion[l][g] += 1;
        if l != g {
            let last = obj["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap_or("").chars().take(90).collect::<String>();
            misses.push(format!("{} -> {}: {}", label.as_str(), got.as_str(), last.replace('\n', " ")));
        }
    }
    let total: u32 = confusion.iter().flatten().sum();
    let correct: u32 = (0..6).map(|i| confusion[i][i]).sum();
    println!("| job type | prompts | precision | recall |\n|---|---|---|---|");
    let mut worst_recall: f64 = 1.0;
    for (i, j) in JobType::ALL.iter().enumerate() {
        let labelled: u32 = confusion[i].iter().sum();
        let predicted: u32 = (0..6).map(|r| confusion[r][i]).sum();
        let precision = confusion[i][i] as f64 / predicted.max(1) as f64;
        let recall = confusion[i][i] as f64 / labelled.max(1) as f64;
        worst_recall = worst_recall.min(recall);
        println!("| {} | {labelled} | {:.0}% | {:.0}% |", j.as_str(), precision * 100.0, recall * 100.0);
    }
    let accuracy = correct as f64 / total as f64;
    println!("| all | {total} | accuracy {:.1}% | |", accuracy * 100.0);
    for m in &misses {
        println!("miss: {m}");
    }
    assert!(total >= 300, "the labelled set has {total} prompts");
    assert!(accuracy >= 0.80, "accuracy {accuracy:.3} is below 80%");
    assert!(worst_recall >= 0.60, "a job type is recognised less than 60% of the time");
}
