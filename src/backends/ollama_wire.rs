//! Ollama's native chat API (`/api/chat`, NDJSON) to and from OpenAI's. Shared by the `ollama`
//! backend type and the Talos agent. Pure: bytes and JSON in, bytes and JSON out.

use crate::error::ApiError;
use serde_json::{json, Map, Value};

/// An OpenAI chat request as Ollama's `/api/chat` body: every message and role, options
/// (temperature, top_p, max_tokens, stop, seed...), tools and JSON mode.
pub fn chat_request(openai: &Map<String, Value>, model: &str, stream: bool) -> Value {
    let messages: Vec<Value> = openai.get("messages").and_then(Value::as_array).map(|m| m.iter().map(message).collect()).unwrap_or_default();
    let mut options = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("seed", "seed"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
        ("max_completion_tokens", "num_predict"),
        ("max_tokens", "num_predict"),
    ] {
        if let Some(v) = openai.get(from).filter(|v| !v.is_null()) {
            options.entry(to.to_string()).or_insert_with(|| v.clone());
        }
    }
    match openai.get("stop") {
        Some(Value::String(s)) => {
            options.insert("stop".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            options.insert("stop".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    let mut body = json!({"model": model, "messages": messages, "stream": stream});
    if !options.is_empty() {
        body["options"] = Value::Object(options);
    }
    if let Some(tools) = openai.get("tools").filter(|t| t.is_array()) {
        body["tools"] = tools.clone();
    }
    match openai.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_object") => body["format"] = json!("json"),
        Some("json_schema") => {
            if let Some(schema) = openai["response_format"].get("json_schema").and_then(|s| s.get("schema")) {
                body["format"] = schema.clone();
            }
        }
        _ => {}
    }
    body
}

/// One OpenAI message as Ollama's: text parts joined, images as bare base64, tool calls with
/// object arguments.
fn message(m: &Value) -> Value {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
    let role = if role == "developer" { "system" } else { role };
    let mut out = json!({"role": role});
    let mut text = String::new();
    let mut images = Vec::new();
    match m.get("content") {
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(p.get("text").and_then(Value::as_str).unwrap_or("")),
                    Some("image_url") => {
                        let url = p.get("image_url").and_then(|u| u.get("url")).and_then(Value::as_str).unwrap_or("");
                        images.push(json!(url.split_once("base64,").map(|(_, b)| b).unwrap_or(url)));
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out["content"] = json!(text);
    if !images.is_empty() {
        out["images"] = Value::Array(images);
    }
    if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
        let calls: Vec<Value> = calls
            .iter()
            .map(|c| {
                let f = &c["function"];
                let args = match &f["arguments"] {
                    Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| json!({})),
                    other => other.clone(),
                };
                json!({"function": {"name": f["name"], "arguments": args}})
            })
            .collect();
        out["tool_calls"] = Value::Array(calls);
    }
    if let Some(name) = m.get("name") {
        out["name"] = name.clone();
    }
    out
}

fn tool_calls(message: &Value, first_index: usize) -> Option<Vec<Value>> {
    let calls = message.get("tool_calls")?.as_array()?;
    Some(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let f = &c["function"];
                let args = match &f["arguments"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                json!({"index": first_index + i, "id": format!("call_{}", first_index + i), "type": "function",
                       "function": {"name": f["name"], "arguments": args}})
            })
            .collect(),
    )
}

fn finish_reason(done_reason: Option<&str>, used_tools: bool) -> &'static str {
    if used_tools {
        return "tool_calls";
    }
    match done_reason {
        Some("length") => "length",
        _ => "stop",
    }
}

fn usage(v: &Value) -> Value {
    let p = v.get("prompt_eval_count").and_then(Value::as_u64).unwrap_or(0);
    let c = v.get("eval_count").and_then(Value::as_u64).unwrap_or(0);
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

/// Ollama's model names from its `/api/tags` answer.
pub fn tag_names(v: &Value) -> Vec<String> {
    v["models"].as_array().map(|m| m.iter().filter_map(|x| x["name"].as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The stream's usage: OpenAI's usage chunk when the client asked for it; otherwise an SSE
/// comment, which clients ignore and Hermes reads for its token and cost accounting.
pub fn usage_event(id: &str, model: &str, created: u64, include_usage: bool, usage: Value, out: &mut Vec<u8>) {
    if include_usage {
        let u = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage});
        out.extend_from_slice(format!("data: {u}\n\n").as_bytes());
    } else {
        out.extend_from_slice(format!("{}{usage}\n\n", crate::backends::sse::USAGE_COMMENT).as_bytes());
    }
}

/// A whole (non-streamed) Ollama answer as an OpenAI chat completion.
pub fn chat_response(ollama: &Value, id: &str, model: &str, created: u64) -> Value {
    let msg = &ollama["message"];
    let calls = tool_calls(msg, 0).map(|calls| {
        calls
            .into_iter()
            .map(|mut c| {
                c.as_object_mut().map(|o| o.remove("index"));
                c
            })
            .collect::<Vec<_>>()
    });
    let mut message = json!({"role": "assistant", "content": msg.get("content").and_then(Value::as_str).unwrap_or(""), "refusal": null});
    let used_tools = calls.as_ref().is_some_and(|c| !c.is_empty());
    if let Some(calls) = calls.filter(|c| !c.is_empty()) {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({"id": id, "object": "chat.completion", "created": created, "model": model,
           "choices": [{"index": 0, "message": message, "logprobs": null,
                        "finish_reason": finish_reason(ollama.get("done_reason").and_then(Value::as_str), used_tools)}],
           "usage": usage(ollama)})
}

/// Ollama's error (`{"error": "..."}`) as an OpenAI error with the matching status.
pub fn error(status: u16, body: &[u8]) -> ApiError {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let text = v.get("error").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
    ApiError::upstream(status, format!("Ollama: {text}"))
}

/// Turns Ollama's NDJSON stream into OpenAI SSE as it arrives. Lines may be split anywhere.
pub struct NdjsonToSse {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    lines: crate::backends::sse::Lines,
    sent_role: bool,
    tools_sent: usize,
    pub done: bool,
}

impl NdjsonToSse {
    pub fn new(id: String, model: String, created: u64, include_usage: bool) -> NdjsonToSse {
        NdjsonToSse { id, model, created, include_usage, lines: Default::default(), sent_role: false, tools_sent: 0, done: false }
    }

    /// SSE bytes for this piece of NDJSON; an error line from Ollama is an error.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut lines = std::mem::take(&mut self.lines);
        let fed = lines.feed(chunk, |line| self.line(line, &mut out));
        self.lines = lines;
        fed.map(|()| out)
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let v = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        out.extend_from_slice(format!("data: {v}\n\n").as_bytes());
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let line = line.trim_ascii();
        if line.is_empty() || self.done {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(line).map_err(|e| format!("unreadable NDJSON line from Ollama: {e}"))?;
        if let Some(err) = v.get("error") {
            return Err(format!("Ollama: {}", err.as_str().unwrap_or("error")));
        }
        if !self.sent_role {
            self.sent_role = true;
            self.chunk(json!({"role": "assistant", "content": ""}), None, out);
        }
        let msg = &v["message"];
        if let Some(text) = msg.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            self.chunk(json!({"content": text}), None, out);
        }
        if let Some(calls) = tool_calls(msg, self.tools_sent).filter(|c| !c.is_empty()) {
            self.tools_sent += calls.len();
            self.chunk(json!({"tool_calls": calls}), None, out);
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            let reason = finish_reason(v.get("done_reason").and_then(Value::as_str), self.tools_sent > 0);
            self.chunk(json!({}), Some(reason), out);
            usage_event(&self.id, &self.model, self.created, self.include_usage, usage(&v), out);
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NDJSON: &str = concat!(
        r#"{"model":"llama3.1:8b","created_at":"2024-07-22T20:33:28.123Z","message":{"role":"assistant","content":"Hel"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.1:8b","created_at":"2024-07-22T20:33:28.223Z","message":{"role":"assistant","content":"lo"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.1:8b","created_at":"2024-07-22T20:33:28.323Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":5191566416,"load_duration":2154458,"prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":2,"eval_duration":4799921000}"#,
        "\n",
    );

    #[test]
    fn requests_carry_every_message_and_option() {
        let openai: Value = json!({"model": "x", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "what is "}, {"type": "text", "text": "this"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}],
            "temperature": 0.2, "max_tokens": 64, "stop": "END", "seed": 3, "tools": [{"type": "function"}],
            "response_format": {"type": "json_object"}});
        let r = chat_request(openai.as_object().unwrap(), "llama3.1:8b", true);
        assert_eq!(r["model"], "llama3.1:8b");
        assert_eq!(r["messages"].as_array().unwrap().len(), 4);
        assert_eq!(r["messages"][1]["content"], "what is this");
        assert_eq!(r["messages"][1]["images"][0], "AAAA");
        assert_eq!(r["messages"][2]["tool_calls"][0]["function"]["arguments"]["a"], 1);
        assert_eq!(r["messages"][3]["role"], "tool");
        assert_eq!(r["options"], json!({"temperature": 0.2, "num_predict": 64, "stop": ["END"], "seed": 3}));
        assert_eq!(r["format"], "json");
        assert_eq!(r["tools"][0]["type"], "function");
    }

    #[test]
    fn ndjson_becomes_openai_sse_wherever_it_is_cut() {
        for cut in 1..NDJSON.len() {
            let mut t = NdjsonToSse::new("chatcmpl-1".into(), "llama3.1:8b".into(), 7, true);
            let (a, b) = NDJSON.as_bytes().split_at(cut);
            let mut out = t.feed(a).unwrap();
            out.extend(t.feed(b).unwrap());
            let text = String::from_utf8(out).unwrap();
            let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
            assert_eq!(events.len(), 6, "role, Hel, lo, finish, usage, done: {text}");
            assert!(events[1].contains(r#""content":"Hel""#));
            assert!(events[3].contains(r#""finish_reason":"stop""#));
            assert!(events[4].contains(r#""prompt_tokens":26"#) && events[4].contains(r#""completion_tokens":2"#));
            assert_eq!(events[5], "data: [DONE]");
            assert!(t.done);
        }
    }

    #[test]
    fn errors_map_to_openai_statuses() {
        let e = error(404, br#"{"error":"model \"nope\" not found, try pulling it first"}"#);
        assert_eq!((e.status(), e.code()), (404, Some("model_not_found")));
        assert!(e.message().contains("try pulling it first"));
        let mut t = NdjsonToSse::new("c".into(), "m".into(), 0, false);
        assert!(t.feed(b"{\"error\":\"out of memory\"}\n").unwrap_err().contains("out of memory"));
        // Without include_usage the usage still travels, as a comment clients ignore.
        let mut t = NdjsonToSse::new("c".into(), "m".into(), 0, false);
        let text = String::from_utf8(t.feed(NDJSON.as_bytes()).unwrap()).unwrap();
        assert!(text.contains(": usage {\"prompt_tokens\":26,\"completion_tokens\":2,\"total_tokens\":28}\n\n"), "{text}");
        assert!(!text.contains("\"choices\":[]"));
    }

    #[test]
    fn whole_answers_with_tool_calls() {
        let v: Value = serde_json::from_str(r#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":9}"#).unwrap();
        let r = chat_response(&v, "chatcmpl-x", "m", 1);
        assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(r["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], r#"{"city":"Paris"}"#);
        assert_eq!(r["usage"]["total_tokens"], 14);
    }
}
