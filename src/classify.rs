//! What kind of job a request is, without calling a model: job type, complexity, how much quality,
//! speed and low cost matter, whether it carries personal data, and its size in tokens.
//! Phrases come from `policies/classify.toml`; matching is one Aho-Corasick pass per text.

use crate::openai::ApiRequest;
use crate::privacy;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobType {
    CodeGeneration,
    Analysis,
    ContentCreation,
    Research,
    Reasoning,
    General,
}

impl JobType {
    pub const ALL: [JobType; 6] = [
        JobType::CodeGeneration,
        JobType::Analysis,
        JobType::ContentCreation,
        JobType::Research,
        JobType::Reasoning,
        JobType::General,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobType::CodeGeneration => "code_generation",
            JobType::Analysis => "analysis",
            JobType::ContentCreation => "content_creation",
            JobType::Research => "research",
            JobType::Reasoning => "reasoning",
            JobType::General => "general",
        }
    }

    pub fn parse(s: &str) -> Option<JobType> {
        JobType::ALL.into_iter().find(|j| j.as_str() == s)
    }

    /// Output a job of this type usually needs, for cost estimates when max_tokens is unset.
    pub fn typical_output_tokens(self) -> u64 {
        match self {
            JobType::CodeGeneration => 800,
            JobType::Analysis => 600,
            JobType::ContentCreation => 700,
            JobType::Research => 900,
            JobType::Reasoning => 600,
            JobType::General => 250,
        }
    }
}

/// Everything routing needs to know about a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub job_type: JobType,
    /// 0..1: size, multi-turn depth and reasoning load.
    pub complexity: f64,
    pub quality_need: f64,
    pub speed_need: f64,
    pub cost_sensitivity: f64,
    /// The kind of personal data found (email, phone, card number...), if any.
    pub personal_data: Option<&'static str>,
    pub prompt_tokens: u64,
    /// max_tokens when given, else what this job type usually needs.
    pub expected_output_tokens: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tier {
    strong: Vec<String>,
    weak: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signals {
    code_fence_code: f64,
    code_fence_analysis: f64,
    json_output_analysis: f64,
    tools_general: f64,
    context_weight: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Needs {
    quality: Vec<String>,
    speed: Vec<String>,
    cost: Vec<String>,
}

/// `policies/classify.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocabulary {
    min_score: f64,
    signals: Signals,
    code_generation: Tier,
    analysis: Tier,
    content_creation: Tier,
    research: Tier,
    reasoning: Tier,
    general: Tier,
    needs: Needs,
}

/// What a matched phrase adds to.
#[derive(Debug, Clone, Copy)]
enum Target {
    Job(usize, f64),
    Quality,
    Speed,
    Cost,
}

pub struct Classifier {
    matcher: AhoCorasick,
    /// Per pattern id, what it adds to.
    targets: Vec<Vec<Target>>,
    min_score: f64,
    signals: Signals,
}

const STRONG: f64 = 3.0;
const WEAK: f64 = 1.0;

impl Classifier {
    pub fn new(vocab: &Vocabulary) -> Result<Classifier, String> {
        let mut by_phrase: HashMap<String, Vec<Target>> = HashMap::new();
        let tiers = [
            &vocab.code_generation,
            &vocab.analysis,
            &vocab.content_creation,
            &vocab.research,
            &vocab.reasoning,
            &vocab.general,
        ];
        for (job, tier) in tiers.iter().enumerate() {
            for p in &tier.strong {
                by_phrase.entry(p.to_ascii_lowercase()).or_default().push(Target::Job(job, STRONG));
            }
            for p in &tier.weak {
                by_phrase.entry(p.to_ascii_lowercase()).or_default().push(Target::Job(job, WEAK));
            }
        }
        for (words, t) in [(&vocab.needs.quality, Target::Quality), (&vocab.needs.speed, Target::Speed), (&vocab.needs.cost, Target::Cost)] {
            for w in words {
                by_phrase.entry(w.to_ascii_lowercase()).or_default().push(t);
            }
        }
        let (phrases, targets): (Vec<String>, Vec<Vec<Target>>) = by_phrase.into_iter().filter(|(p, _)| !p.trim().is_empty()).unzip();
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&phrases)
            .map_err(|e| e.to_string())?;
        Ok(Classifier { matcher, targets, min_score: vocab.min_score, signals: vocab.signals.clone() })
    }

    /// Scores text into `tally`, `weight` times each phrase's value.
    fn score(&self, text: &str, weight: f64, tally: &mut Tally) {
        let bytes = text.as_bytes();
        for m in self.matcher.find_overlapping_iter(text) {
            let before = m.start().checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(m.end()).copied();
            let boundary = |b: Option<u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric());
            if !boundary(before) || !boundary(after) {
                continue;
            }
            for t in &self.targets[m.pattern().as_usize()] {
                match *t {
                    Target::Job(j, w) => tally.jobs[j] += w * weight,
                    Target::Quality => tally.quality += weight,
                    Target::Speed => tally.speed += weight,
                    Target::Cost => tally.cost += weight,
                }
            }
        }
    }

    pub fn classify(&self, request: &ApiRequest) -> Classification {
        let body = &request.body;
        let messages: &[Value] = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let last_user = messages.iter().rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"));
        let mut tally = Tally::default();
        let mut chars = 0usize;
        let mut last_text = String::new();
        for (i, m) in messages.iter().enumerate() {
            let text = message_text(m);
            chars += text.len();
            if Some(i) == last_user {
                self.score(&text, 1.0, &mut tally);
                last_text = text;
            } else {
                self.score(&text, self.signals.context_weight, &mut tally);
            }
        }
        if request.endpoint == crate::openai::Endpoint::Embeddings {
            chars = request.prompt_text().len();
        }
        if looks_like_code(&last_text) {
            tally.jobs[0] += self.signals.code_fence_code;
            tally.jobs[1] += self.signals.code_fence_analysis;
        }
        let json_out = body.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str).is_some_and(|t| t.starts_with("json"));
        if json_out {
            tally.jobs[1] += self.signals.json_output_analysis;
        }
        if body.get("tools").and_then(Value::as_array).is_some_and(|t| !t.is_empty()) {
            tally.jobs[5] += self.signals.tools_general;
        }
        let (best, best_score) = tally.jobs.iter().copied().enumerate().fold((5, f64::MIN), |acc, (i, s)| if s > acc.1 { (i, s) } else { acc });
        let job_type = if best_score >= self.min_score { JobType::ALL[best] } else { JobType::General };

        let prompt_tokens = (chars as u64).div_ceil(4) + 4 * messages.len() as u64;
        let max_tokens = ["max_completion_tokens", "max_tokens"].iter().find_map(|k| body.get(*k).and_then(Value::as_u64));
        let turns = messages.len() as f64;
        let complexity = ((prompt_tokens as f64 / 3000.0).min(0.6)
            + if job_type == JobType::Reasoning { 0.25 } else { 0.0 }
            + (turns / 40.0).min(0.15))
        .min(1.0);
        let quality_need = (tally.quality / 3.0 + complexity * 0.5).min(1.0);
        let speed_need = (tally.speed / 2.0 + if request.stream { 0.2 } else { 0.0 } + if max_tokens.is_some_and(|m| m <= 100) { 0.3 } else { 0.0 }).min(1.0);
        let cost_sensitivity = (0.3 + tally.cost / 2.0).min(1.0);
        Classification {
            job_type,
            complexity,
            quality_need,
            speed_need,
            cost_sensitivity,
            personal_data: privacy::scan(messages.iter().map(message_text)),
            prompt_tokens,
            expected_output_tokens: max_tokens.unwrap_or_else(|| job_type.typical_output_tokens()),
        }
    }
}

