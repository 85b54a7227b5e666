//! Anthropic's Messages API (`POST /v1/messages`, what Claude Code speaks): decoded into the
//! internal chat request, and the chat answer encoded back, whole or as Anthropic's named events.
//! Errors on this door are in Anthropic's shape.

use super::answer::{ChunkReader, Delta, Whole};
use crate::backends::sse::Usage;
use crate::error::ApiError;
use serde_json::{json, Map, Value};

fn bad(message: impl Into<String>, field: &str) -> ApiError {
    ApiError::bad_request(message, Some(field))
}

/// A Messages request as a chat completions body. Every text the client sent (system, blocks,
/// tool inputs and results) lands in the body, so the privacy scan reads what is forwarded.
pub fn decode(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut chat = Map::new();
    match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => chat.insert("model".into(), json!(m)),
        _ => return Err(bad("Field required: a non-empty string.", "model")),
    };
    match body.get("max_tokens") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => chat.insert("max_tokens".into(), json!(n)),
        None => return Err(bad("Field required.", "max_tokens")),
        Some(_) => return Err(bad("Must be an integer of at least 1.", "max_tokens")),
    };
    let mut messages = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            let text = blocks
                .iter()
                .enumerate()
                .map(|(i, b)| b["text"].as_str().map(str::to_string).ok_or_else(|| bad("Each system block must be a text block.", &format!("system.{i}"))))
                .collect::<Result<Vec<_>, _>>()?;
            messages.push(json!({"role": "system", "content": text.join("\n")}));
        }
        Some(_) => return Err(bad("Must be a string or a list of text blocks.", "system")),
    }
    let turns = match body.get("messages") {
        Some(Value::Array(turns)) if !turns.is_empty() => turns,
        Some(Value::Array(_)) => return Err(bad("At least one message is required.", "messages")),
        None => return Err(bad("Field required.", "messages")),
        Some(_) => return Err(bad("Must be a list of messages.", "messages")),
    };
    for (i, turn) in turns.iter().enumerate() {
        let at = format!("messages.{i}");
        let role = turn["role"].as_str().ok_or_else(|| bad("Field required: `user` or `assistant`.", &format!("{at}.role")))?;
        let content = match &turn["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(blocks) => blocks.clone(),
            Value::Null => return Err(bad("Field required.", &format!("{at}.content"))),
            _ => return Err(bad("Must be a string or a list of content blocks.", &format!("{at}.content"))),
        };
        match role {
            "user" => user_turn(&content, &at, &mut messages)?,
            // Claude Code puts system turns between the others (its reminders).
            "system" => {
                let text: Vec<&str> = content.iter().filter_map(|b| b["text"].as_str()).collect();
                messages.push(json!({"role": "system", "content": text.join("\n")}));
            }
            "assistant" => messages.push(assistant_turn(&content, &at)?),
            other => return Err(bad(format!("Unexpected role `{other}`: use `user`, `assistant` or `system`."), &format!("{at}.role"))),
        }
    }
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = body.get("tools").filter(|t| !t.is_null()) {
        let tools = tools.as_array().ok_or_else(|| bad("Must be a list of tools.", "tools"))?;
        let mut out = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            // Anthropic's own server tools (web search, code execution, ...) have a dated `type`:
            // only Anthropic runs them, so other backends are offered the client's tools alone.
            if t.get("type").and_then(Value::as_str).is_some_and(|ty| ty != "custom") {
                continue;
            }
            let name = t["name"].as_str().ok_or_else(|| bad("Field required.", &format!("tools.{i}.name")))?;
            let mut function = json!({"name": name, "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"}))});
            if let Some(d) = t.get("description") {
                function["description"] = d.clone();
            }
            out.push(json!({"type": "function", "function": function}));
        }
        if !out.is_empty() {
            chat.insert("tools".into(), Value::Array(out));
        }
    }
    if let Some(choice) = body.get("tool_choice").filter(|c| !c.is_null()) {
        let mapped = match choice["type"].as_str() {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": choice["name"].as_str().ok_or_else(|| bad("Field required.", "tool_choice.name"))?}})
            }
            _ => return Err(bad("`type` must be auto, any, tool or none.", "tool_choice.type")),
        };
        if chat.contains_key("tools") {
            chat.insert("tool_choice".into(), mapped);
        }
        if choice["disable_parallel_tool_use"] == true && chat.contains_key("tools") {
            chat.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    match body.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(s)) if s.iter().all(Value::is_string) => {
            chat.insert("stop".into(), json!(s));
        }
        Some(_) => return Err(bad("Must be a list of strings.", "stop_sequences")),
    }
    super::copy_sampling(body, &mut chat, |key| bad("Must be a number.", key))?;
    if let Some(user) = body.get("metadata").and_then(|m| m.get("user_id")).and_then(Value::as_str) {
        chat.insert("user".into(), json!(user));
    }
    super::copy_stream(body, &mut chat, || bad("Must be a boolean.", "stream"))?;
    Ok(chat)
}

