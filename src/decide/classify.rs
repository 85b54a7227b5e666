//! What kind of job a request is, without calling a model: job type, complexity, how much quality,
//! speed and low cost matter, whether it carries personal data, and its size in tokens.
//!
//! The job type comes from a linear model ([`model`]) over the request's words, character n-grams
//! and structure, with the phrases of `policies/classify.toml` among its features (one
//! Aho-Corasick pass per text). It is trained from labelled prompts ([`corpus`]): the shipped
//! corpus at start-up, or a user's own with `hermes classifier train` (`policies/classifier.bin`).

pub mod corpus;
pub mod model;
pub mod report;
mod shipped;

use crate::decide::privacy;
use crate::doors::openai::ApiRequest;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use model::{Example, Features, Fit, Input, Model};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    pub const ALL: [JobType; 6] =
        [JobType::CodeGeneration, JobType::Analysis, JobType::ContentCreation, JobType::Research, JobType::Reasoning, JobType::General];

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

    /// Its place in `JobType::ALL` (and in every per-type array: likelihoods, weights, tallies).
    pub fn index(self) -> usize {
        self as usize
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
    /// How likely each job type is (`JobType::ALL` order): routing weighs what it learned per
    /// type by these, so a job the classifier is unsure of is not routed as if it were sure.
    pub likelihood: [f64; 6],
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
struct Needs {
    quality: Vec<String>,
    speed: Vec<String>,
    cost: Vec<String>,
}

/// `policies/classify.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocabulary {
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
    model: Arc<Model>,
}

/// Where the weights come from.
pub enum Weights {
    /// Fitted on the shipped corpus's training split (once per build and vocabulary: see `shipped`).
    Shipped,
    /// A file written by `hermes classifier train`, or a model fitted here.
    Fitted(Arc<Model>),
}

/// The shipped model, once per vocabulary: a reload that keeps `classify.toml` does not refit.
static SHIPPED: Mutex<Option<(String, Arc<Model>)>> = Mutex::new(None);

/// How much of a long last user turn the classifier reads: its first and last bytes.
const LAST_TURN_HEAD: usize = 2048;
const LAST_TURN_TAIL: usize = 1024;

const STRONG: f64 = 3.0;
const WEAK: f64 = 1.0;

impl Classifier {
    pub fn new(vocab: &Vocabulary, weights: Weights) -> Result<Classifier, String> {
        let mut by_phrase: HashMap<String, Vec<Target>> = HashMap::new();
        for (job, tier) in vocab.tiers().into_iter().enumerate() {
            for (list, weight) in [(&tier.strong, STRONG), (&tier.weak, WEAK)] {
                for p in list {
                    by_phrase.entry(p.trim().to_ascii_lowercase()).or_default().push(Target::Job(job, weight));
                }
            }
        }
        for (words, t) in [(&vocab.needs.quality, Target::Quality), (&vocab.needs.speed, Target::Speed), (&vocab.needs.cost, Target::Cost)] {
            for w in words {
                by_phrase.entry(w.trim().to_ascii_lowercase()).or_default().push(t);
            }
        }
        let (phrases, targets): (Vec<String>, Vec<Vec<Target>>) = by_phrase.into_iter().filter(|(p, _)| !p.is_empty()).unzip();
        let matcher = AhoCorasickBuilder::new().ascii_case_insensitive(true).match_kind(MatchKind::Standard).build(&phrases).map_err(|e| e.to_string())?;
        let mut classifier = Classifier { matcher, targets, model: Arc::new(Model::default()) };
        classifier.model = match weights {
            Weights::Fitted(m) => m,
            Weights::Shipped => {
                let key = format!("{vocab:?}");
                let mut cached = SHIPPED.lock().unwrap_or_else(|p| p.into_inner());
                match cached.as_ref().filter(|(k, _)| *k == key) {
                    Some((_, m)) => m.clone(),
                    None => {
                        let m = Arc::new(shipped::load_or_fit(&key, || Model::fit(&classifier.examples(&corpus::training(), 1.0), Fit::default())));
                        *cached = Some((key, m.clone()));
                        m
                    }
                }
            }
        };
        Ok(classifier)
    }

