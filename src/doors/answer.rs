//! The internal answer every backend gives back (OpenAI chat completions, whole or streamed),
//! read into the parts a door re-encodes: text, tool calls, why it stopped, and usage.

use crate::backends::sse::{EventSplitter, Usage};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// One step of a streamed answer, in the order the backend sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Text(String),
    /// Reasoning text a backend streams beside the answer (`reasoning_content`, `reasoning`).
    Reasoning(String),
    /// A tool call begins: its place among the answer's calls, id and function name.
    ToolStart {
        index: usize,
        id: String,
        name: String,
    },
    /// More of a tool call's JSON arguments.
    ToolArguments {
        index: usize,
        fragment: String,
    },
    Finish(String),
    Usage(Usage),
    /// `[DONE]`: the answer is complete.
    Done,
}

/// Usage as the chat answer reported it (OpenAI's fields, cached and reasoning tokens included).
fn usage_of(v: &Value) -> Usage {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// A whole chat completion, read.
#[derive(Debug, Default)]
pub struct Whole {
    pub id: String,
    pub model: String,
    pub text: String,
    pub reasoning: String,
    /// (id, name, arguments as JSON text)
    pub tool_calls: Vec<(String, String, String)>,
    pub finish: String,
    pub usage: Usage,
}

impl Whole {
    pub fn read(v: &Value) -> Whole {
        let choice = &v["choices"][0];
        let m = &choice["message"];
        let text_of = |c: &Value| match c {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            _ => String::new(),
        };
        Whole {
            id: v["id"].as_str().unwrap_or_default().to_string(),
            model: v["model"].as_str().unwrap_or_default().to_string(),
            text: text_of(&m["content"]),
            reasoning: m["reasoning_content"].as_str().or(m["reasoning"].as_str()).unwrap_or_default().to_string(),
            tool_calls: m["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let args = match &c["function"]["arguments"] {
                        Value::String(s) => s.clone(),
                        Value::Null => "{}".to_string(),
                        other => other.to_string(),
                    };
                    (c["id"].as_str().unwrap_or_default().to_string(), c["function"]["name"].as_str().unwrap_or_default().to_string(), args)
                })
                .collect(),
            finish: choice["finish_reason"].as_str().unwrap_or("stop").to_string(),
            usage: usage_of(&v["usage"]),
        }
    }
}

/// Chat chunks in, deltas out; the chunks may be cut anywhere.
#[derive(Debug, Default)]
pub struct ChunkReader {
    events: EventSplitter,
    /// Tool calls seen so far, by the backend's index: our index in order of appearance.
    tools: Vec<u64>,
}

impl ChunkReader {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Delta> {
        let mut out = Vec::new();
        for event in self.events.feed(bytes) {
            if event.data.trim() == "[DONE]" {
                out.push(Delta::Done);
                continue;
            }
            // The fields read, borrowed from the event where they can be; a chunk of another
            // shape (a content array, a null where text was expected) is read as a JSON tree.
            match serde_json::from_str::<Chunk>(&event.data) {
                Ok(chunk) => self.read(chunk, &mut out),
                Err(_) => match serde_json::from_str::<Value>(&event.data) {
                    Ok(v) => self.read_tree(&v, &mut out),
                    Err(_) => continue,
                },
            }
        }
        out
    }

    fn read(&mut self, chunk: Chunk, out: &mut Vec<Delta>) {
        if let Some(u) = chunk.usage.filter(Value::is_object) {
            out.push(Delta::Usage(usage_of(&u)));
        }
        let Some(choice) = chunk.choices.and_then(|c| c.into_iter().next()) else { return };
        let d = choice.delta.unwrap_or_default();
        for r in [d.reasoning_content, d.reasoning].into_iter().flatten().filter(|r| !r.is_empty()) {
            out.push(Delta::Reasoning(r.into_owned()));
        }
        if let Some(t) = d.content.filter(|t| !t.is_empty()) {
            out.push(Delta::Text(t.into_owned()));
        }
        for call in d.tool_calls.into_iter().flatten() {
            let function = call.function.unwrap_or_default();
            self.tool_call(call.index.unwrap_or(0), call.id.as_deref(), function.name.as_deref(), function.arguments.as_deref(), out);
        }
        if let Some(f) = choice.finish_reason {
            out.push(Delta::Finish(f.into_owned()));
        }
    }

