//! The internal answer every backend gives back (OpenAI chat completions, whole or streamed),
//! read into the parts a door re-encodes: text, tool calls, why it stopped, and usage.

use crate::backends::sse::{EventSplitter, Usage};
use serde_json::Value;

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
            let Ok(v) = serde_json::from_str::<Value>(&event.data) else { continue };
            if v["usage"].is_object() {
                out.push(Delta::Usage(usage_of(&v["usage"])));
            }
            let Some(choice) = v["choices"].get(0) else { continue };
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
                let theirs = call["index"].as_u64().unwrap_or(0);
                let index = match self.tools.iter().position(|t| *t == theirs) {
                    Some(i) if call["id"].as_str().is_none_or(str::is_empty) => i,
                    _ => {
                        self.tools.push(theirs);
                        let index = self.tools.len() - 1;
                        let id = call["id"].as_str().unwrap_or_default().to_string();
                        out.push(Delta::ToolStart { index, id, name: call["function"]["name"].as_str().unwrap_or_default().to_string() });
                        index
                    }
                };
                if let Some(f) = call["function"]["arguments"].as_str().filter(|f| !f.is_empty()) {
                    out.push(Delta::ToolArguments { index, fragment: f.to_string() });
                }
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                out.push(Delta::Finish(f.to_string()));
            }
        }
        out
    }
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
}