    /// Labelled requests as training examples for this classifier's features.
    pub fn examples(&self, labelled: &[corpus::Labelled], weight: f32) -> Vec<Example> {
        labelled.iter().map(|l| Example { features: self.features(&l.request), label: l.label, weight }).collect()
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

    /// What the model reads of a request, and the vocabulary's tally of its last turn.
    fn read(&self, request: &ApiRequest, out: &mut Features) -> Reading {
        let body = &request.body;
        let messages: &[Value] = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let last_user = messages.iter().rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"));
        let mut tally = Tally::default();
        let texts: Vec<String> = messages.iter().map(message_text).collect();
        let chars =
            if request.endpoint == crate::doors::openai::Endpoint::Embeddings { request.prompt_text().len() } else { texts.iter().map(String::len).sum() };
        // A long last turn is read at its start and its end (where the ask sits around pasted
        // material), so a long prompt costs a bounded time.
        let whole = last_user.map_or("", |i| texts[i].as_str());
        let (head, tail) = model::window(whole, LAST_TURN_HEAD, LAST_TURN_TAIL);
        let joined;
        let last_text = if tail.is_empty() {
            head
        } else {
            joined = format!("{head}\n{tail}");
            joined.as_str()
        };
        self.score(last_text, 1.0, &mut tally);
        // The rest, nearest the last turn first, is context.
        let context: Vec<&str> = texts.iter().enumerate().rev().filter(|(i, _)| Some(*i) != last_user).map(|(_, t)| t.as_str()).collect();
        let input = Input {
            last_user: last_text,
            context: &context,
            code: looks_like_code(last_text),
            fence: last_text.contains("```"),
            tools: body.get("tools").and_then(Value::as_array).is_some_and(|t| !t.is_empty()),
            json_mode: body.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str).is_some_and(|t| t.starts_with("json")),
            system: messages.iter().any(|m| m.get("role").and_then(Value::as_str) == Some("system")),
            turns: messages.iter().filter(|m| m.get("role").and_then(Value::as_str) == Some("user")).count(),
            vocabulary: tally.jobs,
        };
        model::features(&input, out);
        Reading { tally, chars, messages: messages.len() }
    }

    /// The features the model reads of a request (kept for a person's correction of its job type).
    pub fn features(&self, request: &ApiRequest) -> Features {
        let mut f = Vec::new();
        self.read(request, &mut f);
        f
    }

    pub fn classify(&self, request: &ApiRequest) -> Classification {
        let mut features = Vec::with_capacity(256);
        self.classify_with(request, &mut features)
    }

    /// `classify`, leaving the features it read in `features`.
    pub fn classify_with(&self, request: &ApiRequest, features: &mut Features) -> Classification {
        let body = &request.body;
        let reading = self.read(request, features);
        let personal_data = privacy::scan_body(&request.body);
        let likelihood = self.model.probabilities(features);
        let job_type = model::most_likely(&likelihood);
        let tally = reading.tally;
        let prompt_tokens = (reading.chars as u64).div_ceil(4) + 4 * reading.messages as u64;
        let max_tokens = ["max_completion_tokens", "max_tokens"].iter().find_map(|k| body.get(*k).and_then(Value::as_u64));
        let turns = reading.messages as f64;
        let complexity =
            ((prompt_tokens as f64 / 1500.0).min(0.6) + if job_type == JobType::Reasoning { 0.25 } else { 0.0 } + (turns / 40.0).min(0.15)).min(1.0);
        let quality_need = (tally.quality / 3.0 + complexity * 0.5).min(1.0);
        let speed_need = (tally.speed / 2.0 + if request.stream { 0.2 } else { 0.0 } + if max_tokens.is_some_and(|m| m <= 100) { 0.3 } else { 0.0 }).min(1.0);
        let cost_sensitivity = (0.3 + tally.cost / 2.0).min(1.0);
        Classification {
            job_type,
            likelihood,
            complexity,
            quality_need,
            speed_need,
            cost_sensitivity,
            personal_data,
            prompt_tokens,
            expected_output_tokens: max_tokens.unwrap_or_else(|| job_type.typical_output_tokens()),
        }
    }
}

struct Reading {
    tally: Tally,
    chars: usize,
    messages: usize,
}

/// What the classifier read of recent requests, by request id, so that a person's correction
/// of a job type (`POST /feedback` with `job_type`) can be stored as a training example without
/// keeping the prompt's text. Bounded by the features held, with each reading counted as at least
/// `LEAST_WEIGHT` of them, which also bounds how many readings there are.
pub struct Readings {
    cache: crate::state::recent::Recent<Kept, FeatureCount>,
}

#[derive(Clone)]
struct FeatureCount;