/// A user turn: tool results become `tool` messages (they answer the assistant's calls and must
/// follow them), everything else one user message.
fn user_turn(blocks: &[Value], at: &str, messages: &mut Vec<Value>) -> Result<(), ApiError> {
    let mut parts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let field = format!("{at}.content.{j}");
        match b["type"].as_str() {
            Some("text") => parts.push(json!({"type": "text", "text": text_field(b, &field)?})),
            Some("image") => parts.push(image(b, &field)?),
            Some("tool_result") => {
                let id = b["tool_use_id"].as_str().ok_or_else(|| bad("Field required.", &format!("{field}.tool_use_id")))?;
                let mut text = match &b["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(inner) => inner.iter().filter_map(|x| x["text"].as_str()).collect::<Vec<_>>().join("\n"),
                    _ => String::new(),
                };
                if b["is_error"] == true {
                    text = format!("Error: {text}");
                }
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            Some("document") | Some("search_result") => {
                return Err(bad("This block type is not supported by Hermes; send its text as a text block.", &format!("{field}.type")))
            }
            _ => return Err(bad("Unknown content block type.", &format!("{field}.type"))),
        }
    }
    if !parts.is_empty() {
        let content = match parts.as_slice() {
            [only] if only["type"] == "text" => only["text"].clone(),
            _ => Value::Array(parts),
        };
        messages.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

fn assistant_turn(blocks: &[Value], at: &str) -> Result<Value, ApiError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let field = format!("{at}.content.{j}");
        match b["type"].as_str() {
            Some("text") => text.push_str(text_field(b, &field)?),
            Some("tool_use") => {
                let id = b["id"].as_str().ok_or_else(|| bad("Field required.", &format!("{field}.id")))?;
                let name = b["name"].as_str().ok_or_else(|| bad("Field required.", &format!("{field}.name")))?;
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": input.to_string()}}));
            }
            // Earlier reasoning is Anthropic's to verify; other backends neither need nor take it.
            Some("thinking") | Some("redacted_thinking") => {}
            _ => return Err(bad("Unknown content block type for an assistant turn.", &format!("{field}.type"))),
        }
    }
    let mut m = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    Ok(m)
}

fn text_field<'a>(b: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    b["text"].as_str().ok_or_else(|| bad("Field required.", &format!("{field}.text")))
}

fn image(b: &Value, field: &str) -> Result<Value, ApiError> {
    let s = &b["source"];
    let url = match s["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            s["media_type"].as_str().ok_or_else(|| bad("Field required.", &format!("{field}.source.media_type")))?,
            s["data"].as_str().ok_or_else(|| bad("Field required.", &format!("{field}.source.data")))?
        ),
        Some("url") => s["url"].as_str().ok_or_else(|| bad("Field required.", &format!("{field}.source.url")))?.to_string(),
        _ => return Err(bad("`type` must be base64 or url.", &format!("{field}.source.type"))),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic counts cache reads apart from `input_tokens`.
fn usage(u: &Usage) -> Value {
    json!({"input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens + u.cache_write_tokens), "output_tokens": u.completion_tokens,
           "cache_creation_input_tokens": u.cache_write_tokens, "cache_read_input_tokens": u.cached_tokens})
}

/// A whole chat completion as an Anthropic message.
pub fn encode(chat: &Value, id: &str, model: &str) -> Value {
    let w = Whole::read(chat);
    let mut content = Vec::new();
    if !w.text.is_empty() || w.tool_calls.is_empty() {
        content.push(json!({"type": "text", "text": w.text}));
    }
    for (call_id, name, args) in &w.tool_calls {
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": call_id, "name": name, "input": input}));
    }
    json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": content,
           "stop_reason": stop_reason(&w.finish), "stop_sequence": null, "usage": usage(&w.usage)})
}