    /// The same reading, of a chunk as a JSON tree.
    fn read_tree(&mut self, v: &Value, out: &mut Vec<Delta>) {
        if v["usage"].is_object() {
            out.push(Delta::Usage(usage_of(&v["usage"])));
        }
        let Some(choice) = v["choices"].get(0) else { return };
        let d = &choice["delta"];
        for key in ["reasoning_content", "reasoning"] {
            if let Some(r) = d[key].as_str().filter(|r| !r.is_empty()) {
                out.push(Delta::Reasoning(r.to_string()));
            }
        }
        if let Some(t) = d["content"].as_str().filter(|t| !t.is_empty()) {
            out.push(Delta::Text(t.to_string()));
        }
        for call in d["tool_calls"].as_array().into_iter().flatten() {
            let f = &call["function"];
            self.tool_call(call["index"].as_u64().unwrap_or(0), call["id"].as_str(), f["name"].as_str(), f["arguments"].as_str(), out);
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            out.push(Delta::Finish(f.to_string()));
        }
    }

    /// One tool call's piece: a call with a new index or an id starts a call.
    fn tool_call(&mut self, theirs: u64, id: Option<&str>, name: Option<&str>, arguments: Option<&str>, out: &mut Vec<Delta>) {
        let index = match self.tools.iter().position(|t| *t == theirs) {
            Some(i) if id.is_none_or(str::is_empty) => i,
            _ => {
                self.tools.push(theirs);
                let index = self.tools.len() - 1;
                out.push(Delta::ToolStart { index, id: id.unwrap_or_default().to_string(), name: name.unwrap_or_default().to_string() });
                index
            }
        };
        if let Some(f) = arguments.filter(|f| !f.is_empty()) {
            out.push(Delta::ToolArguments { index, fragment: f.to_string() });
        }
    }
}

/// The fields of a chat chunk the doors read; every other field is skipped unread.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<ChunkChoice<'a>>>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(borrow, default)]
    delta: Option<ChunkDelta<'a>>,
    #[serde(borrow, default, deserialize_with = "text")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct ChunkDelta<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ChunkCall<'a>>>,
}

#[derive(Deserialize)]
struct ChunkCall<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default, deserialize_with = "text")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<ChunkFunction<'a>>,
}

#[derive(Deserialize, Default)]
struct ChunkFunction<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    arguments: Option<Cow<'a, str>>,
}

/// Text or null, borrowed from the event unless it has escapes (serde's `Option<Cow<str>>`
/// always copies). Anything else fails the typed reading, and the chunk is read as a tree.
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("text or null")
        }
        fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(s)))
        }
        fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(s.to_string())))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cut_anywhere_become_deltas_in_order() {
        let sse = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n",
            "data: [DONE]\n\n"
        );
        let mut r = ChunkReader::default();
        let deltas: Vec<Delta> = sse.as_bytes().chunks(5).flat_map(|c| r.feed(c)).collect();
        // Read as a JSON tree, each event gives the same.
        let mut tree = ChunkReader::default();
        let mut by_tree = Vec::new();
        for event in tree.events.feed(sse.as_bytes()) {
            match serde_json::from_str::<Value>(&event.data) {
                Ok(v) => tree.read_tree(&v, &mut by_tree),
                Err(_) => by_tree.push(Delta::Done),
            }
        }
        assert_eq!(deltas, by_tree);
        assert_eq!(
            deltas,
            vec![
                Delta::Text("Hi".into()),
                Delta::ToolStart { index: 0, id: "call_1".into(), name: "f".into() },
                Delta::ToolArguments { index: 0, fragment: "{\"a\":1}".into() },
                Delta::Finish("tool_calls".into()),
                Delta::Usage(Usage { prompt_tokens: 9, completion_tokens: 4, cached_tokens: 3, ..Default::default() }),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn a_chunk_of_another_shape_is_read_as_a_tree() {
        let sse = concat!(
            // Text with escapes (copied, not borrowed), a content array (read as a tree: no
            // text from it), a null index, and a usage report beside a choice.
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\\n\\\"b\\\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":[{\"type\":\"text\",\"text\":\"x\"}]},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":null,\"id\":\"c\",\"function\":{\"name\":\"f\"}}]}}],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}\n\n",
            "data: {\"choices\":null}\n\n",
        );
        let deltas = ChunkReader::default().feed(sse.as_bytes());
        assert_eq!(
            deltas,
            vec![
                Delta::Text("a\n\"b\"".into()),
                Delta::Finish("stop".into()),
                Delta::Usage(Usage { prompt_tokens: 2, completion_tokens: 1, ..Default::default() }),
                Delta::ToolStart { index: 0, id: "c".into(), name: "f".into() },
            ]
        );
    }
}
