//! Reading OpenAI SSE streams as they pass: events split anywhere across chunks, usage captured,
//! the bytes themselves never changed.

use serde::Deserialize;

/// Tokens of one answer. `prompt_tokens` counts every input token, cached ones included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "WireUsage")]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Input tokens written to the provider's prompt cache (Anthropic prices them apart).
    pub cache_write_tokens: u64,
    /// Output tokens spent on reasoning (part of `completion_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Two reports of one answer (Anthropic sends input at the start, output at the end).
    pub fn merged(self, other: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.max(other.prompt_tokens),
            completion_tokens: self.completion_tokens.max(other.completion_tokens),
            cached_tokens: self.cached_tokens.max(other.cached_tokens),
            cache_write_tokens: self.cache_write_tokens.max(other.cache_write_tokens),
            reasoning_tokens: self.reasoning_tokens.max(other.reasoning_tokens),
        }
    }

    /// Chat completions' `usage` object.
    pub fn to_chat(self) -> serde_json::Value {
        let mut u = serde_json::json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                                       "total_tokens": self.prompt_tokens + self.completion_tokens});
        if self.cached_tokens > 0 || self.cache_write_tokens > 0 {
            u["prompt_tokens_details"] = serde_json::json!({"cached_tokens": self.cached_tokens, "cache_creation_tokens": self.cache_write_tokens});
        }
        if self.reasoning_tokens > 0 {
            u["completion_tokens_details"] = serde_json::json!({"reasoning_tokens": self.reasoning_tokens});
        }
        u
    }
}

/// Usage as OpenAI (`prompt_tokens`, details) or Anthropic (`input_tokens` without the cache's
/// tokens, `cache_read_input_tokens`, `cache_creation_input_tokens`) report it.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: u64,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Details {
    cached_tokens: Option<u64>,
    cache_creation_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(w: WireUsage) -> Usage {
        let details = w.prompt_tokens_details.unwrap_or_default();
        let reasoning = w.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0);
        match w.prompt_tokens {
            Some(prompt) => Usage {
                prompt_tokens: prompt,
                completion_tokens: w.completion_tokens,
                cached_tokens: details.cached_tokens.unwrap_or(0),
                cache_write_tokens: details.cache_creation_tokens.unwrap_or(0),
                reasoning_tokens: reasoning,
            },
            None => {
                let (read, write) = (w.cache_read_input_tokens.unwrap_or(0), w.cache_creation_input_tokens.unwrap_or(0));
                Usage {
                    prompt_tokens: w.input_tokens + read + write,
                    completion_tokens: w.output_tokens,
                    cached_tokens: read,
                    cache_write_tokens: write,
                    reasoning_tokens: reasoning,
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<Usage>,
}

/// The SSE comment that carries a translated stream's usage when the client did not ask for it.
pub const USAGE_COMMENT: &str = ": usage ";

/// Usage from a whole (non-streamed) JSON answer.
pub fn usage_from_json(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
}

/// Whole lines out of a byte stream cut anywhere: lines inside a chunk are handed over in place,
/// and only a line split across chunks is copied (so a long line in small pieces costs linear time).
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Calls `each` with every line this chunk completes, without its `\n`, in order; stops at
    /// the first error. The unfinished tail waits for the next chunk.
    pub fn feed<E>(&mut self, mut chunk: &[u8], mut each: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = chunk.split_at(nl);
            if self.pending.is_empty() {
                each(head)?;
            } else {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(head);
                each(&line)?;
            }
            chunk = &rest[1..];
        }
        self.pending.extend_from_slice(chunk);
        Ok(())
    }
}

/// Follows one SSE stream line by line. Only lines that may carry usage are parsed as JSON.
#[derive(Debug, Default)]
pub struct SseScanner {
    lines: Lines,
    pub usage: Option<Usage>,
    pub saw_done: bool,
    pub data_events: u64,
    /// When Some, the streamed answer's text is gathered here (for shadow comparisons).
    pub text: Option<String>,
    /// An in-band error (`data: {"error": ...}`), as OpenRouter and vLLM send mid-stream.
    pub error: Option<String>,
}

