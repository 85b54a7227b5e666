//! Keys out of everything Hermes relays, logs or stores. An upstream that quotes its own
//! `Authorization` header back (in an error body, a response header, an SSE error event) would
//! otherwise hand the backend's key to the client, the log and the analytics file. Hermes knows
//! every key it holds (backends' and clients'), so it looks for each one, and for its base64 and
//! percent encodings, in every answer before anything else reads it.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use bytes::Bytes;
use std::borrow::Cow;

/// What a key is replaced with.
pub const REDACTED: &str = "[redacted]";
/// Shorter secrets are not looked for: they would match ordinary text.
const MIN_SECRET: usize = 8;
/// The shortest encoded form worth matching (base64 cores of short keys are too common).
const MIN_ENCODED: usize = 12;

#[derive(Default)]
pub struct Scrubber {
    /// None when no key is held: scrubbing is then free.
    matcher: Option<AhoCorasick>,
    patterns: Vec<Vec<u8>>,
}

impl Scrubber {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Scrubber {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for s in secrets.into_iter().map(str::trim).filter(|s| s.len() >= MIN_SECRET) {
            patterns.push(s.as_bytes().to_vec());
            let escaped: String =
                s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
            patterns.push(escaped.into_bytes());
            patterns.extend(base64_cores(s.as_bytes()).into_iter().filter(|c| c.len() >= MIN_ENCODED));
        }
        patterns.sort();
        patterns.dedup();
        // Longest first, so that a key's match wins over a shorter encoding inside it.
        let matcher = (!patterns.is_empty()).then(|| AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&patterns).ok()).flatten();
        Scrubber { matcher, patterns }
    }

    /// `text` with every key replaced; borrowed when there was none.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.matcher {
            Some(m) if m.is_match(text) => Cow::Owned(m.replace_all(text, &vec![REDACTED; self.patterns.len()])),
            _ => Cow::Borrowed(text),
        }
    }

    pub fn bytes(&self, body: Bytes) -> Bytes {
        match &self.matcher {
            Some(m) if m.is_match(&body[..]) => Bytes::from(m.replace_all_bytes(&body, &vec![REDACTED.as_bytes(); self.patterns.len()])),
            _ => body,
        }
    }

    pub fn is_active(&self) -> bool {
        self.matcher.is_some()
    }

    /// How many bytes at the end of `data` could be the start of a key that the next chunk
    /// completes: a stream holds those back rather than relay half a key.
    pub fn unfinished_tail(&self, data: &[u8]) -> usize {
        let mut keep = 0;
        for p in &self.patterns {
            let reach = (p.len() - 1).min(data.len());
            for start in data.len() - reach..data.len() {
                let tail = &data[start..];
                if data.len() - start > keep && p.starts_with(tail) {
                    keep = data.len() - start;
                    break;
                }
            }
        }
        keep
    }
}

/// The parts of a key's base64 form that do not depend on what surrounds it: for each of the
/// three alignments, the whole 4-character groups made of key bytes alone (standard and URL-safe
/// alphabets). A key inside `user:key` in a Basic header is found this way.
fn base64_cores(key: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for offset in 0..3usize {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(key);
        // Groups that start after the filler and end within the key.
        let first_group = offset.div_ceil(3);
        let last_group = padded.len() / 3;
        if last_group <= first_group {
            continue;
        }
        for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
            let encoded = engine.encode(&padded);
            out.push(encoded.as_bytes()[first_group * 4..last_group * 4].to_vec());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    const KEY: &str = "sk-live-0123456789abcdefXYZ";

    #[test]
    fn keys_and_their_encodings_are_replaced() {
        let s = Scrubber::new([KEY, "short"]);
        assert_eq!(s.text(&format!("bad key: Bearer {KEY}.")), "bad key: Bearer [redacted].");
        for prefix in ["", "u:", "user:"] {
            let basic = STANDARD.encode(format!("{prefix}{KEY}"));
            let cleaned = s.text(&format!("Basic {basic}")).into_owned();
            assert!(cleaned.contains(REDACTED), "{prefix:?}: {cleaned}");
            assert!(cleaned.len() < basic.len(), "most of it went: {cleaned}");
        }
        assert!(matches!(s.text("nothing to see, short"), Cow::Borrowed(_)));
        assert!(!Scrubber::new(["short"]).is_active());
    }

    #[test]
    fn a_key_split_over_two_chunks_is_held_back() {
        let s = Scrubber::new([KEY]);
        let data = format!("data: {{\"x\": \"{}", &KEY[..10]);
        assert_eq!(s.unfinished_tail(data.as_bytes()), 10);
        assert_eq!(s.unfinished_tail(b"data: done\n\n"), 0);
    }
}
