//! `anthropic`: Claude through Anthropic's native Messages API. OpenAI chat is translated both
//! ways: system prompt, roles, images, tools and tool results, stop sequences, streaming events,
//! usage (cache reads and writes too) and stop reasons. A request that came in by the Messages
//! door is passed through as the client sent it (`cache_control`, `thinking`, `anthropic-beta`
//! and all), and so is Anthropic's answer.

use super::reply::{json_reply, translated_stream, AttemptError, Reply};
use super::{model_ids, Backend, Call};
use crate::backends::sse::{EventSplitter, Usage};
use crate::backends::upstream::{Api, Upstream};
use crate::error::ApiError;
use crate::state::config::BackendConfig;
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

const API_VERSION: &str = "2023-06-01";
/// Anthropic requires max_tokens; OpenAI clients often leave it out.
const DEFAULT_MAX_TOKENS: u64 = 4096;

pub struct Anthropic {
    config: BackendConfig,
    api: Api,
}

impl Anthropic {
    pub fn new(config: BackendConfig, upstream: &Arc<Upstream>) -> Anthropic {
        let mut headers = vec![("anthropic-version", API_VERSION.to_string())];
        if let Some(key) = &config.api_key {
            headers.push(("x-api-key", key.expose().to_string()));
        }
        let api = Api::new(upstream, &config.base_url, headers);
        Anthropic { config, api }
    }
}

#[async_trait]
impl Backend for Anthropic {
    fn config(&self) -> &BackendConfig {
        &self.config
    }

    async fn send(&self, call: Call<'_>) -> Result<Reply, AttemptError> {
        if call.request.endpoint != crate::doors::openai::Endpoint::ChatCompletions {
            let e = ApiError::bad_request("Anthropic backends serve chat completions only, not embeddings.", Some("model"));
            return Ok(json_reply(400, e.to_value()));
        }
        if matches!(call.request.door, crate::doors::Door::Messages { .. }) {
            return self.pass_through(&call).await;
        }
        let body = messages_request(&call.request.body, call.model, call.request.stream);
        let mut resp = self.api.post_json_with("/messages", body.to_string().into(), call.trace_headers).await?;
        let status = resp.status;
        if status != 200 || !call.request.stream {
            let bytes = resp.bytes().await?;
            let parsed = serde_json::from_slice::<Value>(&bytes);
            return match (status, parsed) {
                (200, Ok(v)) if v["type"] == "message" => Ok(json_reply(200, chat_response(&v))),
                (200, _) => Err(AttemptError::Broken("unreadable answer from Anthropic".into())),
                (_, v) => Ok(json_reply(status, error(status, &v.unwrap_or_default()).to_value())),
            };
        }
        let mut t = StreamTranslator::new(call.model.to_string(), call.request.include_usage());
        Ok(translated_stream(resp, move |chunk| t.feed(chunk)))
    }

    async fn probe(&self) -> Result<Vec<String>, String> {
        Ok(model_ids(&self.api.get_json("/models").await?))
    }
}

impl Anthropic {
    /// The client's Messages body with only the model set, its `anthropic-version` and
    /// `anthropic-beta`, and Anthropic's answer as it comes.
    async fn pass_through(&self, call: &Call<'_>) -> Result<Reply, AttemptError> {
        let body = match crate::doors::openai::json_object(call.original) {
            Ok(mut m) if m.get("model").and_then(Value::as_str) != Some(call.model) => {
                m.insert("model".into(), json!(call.model));
                Value::Object(m).to_string().into()
            }
            _ => call.original.clone(),
        };
        let headers: Vec<(&'static str, String)> = call.passed_headers.iter().chain(call.trace_headers).cloned().collect();
        let mut reply = self.api.post_json_with("/messages", body, &headers).await?;
        reply.native = true;
        Ok(reply)
    }
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(""),
        _ => String::new(),
    }
}

