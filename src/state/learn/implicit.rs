//! Implicit feedback: where nobody rates, the next turn of a conversation often says how the last
//! answer went ("that doesn't work", "still failing", or the same question asked again). Such a
//! turn counts as a low rating against the backend that gave that answer.
//!
//! A conversation is recognised by a hash of its messages: each request is kept under the hash of
//! everything it sent, and a follow-up finds it under the hash of its messages before the last
//! assistant turn. No text is kept. `[implicit_feedback]` in `policies/routing.toml` lists the
//! phrases; HERMES_IMPLICIT_FEEDBACK=false turns it off.

use crate::decide::classify::message_text;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Deserialize;
use serde_json::Value;
use std::hash::{BuildHasher, Hash, Hasher};

/// Conversations remembered, newest kept.
const KEPT: usize = 50_000;

/// `[implicit_feedback]` in `policies/routing.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImplicitPolicy {
    /// The rating a complaint counts as (1-5).
    pub rating: u8,
    /// Phrases in the next user turn that say the last answer was wrong (case-insensitive).
    pub negative: Vec<String>,
}

/// Why a turn reads as a verdict on the answer before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Complaint {
    /// A phrase from the policy.
    SaysWrong,
    /// The same question as the turn before the answer.
    AskedAgain,
}

impl Complaint {
    /// The `reason` label of `hermes_implicit_feedback_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Complaint::SaysWrong => "says_wrong",
            Complaint::AskedAgain => "asked_again",
        }
    }

    /// What `feedback.comment` says.
    pub fn as_str(self) -> &'static str {
        match self {
            Complaint::SaysWrong => "implicit: the next turn said the answer was wrong",
            Complaint::AskedAgain => "implicit: the same question was asked again",
        }
    }
}

/// The policy, ready to match (per configuration generation).
pub struct Implicit {
    phrases: AhoCorasick,
    pub rating: u8,
}

/// Conversation hash → the request that answered it (shared by every generation, so a reload
/// does not forget who answered what).
pub struct Conversations {
    answered: quick_cache::sync::Cache<u64, String>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Default for Conversations {
    fn default() -> Conversations {
        let answered = quick_cache::sync::Cache::new(KEPT);
        // Sized in full now, so that no request thread grows it (state::recent says why).
        answered.reserve(KEPT);
        Conversations { answered, hasher: Default::default() }
    }
}

impl Implicit {
    pub fn new(policy: &ImplicitPolicy) -> Result<Implicit, String> {
        let phrases = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(policy.negative.iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()))
            .map_err(|e| e.to_string())?;
        Ok(Implicit { phrases, rating: policy.rating.clamp(1, 5) })
    }

    /// Notes this request as the answer to its conversation so far, and returns the earlier
    /// request this one complains about, if it does.
    pub fn observe(&self, seen: &Conversations, messages: &[Value], request_id: &str) -> Option<(String, Complaint)> {
        let last_assistant = messages.iter().rposition(|m| role(m) == Some("assistant"));
        let mut h = seen.hasher.build_hasher();
        let mut before_answer = None;
        for (i, m) in messages.iter().enumerate() {
            if Some(i) == last_assistant {
                before_answer = Some(h.clone().finish());
            }
            role(m).hash(&mut h);
            match m.get("content") {
                Some(Value::String(s)) => s.hash(&mut h),
                _ => message_text(m).hash(&mut h),
            }
        }
        seen.answered.insert(h.finish(), request_id.to_string());
        let earlier = seen.answered.get(&before_answer?)?;
        let complaint = complaint(&self.phrases, messages, last_assistant?)?;
        Some((earlier, complaint))
    }
}

fn role(m: &Value) -> Option<&str> {
    m.get("role").and_then(Value::as_str)
}

/// The last user turn, after the answer at `answer`, read as a verdict on it.
fn complaint(phrases: &AhoCorasick, messages: &[Value], answer: usize) -> Option<Complaint> {
    let now = messages[answer..].iter().rev().find(|m| role(m) == Some("user")).map(message_text)?;
    let asked = messages[..answer].iter().rev().find(|m| role(m) == Some("user")).map(message_text);
    let fold = |s: &str| s.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>().join(" ");
    if asked.is_some_and(|a| !a.trim().is_empty() && fold(&a) == fold(&now)) {
        return Some(Complaint::AskedAgain);
    }
    let bytes = now.as_bytes();
    let boundary = |i: Option<usize>| i.and_then(|i| bytes.get(i)).is_none_or(|b| !b.is_ascii_alphanumeric());
    phrases.find_iter(&now).any(|m| boundary(m.start().checked_sub(1)) && boundary(Some(m.end()))).then_some(Complaint::SaysWrong)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn implicit() -> Implicit {
        Implicit::new(&ImplicitPolicy { rating: 1, negative: vec!["doesn't work".into(), "still failing".into(), "wrong".into()] }).unwrap()
    }

    #[test]
    fn a_complaint_finds_the_answer_it_is_about() {
        let (i, seen) = (implicit(), Conversations::default());
        let first = json!([{"role": "user", "content": "fix my regex"}]);
        assert_eq!(i.observe(&seen, first.as_array().unwrap(), "r1"), None);
        let next = json!([{"role": "user", "content": "fix my regex"}, {"role": "assistant", "content": "try ^a+$"},
            {"role": "user", "content": "That doesn't work, it still matches b"}]);
        assert_eq!(i.observe(&seen, next.as_array().unwrap(), "r2"), Some(("r1".into(), Complaint::SaysWrong)));
        // Thanks is not a complaint; "wrongly" is not "wrong".
        let fine = json!([{"role": "user", "content": "fix my regex"}, {"role": "assistant", "content": "try ^a+$"},
            {"role": "user", "content": "thanks, I had wrongly escaped it"}]);
        assert_eq!(i.observe(&seen, fine.as_array().unwrap(), "r3"), None);
        let again = json!([{"role": "user", "content": "fix my regex"}, {"role": "assistant", "content": "try ^a+$"},
            {"role": "user", "content": "Fix my  regex"}]);
        assert_eq!(i.observe(&seen, again.as_array().unwrap(), "r4"), Some(("r1".into(), Complaint::AskedAgain)));
        // A conversation Hermes never answered has nobody to blame.
        let other = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "wrong"}]);
        assert_eq!(i.observe(&seen, other.as_array().unwrap(), "r5"), None);
    }
}
