//! The classifier as a user meets it, through the real `hermes` binary:
//! - `hermes classifier eval` on the held-out fifth of the shipped corpus (split once by FNV-1a 64
//!   of the last user turn, held out when divisible by 5; nothing was tuned on it);
//! - the vocabulary's rules (no phrase listed twice, none that fits just one training prompt);
//! - a user teaching it their own domain with `hermes classifier train`;
//! - a person's correction posted to /feedback, trained on with `--from-db`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{hermes_once, post_json, scratch_dir, Hermes};
use serde_json::Value;
use std::path::{Path, PathBuf};

const CORPUS: [&str; 18] = [
    "corpus-a", "corpus-b", "corpus-c", "corpus-d", "corpus-e", "corpus-f", "corpus-g", "corpus-h", "corpus-i", "corpus-j", "corpus-k", "corpus-l", "corpus-m",
    "corpus-n", "corpus-o", "corpus-p", "corpus-q", "corpus-r",
];

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/classify").join(format!("{name}.jsonl"))
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn last_user(line: &Value) -> String {
    let m = line["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "user").unwrap();
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

fn lines(name: &str) -> Vec<Value> {
    std::fs::read_to_string(data(name)).unwrap().lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The shipped corpus split as the gateway splits it: (train, held out).
fn split() -> (Vec<Value>, Vec<Value>) {
    CORPUS.iter().flat_map(|c| lines(c)).partition(|l| !fnv1a(&last_user(l)).is_multiple_of(5))
}

fn write_lines(dir: &Path, name: &str, rows: &[Value]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    path
}

/// `hermes classifier eval`'s accuracy and per-type recall, from its table.
struct Eval {
    accuracy: f64,
    recalls: Vec<(String, f64)>,
    table: String,
}

fn eval(file: &Path, policies: Option<&Path>) -> Eval {
    let mut args = vec!["classifier", "eval", "--data", file.to_str().unwrap()];
    if let Some(p) = policies {
        args.extend(["--policies", p.to_str().unwrap()]);
    }
    let out = hermes_once(&[], &args);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{table}{}", String::from_utf8_lossy(&out.stderr));
    let pct = |s: &str| s.trim().trim_end_matches('%').parse::<f64>().unwrap() / 100.0;
    let mut recalls = Vec::new();
    let mut accuracy = f64::NAN;
    for row in table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| job type")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        if cells[0] == "all" {
            accuracy = pct(cells[2].trim_start_matches("accuracy"));
        } else if cells[3] != "-" {
            recalls.push((cells[0].to_string(), pct(cells[3])));
        }
    }
    Eval { accuracy, recalls, table }
}

/// The issue's targets, asserted: accuracy >= 90% and every recall >= 80% on the held-out split.
const FLOOR_ACCURACY: f64 = 0.90;
const FLOOR_RECALL: f64 = 0.80;

#[test]
fn held_out_accuracy_and_every_types_recall_hold() {
    let (train, test) = split();
    let total = train.len() + test.len();
    assert!(total >= 3000, "the shipped corpus has {total} prompts");
    let dir = scratch_dir("classify-eval");
    let file = write_lines(&dir, "held-out.jsonl", &test);
    let e = eval(&file, None);
    println!("held-out split ({} of {total} prompts, never trained or tuned on):\n{}", test.len(), e.table);
    let met = e.accuracy >= 0.90 && e.recalls.iter().all(|(_, r)| *r >= 0.80);
    println!("targets (accuracy >= 90%, every recall >= 80%): {}", if met { "met" } else { "NOT MET" });
    assert!(e.accuracy >= FLOOR_ACCURACY, "held-out accuracy {:.1}%", e.accuracy * 100.0);
    for (job, recall) in &e.recalls {
        assert!(*recall >= FLOOR_RECALL, "{job} recall {:.1}%", recall * 100.0);
    }
    assert_eq!(e.recalls.len(), 6);
}

#[test]
fn the_corpus_is_varied_as_promised() {
    let rows: Vec<Value> = CORPUS.iter().flat_map(|c| lines(c)).collect();
    let count = |f: &dyn Fn(&Value) -> bool| rows.iter().filter(|r| f(r)).count();
    let system = count(&|r| r["messages"][0]["role"] == "system");
    let multi = count(&|r| r["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "user").count() > 1);
    let tools = count(&|r| r.get("tools").is_some());
    let json = count(&|r| r.get("response_format").is_some());
    let long = count(&|r| last_user(r).len() > 800);
    let short = count(&|r| last_user(r).split_whitespace().count() <= 6);
    let non_ascii = count(&|r| last_user(r).chars().filter(|c| c.is_alphabetic() && !c.is_ascii()).count() > 3);
    println!("{} prompts: {system} with a system prompt, {multi} multi-turn, {tools} with tools, {json} JSON mode, {long} long, {short} short, {non_ascii} in non-Latin or accented scripts", rows.len());
    for (what, n, at_least) in [
        ("system", system, 150),
        ("multi-turn", multi, 150),
        ("tools", tools, 50),
        ("json", json, 30),
        ("long", long, 60),
        ("short", short, 200),
        ("non-English", non_ascii, 600),
    ] {
        assert!(n >= at_least, "{what}: {n} < {at_least}");
    }
    // The same last turn twice would sit in one half of the split only, but say nothing new.
    let mut texts: Vec<String> = rows.iter().map(last_user).collect();
    texts.sort();
    let before = texts.len();
    texts.dedup();
    assert!(before - texts.len() <= before / 100, "{} repeated last turns", before - texts.len());
}

#[test]
fn no_phrase_is_listed_twice_or_fits_just_one_training_prompt() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/classify.toml")).unwrap();
    let vocab: toml::Value = toml::from_str(&text).unwrap();
    let (train, _) = split();
    let mut train: Vec<String> = train.iter().map(|l| last_user(l).to_ascii_lowercase()).collect();
    train.extend(lines("tuned").iter().map(|l| last_user(l).to_ascii_lowercase()));
    let matches = |phrase: &str| {
        train
            .iter()
            .filter(|t| {
                t.match_indices(phrase).any(|(i, _)| {
                    let b = t.as_bytes();
                    let ok = |c: Option<&u8>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
                    ok(i.checked_sub(1).and_then(|j| b.get(j))) && ok(b.get(i + phrase.len()))
                })
            })
            .count()
    };
    let mut single = Vec::new();
    for job in ["code_generation", "analysis", "content_creation", "research", "reasoning", "general"] {
        for tier in ["strong", "weak"] {
            for p in vocab[job][tier].as_array().unwrap() {
                let p = p.as_str().unwrap().trim().to_ascii_lowercase();
                if matches(&p) == 1 {
                    single.push(p);
                }
            }
        }
    }
    assert!(single.is_empty(), "phrases that fit one training prompt: {single:?}");

    // A repeated phrase stops the gateway from loading the folder, naming the phrase.
    let dir = scratch_dir("classify-dup");
    let phrase = vocab["code_generation"]["strong"][0].as_str().unwrap();
    let dup = text.replacen("[analysis]\nstrong = [\n", &format!("[analysis]\nstrong = [\n  \"{phrase}\",\n"), 1);
    assert_ne!(dup, text);
    std::fs::write(dir.join("classify.toml"), dup).unwrap();
    let out = hermes_once(&[], &["check-config", "--demo", "--policies", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(phrase) && err.contains("listed twice"), "{err}");
}

#[test]
fn sixty_prompts_of_a_users_domain_are_learned_and_the_rest_is_kept() {
    let dir = scratch_dir("classify-train");
    let (_, test) = split();
    let held_out = write_lines(&dir, "held-out.jsonl", &test);
    let domain_test = data("domain-test");
    let domain_train = data("domain-train");
    let before = (eval(&domain_test, None), eval(&held_out, None), eval(&domain_train, None));

    let policies = dir.join("policies");
    let out = hermes_once(&[], &["classifier", "train", "--data", data("domain-train").to_str().unwrap(), "--policies", policies.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(policies.join("classifier.bin").is_file(), "{said}");
    let after = (eval(&domain_test, Some(&policies)), eval(&held_out, Some(&policies)), eval(&domain_train, Some(&policies)));
    println!(
        "the 60 prompts taught: {:.1}% -> {:.1}%; 60 other prompts of the domain: {:.1}% -> {:.1}% (the issue's target: a rise; {}); shipped held-out: {:.1}% -> {:.1}%\n{said}",
        before.2.accuracy * 100.0,
        after.2.accuracy * 100.0,
        before.0.accuracy * 100.0,
        after.0.accuracy * 100.0,
        if after.0.accuracy > before.0.accuracy { "met" } else { "NOT MET" },
        before.1.accuracy * 100.0,
        after.1.accuracy * 100.0
    );
    // What it does hold to: the traffic it was taught is classified as taught...
    assert!(after.2.accuracy >= 0.95 && after.2.accuracy > before.2.accuracy, "the taught prompts were not learned");
    // ...the domain's prompts it was not taught are classified better too...
    assert!(after.0.accuracy > before.0.accuracy, "the domain's other prompts did not get better");
    // ...and general accuracy does not drop by more than a few points.
    assert!(after.1.accuracy >= before.1.accuracy - 0.03, "general accuracy fell by more than 3 points");

    // The gateway serves with the fitted classifier from that folder.
    let h = Hermes::start(&[], &["--demo", "--policies", policies.to_str().unwrap()]);
    let row = &lines("domain-test")[0];
    let mut body = row.clone();
    body.as_object_mut().unwrap().remove("label");
    body["model"] = "auto".into();
    let r = post_json(&format!("{}/v1/chat/completions", h.url()), None, &body.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-hermes-job-type").is_some());
}

#[test]
fn a_persons_correction_is_stored_without_the_text_and_trained_on() {
    // An ask the shipped model files under one type; people say it is another.
    let prompt = "zq-77 the usual for the Hartwell account, same as last quarter";
    let mut h = Hermes::start(&[], &["--demo"]);
    let url = format!("{}/v1/chat/completions", h.url());
    let body = serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": prompt}]}).to_string();
    let first = post_json(&url, None, &body);
    assert_eq!(first.status, 200, "{}", first.body);
    let shipped = first.header("x-hermes-job-type").unwrap().to_string();
    let wanted = if shipped == "research" { "reasoning" } else { "research" };
    for _ in 0..8 {
        let r = post_json(&url, None, &body);
        let id = r.header("x-hermes-request-id").unwrap();
        let fb = post_json(&format!("{}/feedback", h.url()), None, &serde_json::json!({"request_id": id, "job_type": wanted}).to_string());
        assert_eq!(fb.status, 200, "{}", fb.body);
        assert_eq!(fb.json()["corrected_job_type"], wanted);
        assert_eq!(fb.json()["trainable"], true);
    }
    // A type that does not exist is the client's error, in OpenAI's shape.
    let bad = post_json(
        &format!("{}/feedback", h.url()),
        None,
        &serde_json::json!({"request_id": first.header("x-hermes-request-id").unwrap(), "job_type": "poetry"}).to_string(),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.json()["error"]["param"], "job_type");
    h.stop();
    // Stored as features, never as the prompt's words.
    let rows = &common::duck(&h.db(), &["SELECT job_type, features FROM classifier_corrections"])[0];
    assert_eq!(rows.len(), 8, "{rows:?}");
    assert!(!format!("{rows:?}").contains("Hartwell"));

    let policies = scratch_dir("classify-db").join("policies");
    let db = h.db();
    let out = hermes_once(&[], &["classifier", "train", "--from-db", "--db", db.to_str().unwrap(), "--policies", policies.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("8 correction(s)"), "{said}");
    let h = Hermes::start(&[], &["--demo", "--policies", policies.to_str().unwrap()]);
    let r = post_json(&format!("{}/v1/chat/completions", h.url()), None, &body);
    assert_eq!(r.header("x-hermes-job-type"), Some(wanted), "{said}");
}

/// Model selection on the training split only: five folds of it (by a second hash), never the
/// held-out fifth. `cargo test --release --test classify_accuracy -- --ignored --nocapture`,
/// with HERMES_FIT="epochs,learning_rate,l2" to try settings.
#[test]
#[ignore]
fn cross_validate_on_the_training_split() {
    use hermes::decide::classify::model::{Fit, Model};
    use hermes::decide::classify::report::Report;
    use hermes::decide::classify::{corpus, Classifier, Weights};
    let mut fit = Fit::default();
    if let Ok(s) = std::env::var("HERMES_FIT") {
        let v: Vec<f64> = s.split(',').map(|x| x.parse().unwrap()).collect();
        fit = Fit { epochs: v[0] as usize, learning_rate: v[1] as f32, l2: v[2] as f32, ..fit };
    }
    let vocab = hermes::state::config::Policies::builtin().vocabulary;
    let base = Classifier::new(&vocab, Weights::Shipped).unwrap();
    let train = corpus::training();
    let fold = |l: &corpus::Labelled| fnv1a(&format!("fold:{}", corpus::last_user_text(&l.request))) % 5;
    let mut accs = Vec::new();
    for k in 0..5 {
        let (inside, outside): (Vec<_>, Vec<_>) = train.iter().partition(|l| fold(l) != k);
        let inside: Vec<corpus::Labelled> = inside.into_iter().map(|l| corpus::Labelled { request: l.request.clone(), label: l.label }).collect();
        let outside: Vec<corpus::Labelled> = outside.into_iter().map(|l| corpus::Labelled { request: l.request.clone(), label: l.label }).collect();
        let model = Model::fit(&base.examples(&inside, 1.0), fit);
        let c = Classifier::new(&vocab, Weights::Fitted(std::sync::Arc::new(model))).unwrap();
        let r = Report::measure(&c, &outside);
        accs.push(r.accuracy());
        if k == 0 {
            println!("{}", r.table());
            if std::env::var("HERMES_MISSES").is_ok() {
                for m in &r.misses {
                    println!("miss: {m}");
                }
            }
        }
    }
    println!("{fit:?}: fold accuracies {accs:.3?}, mean {:.3}", accs.iter().sum::<f64>() / 5.0);
}