/// OpenAI content (a string or parts) as Anthropic content blocks.
fn blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(json!({"type": "text", "text": p.get("text").and_then(Value::as_str).unwrap_or("")})),
                Some("image_url") => {
                    let url = p["image_url"]["url"].as_str().unwrap_or("");
                    Some(match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                        Some((media, data)) => json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}),
                        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                    })
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// OpenAI chat request → Anthropic Messages request.
pub fn messages_request(openai: &Map<String, Value>, model: &str, stream: bool) -> Value {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut push = |role: &str, content: Vec<Value>| {
        if content.is_empty() {
            return;
        }
        // Anthropic wants user and assistant turns to alternate: merge neighbours.
        if let Some(last) = messages.last_mut().filter(|m| m["role"] == role) {
            if let Some(arr) = last["content"].as_array_mut() {
                arr.extend(content);
            }
        } else {
            messages.push(json!({"role": role, "content": content}));
        }
    };
    for m in openai.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" | "developer" => system.push(text_of(content)),
            "assistant" => {
                let mut b = blocks(content);
                for c in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let args = c["function"]["arguments"].as_str().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_else(|| json!({}));
                    b.push(json!({"type": "tool_use", "id": c["id"], "name": c["function"]["name"], "input": args}));
                }
                push("assistant", b);
            }
            "tool" | "function" => push(
                "user",
                vec![json!({"type": "tool_result", "tool_use_id": m.get("tool_call_id").cloned().unwrap_or(Value::Null), "content": text_of(content)})],
            ),
            _ => push("user", blocks(content)),
        }
    }
    let max_tokens = ["max_completion_tokens", "max_tokens"].iter().find_map(|k| openai.get(*k).and_then(Value::as_u64)).unwrap_or(DEFAULT_MAX_TOKENS);
    let mut body = json!({"model": model, "messages": messages, "max_tokens": max_tokens});
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if stream {
        body["stream"] = json!(true);
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = openai.get(k).filter(|v| !v.is_null()) {
            body[k] = v.clone();
        }
    }
    match openai.get("stop") {
        Some(Value::String(s)) => body["stop_sequences"] = json!([s]),
        Some(Value::Array(a)) => body["stop_sequences"] = Value::Array(a.clone()),
        _ => {}
    }
    if let Some(tools) = openai.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = &t["function"];
                let mut tool = json!({"name": f["name"], "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}))});
                if let Some(d) = f.get("description") {
                    tool["description"] = d.clone();
                }
                tool
            })
            .collect();
        body["tools"] = Value::Array(tools);
    }
    match openai.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => body["tool_choice"] = json!({"type": "any"}),
        Some(Value::String(s)) if s == "auto" || s == "none" => body["tool_choice"] = json!({"type": s}),
        Some(Value::Object(o)) => {
            if let Some(name) = o.get("function").and_then(|f| f.get("name")) {
                body["tool_choice"] = json!({"type": "tool", "name": name});
            }
        }
        _ => {}
    }
    if let Some(user) = openai.get("user").and_then(Value::as_str) {
        body["metadata"] = json!({"user_id": user});
    }
    body
}

fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Anthropic's usage object in chat completions' shape (cache reads as `cached_tokens`).
fn usage(anthropic: &Value) -> Value {
    serde_json::from_value::<Usage>(anthropic.clone()).unwrap_or_default().to_chat()
}

/// Anthropic message → OpenAI chat completion.
pub fn chat_response(msg: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in msg["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(json!({"id": b["id"], "type": "function",
                                                  "function": {"name": b["name"], "arguments": b["input"].to_string()}})),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let u = &msg["usage"];
    json!({"id": msg["id"], "object": "chat.completion", "created": crate::backends::now_secs(), "model": msg["model"],
           "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(msg["stop_reason"].as_str())}],
           "usage": usage(u)})
}

/// Anthropic's error body (`{"type":"error","error":{"type","message"}}`) in OpenAI's shape.
pub fn error(status: u16, v: &Value) -> ApiError {
    let message = v["error"]["message"].as_str().unwrap_or("the Anthropic API refused the request");
    ApiError::upstream(status, format!("Anthropic: {message}"))
}

/// Anthropic streaming events → OpenAI chunks, as they arrive.
pub struct StreamTranslator {
    events: EventSplitter,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// What message_start reported; message_delta adds the output.
    usage: Usage,
    /// Anthropic content block index → OpenAI tool call index.
    tools: HashMap<u64, usize>,
}