/// A text delta as Anthropic writes it.
#[derive(serde::Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// What the stream's open content block is.
#[derive(Clone, Copy, PartialEq)]
enum Block {
    None,
    Text,
    Tool(usize),
}

/// Chat chunks in, Anthropic's events out: `message_start`, then per block
/// `content_block_start`, deltas and `content_block_stop`, then `message_delta` with the stop
/// reason and usage, and `message_stop`.
pub struct StreamEncoder {
    reader: ChunkReader,
    id: String,
    model: String,
    started: bool,
    open: Block,
    blocks: usize,
    finish: String,
    usage: Usage,
}

impl StreamEncoder {
    pub fn new(id: String, model: String) -> StreamEncoder {
        StreamEncoder {
            reader: ChunkReader::default(),
            id,
            model,
            started: false,
            open: Block::None,
            blocks: 0,
            finish: "stop".into(),
            usage: Usage::default(),
        }
    }

    pub fn feed(&mut self, chat: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for delta in self.reader.feed(chat) {
            self.start(&mut out);
            match delta {
                Delta::Text(t) => {
                    self.open_block(Block::Text, || json!({"type": "text", "text": ""}), &mut out);
                    // One per chunk of text: written field by field.
                    super::EventWriter::new("content_block_delta", &mut out)
                        .field("index", &(self.blocks - 1))
                        .field("delta", &TextDelta { kind: "text_delta", text: &t })
                        .end();
                }
                Delta::ToolStart { index, id, name } => {
                    self.open_block(Block::Tool(index), || json!({"type": "tool_use", "id": id, "name": name, "input": {}}), &mut out);
                }
                Delta::ToolArguments { index, fragment } => {
                    if self.open == Block::Tool(index) {
                        self.event(
                            "content_block_delta",
                            json!({"index": self.blocks - 1, "delta": {"type": "input_json_delta", "partial_json": fragment}}),
                            &mut out,
                        );
                    }
                }
                Delta::Reasoning(_) => {}
                Delta::Finish(f) => self.finish = f,
                Delta::Usage(u) => self.usage = u,
                Delta::Done => {
                    self.close_block(&mut out);
                    let mut u = usage(&self.usage);
                    if let Some(o) = u.as_object_mut().filter(|_| self.usage.cache_write_tokens == 0) {
                        o.remove("cache_creation_input_tokens");
                    }
                    self.event("message_delta", json!({"delta": {"stop_reason": stop_reason(&self.finish), "stop_sequence": null}, "usage": u}), &mut out);
                    self.event("message_stop", json!({}), &mut out);
                }
            }
        }
        out
    }

    /// The stream broke after its first byte: Anthropic's `error` event.
    pub fn broke(&mut self, err: &ApiError) -> Vec<u8> {
        let mut out = Vec::new();
        self.start(&mut out);
        out.extend_from_slice(format!("event: error\ndata: {}\n\n", err.to_anthropic()).as_bytes());
        out
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            let message = json!({"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                                 "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}});
            self.event("message_start", json!({"message": message}), out);
        }
    }

    /// Opens a block of this kind unless it is the open one; `block` is its start's JSON.
    fn open_block(&mut self, kind: Block, block: impl FnOnce() -> Value, out: &mut Vec<u8>) {
        if self.open == kind {
            return;
        }
        self.close_block(out);
        self.open = kind;
        self.blocks += 1;
        self.event("content_block_start", json!({"index": self.blocks - 1, "content_block": block()}), out);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open != Block::None {
            self.open = Block::None;
            self.event("content_block_stop", json!({"index": self.blocks - 1}), out);
        }
    }

    fn event(&self, name: &str, data: Value, out: &mut Vec<u8>) {
        super::named_event(name, &data, out);
    }
}