impl SseScanner {
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut lines = std::mem::take(&mut self.lines);
        let _ = lines.feed(chunk, |line| {
            self.line(line);
            Ok::<_, std::convert::Infallible>(())
        });
        self.lines = lines;
    }

    fn take_usage(&mut self, u: Usage) {
        self.usage = Some(self.usage.map_or(u, |old| old.merged(u)));
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(json) = line.strip_prefix(USAGE_COMMENT.as_bytes()) {
            if let Ok(u) = serde_json::from_slice::<Usage>(json) {
                self.take_usage(u);
            }
            return;
        }
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        self.data_events += 1;
        if data == b"[DONE]" || data.starts_with(b"{\"type\":\"message_stop\"") {
            // (Anthropic's own stream, relayed as it is to the Messages door, ends on message_stop.)
            self.saw_done = true;
        } else if data.starts_with(b"{\"type\":\"message_start\"") {
            let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
            if let Ok(u) = serde_json::from_value::<Usage>(v["message"]["usage"].clone()) {
                self.take_usage(u);
            }
        } else if data.starts_with(b"{\"error\"") || data.starts_with(b"{\"type\":\"error\"") {
            // In-band errors of OpenAI-compatible streams, and Anthropic's `error` event.
            let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
            let msg = v["error"]["message"].as_str().or(v["error"].as_str()).unwrap_or("unknown error");
            self.error = Some(msg.chars().take(300).collect());
        } else {
            if contains(data, b"\"usage\"") {
                if let Some(u) = usage_from_json(data) {
                    self.take_usage(u);
                }
            }
            if let Some(text) = self.text.as_mut() {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
                    text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
                }
            }
        }
    }
}

/// A stream relayed in whole events: what ends on an event boundary (a blank line) goes on at
/// once, in place when a chunk ends on one (the usual case); an unfinished event waits for the
/// rest, up to `limit` bytes.
#[derive(Debug)]
pub struct WholeEvents {
    pending: bytes::BytesMut,
    limit: usize,
}

impl WholeEvents {
    pub fn new(limit: usize) -> WholeEvents {
        WholeEvents { pending: bytes::BytesMut::new(), limit }
    }

    /// The bytes this chunk lets through, if any.
    pub fn push(&mut self, chunk: bytes::Bytes) -> Option<bytes::Bytes> {
        if self.pending.is_empty() {
            let Some(end) = last_boundary(&chunk) else {
                self.pending.extend_from_slice(&chunk);
                return None;
            };
            if end < chunk.len() {
                self.pending.extend_from_slice(&chunk[end..]);
            }
            return Some(chunk.slice(..end));
        }
        let from = self.pending.len().saturating_sub(2);
        self.pending.extend_from_slice(&chunk);
        let end = from + last_boundary(&self.pending[from..])?;
        Some(self.pending.split_to(end).freeze())
    }

    /// An unfinished event has grown past the limit.
    pub fn overflowed(&self) -> bool {
        self.pending.len() > self.limit
    }

    /// What is left when the stream ends cleanly (a last event without its blank line).
    pub fn finish(&mut self) -> Option<bytes::Bytes> {
        (!self.pending.is_empty()).then(|| self.pending.split().freeze())
    }
}

/// Just after the last blank line (`\n\n` or `\n\r\n`) in `b`.
fn last_boundary(b: &[u8]) -> Option<usize> {
    (2..=b.len()).rev().find(|&i| b[i - 1] == b'\n' && (b[i - 2] == b'\n' || (i >= 3 && b[i - 2] == b'\r' && b[i - 3] == b'\n')))
}

/// One server-sent event: its `event:` name (if any) and its `data:` lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// Splits an SSE stream into whole events, wherever the chunks are cut.
#[derive(Debug, Default)]
pub struct EventSplitter {
    lines: Lines,
    name: Option<String>,
    data: Vec<String>,
}

impl EventSplitter {
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        let EventSplitter { lines, name, data } = self;
        let _ = lines.feed(chunk, |raw| {
            let line = String::from_utf8_lossy(raw);
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                if !data.is_empty() || name.is_some() {
                    events.push(Event { name: name.take(), data: std::mem::take(data).join("\n") });
                }
            } else if let Some(v) = line.strip_prefix("event:") {
                *name = Some(v.trim_start().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            }
            Ok::<_, std::convert::Infallible>(())
        });
        events
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_events_pass_and_halves_wait() {
        let mut w = WholeEvents::new(64);
        let whole = bytes::Bytes::from_static(b"data: a\n\n");
        assert_eq!(w.push(whole.clone()).unwrap(), whole);
        assert_eq!(w.push(bytes::Bytes::from_static(b"data: b\n\ndata: {\"c")).unwrap(), &b"data: b\n\n"[..]);
        assert_eq!(w.push(bytes::Bytes::from_static(b"\":1}\n")), None);
        assert_eq!(w.push(bytes::Bytes::from_static(b"\r\n")).unwrap(), &b"data: {\"c\":1}\n\r\n"[..]);
        assert_eq!(w.finish(), None);
        w.push(bytes::Bytes::from(vec![b'x'; 65]));
        assert!(w.overflowed());
    }