/// A request's features as kept: exactly as many as it had (the buffer they were read into has
/// room for a long prompt's, and was most of what each kept reading cost).
type Kept = Arc<[(u32, f32)]>;

/// A reading counts as at least this many features, so that short prompts (a few features each)
/// cannot fill the bound with hundreds of thousands of readings, and the table can be sized for
/// the most there can be (`READINGS_MOST`) at start.
const LEAST_WEIGHT: u64 = 40;

impl quick_cache::Weighter<u64, Kept> for FeatureCount {
    fn weight(&self, _: &u64, f: &Kept) -> u64 {
        (f.len() as u64).max(LEAST_WEIGHT) + 1
    }
}

/// About 16 MB of features (8 bytes each).
const READINGS_KEPT: u64 = 2_000_000;
/// At most this many readings, whatever their size.
const READINGS_MOST: usize = (READINGS_KEPT / (LEAST_WEIGHT + 1)) as usize;

impl Default for Readings {
    fn default() -> Readings {
        Readings { cache: crate::state::recent::Recent::with_weighter(READINGS_MOST, READINGS_KEPT, FeatureCount) }
    }
}

impl Readings {
    pub fn keep(&self, request_id: &str, features: &[(u32, f32)]) {
        self.cache.insert(request_id, Arc::from(features));
    }

    pub fn get(&self, request_id: &str) -> Option<Kept> {
        self.cache.get(request_id)
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
pub fn message_text(m: &Value) -> String {
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
            l.ends_with(';')
                || l.ends_with('{')
                || l == &"}"
                || l.starts_with("def ")
                || l.starts_with("fn ")
                || l.starts_with("import ")
                || l.starts_with("#include")
                || l.starts_with("SELECT ")
                || l.starts_with("return ")
                || l.contains(" = function")
        })
        .count();
    codeish >= 3
}

/// `policies/classify.toml`. A phrase listed twice (in one type or across types, or twice among
/// the needs) is an error: it would count twice or pull two ways.
pub fn parse_vocabulary(text: &str) -> Result<Vocabulary, String> {
    let vocab: Vocabulary = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let job_lists = JobType::ALL
        .iter()
        .zip(vocab.tiers())
        .flat_map(|(job, tier)| [(&tier.strong, format!("{}.strong", job.as_str())), (&tier.weak, format!("{}.weak", job.as_str()))]);
    once_each(job_lists)?;
    // A need may share a phrase with a job type ("quick" may be both), not with another need.
    let needs = &vocab.needs;
    once_each([(&needs.quality, "needs.quality".to_string()), (&needs.speed, "needs.speed".into()), (&needs.cost, "needs.cost".into())])?;
    Ok(vocab)
}

/// An error naming the first phrase that stands in two places (or twice in one) of these lists.
fn once_each<'a>(lists: impl IntoIterator<Item = (&'a Vec<String>, String)>) -> Result<(), String> {
    let mut seen: HashMap<String, String> = HashMap::new();
    for (list, place) in lists {
        for p in list {
            if let Some(first) = seen.insert(p.trim().to_ascii_lowercase(), place.clone()) {
                return Err(format!("the phrase \"{}\" is listed twice: in {first} and in {place}", p.trim()));
            }
        }
    }
    Ok(())
}

impl Vocabulary {
    /// The job types' lists, in `JobType::ALL` order.
    fn tiers(&self) -> [&Tier; 6] {
        [&self.code_generation, &self.analysis, &self.content_creation, &self.research, &self.reasoning, &self.general]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doors::openai::{parse_request, Endpoint};

    fn classifier() -> Classifier {
        Classifier::new(&parse_vocabulary(include_str!("../../policies/classify.toml")).unwrap(), Weights::Shipped).unwrap()
    }

    fn classify(body: serde_json::Value) -> Classification {
        classifier().classify(&parse_request(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap())
    }

    fn user(text: &str) -> serde_json::Value {
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]})
    }

    #[test]
    fn a_job_types_index_is_its_place_in_all() {
        for (i, j) in JobType::ALL.into_iter().enumerate() {
            assert_eq!(j.index(), i);
        }
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
        let fenced = classify(user("```python\ndef add(a, b):\n    return a - b\n```\nthis returns the wrong thing, fix it"));
        assert_eq!(fenced.job_type, JobType::CodeGeneration);
        assert!(classify(user("email me at jane.doe@example.com")).personal_data.is_some());
    }
}