/// `POST /v1/messages/count_tokens`: an estimate of the prompt's tokens, from the same
/// decoding as a real request (so it counts what would be sent).
pub fn count_tokens(body: &Map<String, Value>) -> Result<Value, ApiError> {
    let mut with_max = body.clone();
    with_max.entry("max_tokens").or_insert(json!(1));
    let chat = decode(&with_max)?;
    fn chars(v: &Value) -> usize {
        match v {
            Value::String(s) => s.chars().count(),
            Value::Array(a) => a.iter().map(chars).sum(),
            Value::Object(o) => o.values().map(chars).sum(),
            _ => 0,
        }
    }
    let turns = chat["messages"].as_array().map_or(0, Vec::len);
    let tools = chat.get("tools").map_or(0, |t| t.to_string().len());
    // The classifier's estimate: four characters a token, four tokens of framing a message.
    Ok(json!({"input_tokens": (chars(&chat["messages"]) + tools).div_ceil(4) + 4 * turns}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(sse: &[u8]) -> Vec<(String, Value)> {
        String::from_utf8_lossy(sse)
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                (name.trim_start_matches("event: ").to_string(), serde_json::from_str(data.trim_start_matches("data: ")).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_claude_code_request_decodes_to_chat() {
        let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 512,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "List files"}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "..", "signature": "s"}, {"type": "text", "text": "Running ls."},
                                                  {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a.txt"}]},
                                             {"type": "text", "text": "and now?"}]}],
            "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "any"}, "stop_sequences": ["END"], "stream": true, "metadata": {"user_id": "u1"}});
        let chat = decode(body.as_object().unwrap()).unwrap();
        let m = chat["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "You are Claude Code."}));
        assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], "{\"command\":\"ls\"}");
        assert_eq!(m[3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "a.txt"}));
        assert_eq!(m[4], json!({"role": "user", "content": "and now?"}));
        assert_eq!(chat["tools"].as_array().unwrap().len(), 1, "server tools stay with Anthropic");
        assert_eq!(chat["tool_choice"], "required");
        assert_eq!(chat["stop"], json!(["END"]));
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert_eq!(chat["user"], "u1");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let e = decode(json!({"model": "m", "messages": []}).as_object().unwrap()).unwrap_err();
        assert_eq!(e.param(), Some("max_tokens"));
        let e = decode(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user"}]}).as_object().unwrap()).unwrap_err();
        assert_eq!(e.to_anthropic()["error"]["message"], "messages.0.content: Field required.");
        assert_eq!(e.to_anthropic()["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn a_streamed_tool_call_becomes_blocks() {
        let mut enc = StreamEncoder::new("msg_1".into(), "claude-x".into());
        let chat = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Let me\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"Bash\",\"arguments\":\"{\\\"command\\\":\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"ls\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":7}}\n\n",
            "data: [DONE]\n\n"
        );
        let ev = events(&enc.feed(chat.as_bytes()));
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[4].1["content_block"]["name"], "Bash");
        assert_eq!(ev[4].1["index"], 1);
        assert_eq!(ev[8].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[8].1["usage"]["output_tokens"], 7);
        assert!(ev.iter().all(|(n, d)| d["type"] == n.as_str()));
    }

    #[test]
    fn a_whole_answer_becomes_a_message() {
        let chat = json!({"id": "c", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}});
        let m = encode(&chat, "msg_9", "claude-x");
        assert_eq!(m["content"][0], json!({"type": "text", "text": "Hi"}));
        assert_eq!(m["content"][1]["input"], json!({"a": 1}));
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["usage"]["input_tokens"], 6);
        assert_eq!(m["usage"]["cache_read_input_tokens"], 4);
    }
}
