//! How well a classifier does on labelled prompts: per-type precision and recall, accuracy, and
//! the misses (what `hermes classifier eval` prints and the accuracy test asserts on).

use super::corpus::{last_user_text, Labelled};
use super::{Classifier, JobType};
use std::fmt::Write;

const N: usize = JobType::ALL.len();

pub struct Report {
    /// confusion[label][predicted]
    pub confusion: [[u32; N]; N],
    pub misses: Vec<String>,
}

impl Report {
    pub fn measure(classifier: &Classifier, data: &[Labelled]) -> Report {
        let mut confusion = [[0u32; N]; N];
        let mut misses = Vec::new();
        for l in data {
            let got = classifier.classify(&l.request).job_type;
            confusion[l.label.index()][got.index()] += 1;
            if got != l.label {
                let text: String = last_user_text(&l.request).chars().take(90).collect();
                misses.push(format!("{} -> {}: {}", l.label.as_str(), got.as_str(), text.replace('\n', " ")));
            }
        }
        Report { confusion, misses }
    }

    pub fn total(&self) -> u32 {
        self.confusion.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: u32 = (0..N).map(|i| self.confusion[i][i]).sum();
        f64::from(correct) / f64::from(self.total().max(1))
    }

    /// Recall of one type (None when the data has none of it).
    pub fn recall(&self, j: JobType) -> Option<f64> {
        let i = j.index();
        let labelled: u32 = self.confusion[i].iter().sum();
        (labelled > 0).then(|| f64::from(self.confusion[i][i]) / f64::from(labelled))
    }

    pub fn precision(&self, j: JobType) -> Option<f64> {
        let i = j.index();
        let predicted: u32 = (0..N).map(|r| self.confusion[r][i]).sum();
        (predicted > 0).then(|| f64::from(self.confusion[i][i]) / f64::from(predicted))
    }

    /// A Markdown table, then the accuracy.
    pub fn table(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
        let mut out = String::from("| job type | prompts | precision | recall |\n|---|---|---|---|\n");
        for (i, j) in JobType::ALL.iter().enumerate() {
            let labelled: u32 = self.confusion[i].iter().sum();
            let _ = writeln!(out, "| {} | {labelled} | {} | {} |", j.as_str(), pct(self.precision(*j)), pct(self.recall(*j)));
        }
        let _ = writeln!(out, "| all | {} | accuracy {:.1}% | |", self.total(), self.accuracy() * 100.0);
        out
    }
}
