//! Labelled prompts: the shipped corpus the built-in model is trained on, a user's own files for
//! `hermes classifier eval|train`, and the one train/test split.
//!
//! The split is made once, by a hash of the last user turn's text: FNV-1a 64 of its UTF-8 bytes,
//! held out when the value is divisible by 5 (about a fifth). Nothing is tuned on the held-out
//! fifth; `tests/classify_accuracy.rs` measures on it.

use super::JobType;
use crate::doors::openai::{parse_request, ApiRequest, Endpoint};
use serde_json::Value;

/// The shipped corpus (tests/data/classify): written for this classifier, split by hash.
const CORPUS: [&str; 18] = [
    include_str!("../../../tests/data/classify/corpus-a.jsonl"),
    include_str!("../../../tests/data/classify/corpus-b.jsonl"),
    include_str!("../../../tests/data/classify/corpus-c.jsonl"),
    include_str!("../../../tests/data/classify/corpus-d.jsonl"),
    include_str!("../../../tests/data/classify/corpus-e.jsonl"),
    include_str!("../../../tests/data/classify/corpus-f.jsonl"),
    include_str!("../../../tests/data/classify/corpus-g.jsonl"),
    include_str!("../../../tests/data/classify/corpus-h.jsonl"),
    include_str!("../../../tests/data/classify/corpus-i.jsonl"),
    include_str!("../../../tests/data/classify/corpus-j.jsonl"),
    include_str!("../../../tests/data/classify/corpus-k.jsonl"),
    include_str!("../../../tests/data/classify/corpus-l.jsonl"),
    include_str!("../../../tests/data/classify/corpus-m.jsonl"),
    include_str!("../../../tests/data/classify/corpus-n.jsonl"),
    include_str!("../../../tests/data/classify/corpus-o.jsonl"),
    include_str!("../../../tests/data/classify/corpus-p.jsonl"),
    include_str!("../../../tests/data/classify/corpus-q.jsonl"),
    include_str!("../../../tests/data/classify/corpus-r.jsonl"),
];
/// The first round's 375 prompts: the old vocabulary was tuned on them, so they are training
/// data only and never part of a held-out figure.
const TUNED: &str = include_str!("../../../tests/data/classify/tuned.jsonl");

/// One labelled request.
pub struct Labelled {
    pub request: ApiRequest,
    pub label: JobType,
}

/// FNV-1a 64: simple enough that anyone can recompute the split.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Whether a labelled prompt is in the held-out fifth.
pub fn held_out(l: &Labelled) -> bool {
    fnv1a(&last_user_text(&l.request)).is_multiple_of(5)
}

pub fn last_user_text(request: &ApiRequest) -> String {
    request
        .body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
        .map(super::message_text)
        .unwrap_or_default()
}

/// Lines `{"messages": [...], "label": ...}` or `{"prompt": "...", "label": ...}`; other keys
/// (tools, response_format, max_tokens...) are the request's. Errors name the line.
pub fn parse(text: &str) -> Result<Vec<Labelled>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |e: String| format!("line {}: {e}", n + 1);
        let Value::Object(mut obj) = serde_json::from_str::<Value>(line).map_err(|e| at(e.to_string()))? else {
            return Err(at("not a JSON object".into()));
        };
        let label = obj
            .remove("label")
            .and_then(|l| l.as_str().and_then(JobType::parse))
            .ok_or_else(|| at(format!("\"label\" must be one of {}", JobType::ALL.map(JobType::as_str).join(", "))))?;
        if let Some(prompt) = obj.remove("prompt") {
            let Value::String(prompt) = prompt else { return Err(at("\"prompt\" must be a string".into())) };
            obj.insert("messages".into(), serde_json::json!([{"role": "user", "content": prompt}]));
        }
        if !obj.get("messages").is_some_and(Value::is_array) {
            return Err(at("needs \"messages\" (an array) or \"prompt\" (a string)".into()));
        }
        obj.entry("model").or_insert_with(|| "auto".into());
        let raw = Value::Object(obj).to_string();
        let request = parse_request(Endpoint::ChatCompletions, raw.as_bytes()).map_err(|e| at(e.message().to_string()))?;
        out.push(Labelled { request, label });
    }
    Ok(out)
}

/// The shipped corpus, every line (both halves of the split).
pub fn shipped() -> Vec<Labelled> {
    CORPUS.iter().flat_map(|text| parse_shipped(text)).collect()
}

/// What the built-in model is trained on: the corpus's training split and the tuned set.
pub fn training() -> Vec<Labelled> {
    let mut out: Vec<Labelled> = shipped().into_iter().filter(|l| !held_out(l)).collect();
    out.extend(parse_shipped(TUNED));
    out
}

/// The shipped corpus's held-out fifth.
pub fn test_split() -> Vec<Labelled> {
    shipped().into_iter().filter(held_out).collect()
}

fn parse_shipped(text: &str) -> Vec<Labelled> {
    // The shipped files are checked by tests/classify_accuracy.rs; a bad line is skipped here
    // rather than stopping a gateway.
    text.lines().filter_map(|l| parse(l).ok()).flatten().collect()
}