    const STREAM: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn usage_is_found_however_the_stream_is_cut() {
        for cut in 1..STREAM.len() {
            let mut s = SseScanner::default();
            let (a, b) = STREAM.as_bytes().split_at(cut);
            s.feed(a);
            s.feed(b);
            assert_eq!(s.usage, Some(Usage { prompt_tokens: 11, completion_tokens: 7, ..Usage::default() }), "cut at {cut}");
            assert!(s.saw_done);
            assert_eq!(s.data_events, 3);
        }
    }

    #[test]
    fn byte_by_byte_with_crlf() {
        let crlf = STREAM.replace('\n', "\r\n");
        let mut s = SseScanner::default();
        for b in crlf.as_bytes() {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.usage.map(|u| u.completion_tokens), Some(7));
        assert!(s.saw_done);
    }

    #[test]
    fn events_are_split_whole_with_their_names() {
        let text = "event: message_start\ndata: {\"a\":1}\n\n: comment\nevent: ping\ndata: {}\n\ndata: x\ndata: y\n\n";
        for cut in 1..text.len() {
            let mut s = EventSplitter::default();
            let mut events = s.feed(&text.as_bytes()[..cut]);
            events.extend(s.feed(&text.as_bytes()[cut..]));
            assert_eq!(
                events,
                vec![
                    Event { name: Some("message_start".into()), data: "{\"a\":1}".into() },
                    Event { name: Some("ping".into()), data: "{}".into() },
                    Event { name: None, data: "x\ny".into() },
                ]
            );
        }
    }

    #[test]
    fn usage_comments_are_read_but_are_not_data() {
        let mut s = SseScanner::default();
        s.feed(b": usage {\"prompt_tokens\":5,\"completion_tokens\":9,\"total_tokens\":14}\n\n");
        assert_eq!(s.usage, Some(Usage { prompt_tokens: 5, completion_tokens: 9, ..Usage::default() }));
        assert_eq!(s.data_events, 0);
    }

    #[test]
    fn cached_and_reasoning_tokens_are_read_from_either_provider() {
        let openai: Usage = serde_json::from_str(
            r#"{"prompt_tokens":100,"completion_tokens":50,"prompt_tokens_details":{"cached_tokens":60},"completion_tokens_details":{"reasoning_tokens":30}}"#,
        )
        .unwrap();
        assert_eq!(openai, Usage { prompt_tokens: 100, completion_tokens: 50, cached_tokens: 60, cache_write_tokens: 0, reasoning_tokens: 30 });
        let nulls: Usage = serde_json::from_str(r#"{"prompt_tokens":3,"completion_tokens":1,"prompt_tokens_details":null}"#).unwrap();
        assert_eq!(nulls.prompt_tokens, 3);
        // Anthropic's stream: input (without the cache's tokens) first, output at the end.
        let mut s = SseScanner::default();
        s.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":80,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\n\n");
        s.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":42}}\n\n");
        s.feed(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        assert_eq!(s.usage, Some(Usage { prompt_tokens: 95, completion_tokens: 42, cached_tokens: 80, cache_write_tokens: 5, reasoning_tokens: 0 }));
        assert!(s.saw_done);
        assert_eq!(Usage::from(serde_json::from_value::<WireUsage>(s.usage.unwrap().to_chat()).unwrap()), s.usage.unwrap());
    }

    #[test]
    fn in_band_errors_are_noticed() {
        let mut s = SseScanner::default();
        s.feed(b": OPENROUTER PROCESSING\n\n");
        assert_eq!(s.data_events, 0, "comments are not data");
        s.feed(b"data: {\"error\":{\"message\":\"provider overloaded\",\"code\":502}}\n\n");
        assert_eq!(s.error.as_deref(), Some("provider overloaded"));
    }

    #[test]
    fn a_cut_stream_has_no_done() {
        let mut s = SseScanner::default();
        s.feed(&STREAM.as_bytes()[..60]);
        assert!(!s.saw_done);
        assert_eq!(s.usage, None);
    }
}