impl StreamTranslator {
    pub fn new(model: String, include_usage: bool) -> StreamTranslator {
        StreamTranslator {
            events: EventSplitter::default(),
            id: String::new(),
            model,
            created: crate::backends::now_secs(),
            include_usage,
            usage: Usage::default(),
            tools: HashMap::new(),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let v = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        out.extend_from_slice(format!("data: {v}\n\n").as_bytes());
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for event in self.events.feed(bytes) {
            let v: Value = serde_json::from_str(&event.data).unwrap_or_default();
            match v["type"].as_str().or(event.name.as_deref()) {
                Some("message_start") => {
                    let m = &v["message"];
                    self.id = m["id"].as_str().unwrap_or("msg").to_string();
                    if let Some(model) = m["model"].as_str() {
                        self.model = model.to_string();
                    }
                    self.usage = serde_json::from_value(m["usage"].clone()).unwrap_or_default();
                    self.chunk(json!({"role": "assistant", "content": ""}), None, &mut out);
                }
                Some("content_block_start") if v["content_block"]["type"] == "tool_use" => {
                    let index = self.tools.len();
                    self.tools.insert(v["index"].as_u64().unwrap_or(0), index);
                    let b = &v["content_block"];
                    self.chunk(
                        json!({"tool_calls": [{"index": index, "id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": ""}}]}),
                        None,
                        &mut out,
                    );
                }
                Some("content_block_delta") => {
                    let d = &v["delta"];
                    match d["type"].as_str() {
                        Some("text_delta") => self.chunk(json!({"content": d["text"]}), None, &mut out),
                        Some("input_json_delta") => {
                            let index = self.tools.get(&v["index"].as_u64().unwrap_or(0)).copied().unwrap_or(0);
                            self.chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": d["partial_json"]}}]}), None, &mut out);
                        }
                        _ => {}
                    }
                }
                Some("message_delta") => {
                    let end: Usage = serde_json::from_value(v["usage"].clone()).unwrap_or_default();
                    let usage = self.usage.merged(end);
                    self.chunk(json!({}), Some(finish_reason(v["delta"]["stop_reason"].as_str())), &mut out);
                    crate::backends::ollama_wire::usage_event(&self.id, &self.model, self.created, self.include_usage, usage.to_chat(), &mut out);
                }
                Some("message_stop") => out.extend_from_slice(b"data: [DONE]\n\n"),
                Some("error") => return Err(format!("Anthropic: {}", v["error"]["message"].as_str().unwrap_or("stream error"))),
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_move_system_tools_and_tool_results_where_anthropic_wants_them() {
        let openai = json!({"model": "x", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "Thanks"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "stop": "END", "temperature": 0.1});
        let r = messages_request(openai.as_object().unwrap(), "claude-3-5-sonnet-latest", true);
        assert_eq!(r["system"], "Be brief.");
        assert_eq!(r["max_tokens"], DEFAULT_MAX_TOKENS);
        let msgs = r["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3, "tool result and the next user turn merge: {r}");
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][0]["input"]["city"], "Paris");
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["text"], "Thanks");
        assert_eq!(r["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(r["tool_choice"]["type"], "any");
        assert_eq!(r["stop_sequences"][0], "END");
        assert_eq!(r["stream"], true);
    }

    #[test]
    fn streaming_events_become_openai_chunks() {
        let sse = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-3-5-sonnet-20241022\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"f\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut t = StreamTranslator::new("claude".into(), true);
        let mut out = Vec::new();
        for piece in sse.as_bytes().chunks(7) {
            out.extend(t.feed(piece).unwrap());
        }
        let text = String::from_utf8(out).unwrap();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter(|e| !e.is_empty() && *e != "data: [DONE]")
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(events[0]["id"], "msg_1");
        assert_eq!(events[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(events[2]["choices"][0]["delta"]["tool_calls"][0]["id"], "toolu_9");
        assert_eq!(events[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"], "{\"a\":");
        assert_eq!(events[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(events[5]["usage"]["prompt_tokens"], 25);
        assert_eq!(events[5]["usage"]["completion_tokens"], 15);
        assert!(text.ends_with("data: [DONE]\n\n"));
        let err = t.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        assert!(err.unwrap_err().contains("Overloaded"));
    }

    #[test]
    fn whole_answers_and_errors() {
        let msg = json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-x",
                         "content": [{"type": "text", "text": "Hello"}], "stop_reason": "max_tokens", "usage": {"input_tokens": 3, "output_tokens": 4}});
        let r = chat_response(&msg);
        assert_eq!(r["choices"][0]["message"]["content"], "Hello");
        assert_eq!(r["choices"][0]["finish_reason"], "length");
        assert_eq!(r["usage"]["total_tokens"], 7);
        let e = error(529, &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
        assert_eq!(e.status(), 529);
        assert!(e.message().contains("Overloaded"));
    }
}
