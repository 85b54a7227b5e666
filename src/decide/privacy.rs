//! Personal data in a prompt: emails, phone numbers, national ids, card numbers (Luhn-checked),
//! bank accounts and API keys. A prompt with any of them may only run on local backends.

use regex::Regex;
use std::sync::OnceLock;

struct Detector {
    kind: &'static str,
    /// A cheap test that must hold before the regex runs.
    may_match: fn(&str) -> bool,
    pattern: Regex,
    /// A second check on the match (card numbers must pass Luhn).
    confirm: Option<fn(&str) -> bool>,
}

fn detectors() -> &'static [Detector] {
    static D: OnceLock<Vec<Detector>> = OnceLock::new();
    D.get_or_init(|| {
        let d = |kind, may_match, re: &str, confirm| Regex::new(re).ok().map(|pattern| Detector { kind, may_match, pattern, confirm });
        let digits: fn(&str) -> bool = |t| t.bytes().filter(u8::is_ascii_digit).nth(5).is_some();
        [
            d("email", |t| t.contains('@'), r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", Some(a_person_s)),
            d(
                "api_key",
                |t| ["sk-", "AKIA", "gh", "xox", "AIza"].iter().any(|p| t.contains(p)),
                r"\b(?:sk-(?:ant-|proj-|or-v1-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|xox[baprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})",
                None,
            ),
            d("card_number", digits, r"\b(?:\d[ -]?){12,18}\d\b", Some(luhn)),
            d("national_id", digits, r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b|\b[12] ?\d{2} ?(?:0[1-9]|1[0-2]) ?\d{2} ?\d{3} ?\d{3} ?\d{2}\b", None),
            d("bank_account", digits, r"\b[A-Z]{2}\d{2} ?(?:[A-Z0-9]{4} ?){3,7}[A-Z0-9]{1,4}\b", None),
            d("phone", digits, r"(?:\+\d{1,3}[ .-]?)?\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b|\+\d{1,3}(?:[ .-]?\d{2,4}){3,5}\b", None),
        ]
        .into_iter()
        .flatten()
        .collect()
    })
}

/// Addresses that no person reads are not personal data: Claude Code's system prompt carries
/// `noreply@anthropic.com` in every request, which would otherwise keep all of them local.
fn a_person_s(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("").to_ascii_lowercase();
    !matches!(local.as_str(), "noreply" | "no-reply" | "donotreply" | "do-not-reply" | "mailer-daemon" | "postmaster")
}

fn luhn(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The first kind of personal data found in these texts.
pub fn scan<I: IntoIterator<Item = S>, S: AsRef<str>>(texts: I) -> Option<&'static str> {
    for text in texts {
        let text = text.as_ref();
        for d in detectors().iter().filter(|d| (d.may_match)(text)) {
            let found = match d.confirm {
                None => d.pattern.is_match(text),
                Some(confirm) => d.pattern.find_iter(text).any(|m| confirm(m.as_str())),
            };
            if found {
                return Some(d.kind);
            }
        }
    }
    None
}

/// The first kind of personal data anywhere in a request body: every string it holds (message
/// content, tool-call arguments, tool results, embeddings input, names...), since every one of
/// them is forwarded. Only `model` and the structural `role`/`type` tags are skipped.
pub fn scan_body(body: &serde_json::Map<String, serde_json::Value>) -> Option<&'static str> {
    fn strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
            serde_json::Value::Object(o) => o.iter().filter(|(k, _)| !matches!(k.as_str(), "role" | "type")).for_each(|(_, v)| strings(v, out)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    body.iter().filter(|(k, _)| k.as_str() != "model").for_each(|(_, v)| strings(v, &mut texts));
    scan(texts)
}

#[cfg(test)]
mod tests {
    use super::{scan, scan_body};

    #[test]
    fn every_forwarded_string_is_scanned() {
        for body in [
            serde_json::json!({"model": "m", "input": ["fine", "mail jane@example.com"]}),
            serde_json::json!({"model": "m", "messages": [{"role": "assistant", "content": null,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "send", "arguments": "{\"to\": \"jane@example.com\"}"}}]}]}),
        ] {
            assert_eq!(scan_body(body.as_object().unwrap()), Some("email"), "{body}");
        }
        assert_eq!(scan_body(serde_json::json!({"model": "a@b.cd", "input": "x"}).as_object().unwrap()), None);
    }

    #[test]
    fn personal_data_is_found() {
        for (text, kind) in [
            ("mail jane.doe+work@example.co.uk now", "email"),
            ("call me at (415) 555-0134", "phone"),
            ("my number is +44 20 7946 0958", "phone"),
            ("SSN 123-45-6789", "national_id"),
            ("NI number AB 12 34 56 C", "national_id"),
            ("card 4111 1111 1111 1111 exp 12/27", "card_number"),
            ("key sk-proj-abcdefghijklmnopqrstuvwx", "api_key"),
            ("AWS AKIAIOSFODNN7EXAMPLE", "api_key"),
            ("IBAN DE89 3704 0044 0532 0130 00", "bank_account"),
        ] {
            assert_eq!(scan([text]), Some(kind), "{text}");
        }
    }

    #[test]
    fn ordinary_text_is_not_personal() {
        for text in [
            "Write a function that sums 1234 5678 numbers",
            "The meeting is on 2024-10-15 at 14:30",
            "order id 4111 1111 1111 1112 is not a valid card",
            "version 1.2.3 released in 2023",
            "Compare Python 3.12 and 3.11 performance",
            "Co-Authored-By: Claude Code <noreply@anthropic.com>",
        ] {
            assert_eq!(scan([text]), None, "{text}");
        }
    }
}