#[derive(Default)]
struct Tally {
    jobs: [f64; 6],
    quality: f64,
    speed: f64,
    cost: f64,
}

/// A message's text: string content, or the text parts of a content array.
fn message_text(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// A fence, or several lines that read like source code.
fn looks_like_code(text: &str) -> bool {
    if text.contains("```") {
        return true;
    }
    let codeish = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.ends_with(';') || l.ends_with('{') || l == &"}" || l.starts_with("def ") || l.starts_with("fn ") || l.starts_with("import ")
                || l.starts_with("#include") || l.starts_with("SELECT ") || l.starts_with("return ") || l.contains(" = function")
        })
        .count();
    codeish >= 3
}

pub fn parse_vocabulary(text: &str) -> Result<Vocabulary, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{parse_request, Endpoint};

    fn classifier() -> Classifier {
        Classifier::new(&parse_vocabulary(include_str!("../policies/classify.toml")).unwrap()).unwrap()
    }

    fn classify(body: serde_json::Value) -> Classification {
        classifier().classify(&parse_request(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap())
    }

    fn user(text: &str) -> serde_json::Value {
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]})
    }

    #[test]
    fn the_last_turn_decides_and_words_need_boundaries() {
        assert_eq!(classify(user("Write a Python function that merges two sorted lists")).job_type, JobType::CodeGeneration);
        assert_eq!(classify(user("Write a short story about a lighthouse keeper")).job_type, JobType::ContentCreation);
        assert_eq!(classify(user("hello!")).job_type, JobType::General);
        // "trust" must not count as "rust"
        assert_eq!(classify(user("I trust you")).job_type, JobType::General);
        let convo = serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": "Write a Python function to parse dates"},
            {"role": "assistant", "content": "def parse(s): ..."},
            {"role": "user", "content": "A train leaves at 3pm going 60 km/h; how long will it take to cover 150 km? Solve step by step."}]});
        assert_eq!(classify(convo).job_type, JobType::Reasoning);
    }

    #[test]
    fn structure_counts_and_needs_are_read() {
        let c = classify(serde_json::json!({"model": "m", "max_tokens": 50, "stream": true,
            "messages": [{"role": "user", "content": "Quick: a precise, accurate one line answer please"}]}));
        assert!(c.speed_need >= 0.7, "{c:?}");
        assert!(c.quality_need >= 0.6, "{c:?}");
        assert_eq!(c.expected_output_tokens, 50);
        let fenced = classify(user("```\nlet x = compute(a, b);\nif x > 3 { panic!() }\n```"));
        assert_eq!(fenced.job_type, JobType::CodeGeneration);
        assert!(classify(user("email me at jane.doe@example.com")).personal_data.is_some());
    }
}
