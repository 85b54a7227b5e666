//! OpenAI's Responses API (`POST /v1/responses`, what Codex and the Agents SDK speak): decoded
//! into the internal chat request (with the stored conversation of `previous_response_id` in
//! front), and the chat answer encoded back as a response object or its named stream events.

use super::answer::{ChunkReader, Delta, Whole};
use super::EventWriter;
use crate::backends::sse::Usage;
use crate::error::ApiError;
use serde_json::{json, Map, Value};

fn bad(message: impl Into<String>, field: &str) -> ApiError {
    ApiError::bad_request(message, Some(field))
}

/// What the encoder echoes back and what a stored response needs to be continued.
#[derive(Debug, Clone)]
pub struct Context {
    pub id: String,
    pub created_at: u64,
    pub store: bool,
    /// The request's parameters as the response object repeats them.
    pub echo: Map<String, Value>,
    /// The conversation so far in chat messages, the stored one first, without instructions.
    pub conversation: Vec<Value>,
}

/// The request fields a response object repeats, with their defaults.
type Fallback = fn() -> Value;
const ECHOED: &[(&str, Fallback)] = &[
    ("instructions", || Value::Null),
    ("max_output_tokens", || Value::Null),
    ("metadata", || json!({})),
    ("parallel_tool_calls", || json!(true)),
    ("previous_response_id", || Value::Null),
    ("reasoning", || json!({"effort": null, "summary": null})),
    ("temperature", || json!(1.0)),
    ("text", || json!({"format": {"type": "text"}})),
    ("tool_choice", || json!("auto")),
    ("tools", || json!([])),
    ("top_p", || json!(1.0)),
    ("truncation", || json!("disabled")),
];

/// A Responses request as a chat completions body. `earlier` is the stored conversation that
/// `previous_response_id` names (the caller looked it up).
pub fn decode(body: &Map<String, Value>, id: String, earlier: Vec<Value>) -> Result<(Map<String, Value>, Context), ApiError> {
    let mut chat = Map::new();
    match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => chat.insert("model".into(), json!(m)),
        _ => return Err(bad("Missing required parameter: 'model'.", "model")),
    };
    let mut conversation = earlier;
    match body.get("input") {
        Some(Value::String(s)) => conversation.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(item, &format!("input[{i}]"), &mut conversation)?;
            }
        }
        None | Some(Value::Null) => return Err(bad("Missing required parameter: 'input'.", "input")),
        Some(_) => return Err(bad("Invalid type for 'input': expected a string or an array of input items.", "input")),
    }
    if conversation.is_empty() {
        return Err(bad("'input' must contain at least one item.", "input"));
    }
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => return Err(bad("Invalid type for 'instructions': expected a string.", "instructions")),
    }
    messages.extend(conversation.iter().cloned());
    chat.insert("messages".into(), Value::Array(messages));

    if let Some(tools) = body.get("tools").filter(|t| !t.is_null()) {
        let tools = tools.as_array().ok_or_else(|| bad("Invalid type for 'tools': expected an array.", "tools"))?;
        let mut out = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            match t["type"].as_str() {
                Some("function") => out.push(function_tool(t, &format!("tools[{i}]"))?),
                // A namespace groups function tools (Codex sends its sub-agent tools so): offered one by one.
                Some("namespace") => {
                    for (j, inner) in t["tools"].as_array().into_iter().flatten().enumerate().filter(|(_, x)| x["type"] == "function") {
                        out.push(function_tool(inner, &format!("tools[{i}].tools[{j}]"))?);
                    }
                }
                // Hosted tools (web search, file search, code interpreter, ...) run at OpenAI only: a
                // chat backend cannot, so it is offered the client's function tools alone.
                Some(_) => {}
                None => return Err(bad("Missing required parameter: 'type'.", &format!("tools[{i}].type"))),
            }
        }
        if !out.is_empty() {
            chat.insert("tools".into(), Value::Array(out));
        }
    }
    match body.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if matches!(s.as_str(), "auto" | "none" | "required") => {
            chat.insert("tool_choice".into(), json!(s));
        }
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| bad("Missing required parameter: 'name'.", "tool_choice.name"))?;
            chat.insert("tool_choice".into(), json!({"type": "function", "function": {"name": name}}));
        }
        Some(_) => return Err(bad("Invalid value for 'tool_choice': expected auto, none, required or a function.", "tool_choice")),
    }
    match body.get("text").and_then(|t| t.get("format")) {
        None | Some(Value::Null) => {}
        Some(f) => match f["type"].as_str() {
            Some("text") => {}
            Some("json_object") => {
                chat.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some("json_schema") => {
                let name = f["name"].as_str().ok_or_else(|| bad("Missing required parameter: 'text.format.name'.", "text.format.name"))?;
                let mut schema = json!({"name": name, "schema": f.get("schema").cloned().unwrap_or_else(|| json!({}))});
                for k in ["strict", "description"] {
                    if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
                        schema[k] = v.clone();
                    }
                }
                chat.insert("response_format".into(), json!({"type": "json_schema", "json_schema": schema}));
            }
            _ => return Err(bad("Invalid value for 'text.format.type': expected text, json_object or json_schema.", "text.format.type")),
        },
    }
    if let Some(effort) = body.get("reasoning").and_then(|r| r.get("effort")).and_then(Value::as_str) {
        chat.insert("reasoning_effort".into(), json!(effort));
    }
    match body.get("max_output_tokens") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {
            chat.insert("max_tokens".into(), json!(n));
        }
        Some(_) => return Err(bad("Invalid 'max_output_tokens': expected a positive integer.", "max_output_tokens")),
    }
    super::copy_sampling(body, &mut chat, |key| bad(format!("Invalid type for '{key}': expected a number."), key))?;
    for key in ["parallel_tool_calls", "user"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            chat.insert(key.into(), v.clone());
        }
    }
    let store = match body.get("store") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("Invalid type for 'store': expected a boolean.", "store")),
    };
    super::copy_stream(body, &mut chat, || bad("Invalid type for 'stream': expected a boolean.", "stream"))?;
    let mut echo = Map::new();
    for (key, default) in ECHOED {
        echo.insert(key.to_string(), body.get(*key).filter(|v| !v.is_null()).cloned().unwrap_or_else(default));
    }
    // A function tool as the response object lists it: `strict` and `parameters` always there.
    if let Some(Value::Array(tools)) = echo.get_mut("tools") {
        for t in tools.iter_mut().filter(|t| t["type"] == "function") {
            if let Some(t) = t.as_object_mut() {
                for key in ["strict", "parameters"] {
                    t.entry(key).or_insert(Value::Null);
                }
            }
        }
    }
    // `user` is a string when given and absent otherwise (the schema has no null for it).
    if let Some(user) = body.get("user").filter(|u| u.is_string()) {
        echo.insert("user".into(), user.clone());
    }
    let context = Context { id, created_at: crate::backends::now_secs(), store, echo, conversation };
    Ok((chat, context))
}

/// A Responses function tool as a chat tool.
fn function_tool(t: &Value, at: &str) -> Result<Value, ApiError> {
    let name = t["name"].as_str().ok_or_else(|| bad("Missing required parameter: 'name'.", &format!("{at}.name")))?;
    let parameters = t.get("parameters").filter(|p| !p.is_null()).cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    let mut f = json!({"name": name, "parameters": parameters});
    for k in ["description", "strict"] {
        if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
            f[k] = v.clone();
        }
    }
    Ok(json!({"type": "function", "function": f}))
}

/// One input item as chat messages (function calls join the assistant message before them).
fn input_item(item: &Value, at: &str, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let kind = item["type"].as_str().unwrap_or(if item.get("role").is_some() { "message" } else { "" });
    match kind {
        "message" => {
            let role = match item["role"].as_str() {
                Some(r @ ("user" | "assistant" | "system" | "developer")) => r,
                _ => return Err(bad("Invalid value for 'role': expected user, assistant, system or developer.", &format!("{at}.role"))),
            };
            let content = match &item["content"] {
                Value::String(s) => json!(s),
                Value::Array(parts) => {
                    let mut out = Vec::new();
                    for (j, p) in parts.iter().enumerate() {
                        out.push(content_part(p, &format!("{at}.content[{j}]"))?);
                    }
                    match out.as_slice() {
                        [only] if only["type"] == "text" => only["text"].clone(),
                        _ if role != "user" => json!(out.iter().filter_map(|p| p["text"].as_str()).collect::<String>()),
                        _ => Value::Array(out),
                    }
                }
                _ => return Err(bad("Missing required parameter: 'content'.", &format!("{at}.content"))),
            };
            out.push(json!({"role": if role == "developer" { "system" } else { role }, "content": content}));
        }
        "function_call" => {
            let call_id = item["call_id"].as_str().ok_or_else(|| bad("Missing required parameter: 'call_id'.", &format!("{at}.call_id")))?;
            let name = item["name"].as_str().ok_or_else(|| bad("Missing required parameter: 'name'.", &format!("{at}.name")))?;
            let arguments = item["arguments"].as_str().unwrap_or("{}");
            let call = json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}});
            match out.last_mut().filter(|m| m["role"] == "assistant") {
                Some(m) if m["tool_calls"].is_array() || m["content"].is_string() => {
                    if let Some(calls) = m["tool_calls"].as_array_mut() {
                        calls.push(call);
                    } else {
                        m["tool_calls"] = json!([call]);
                    }
                }
                _ => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let call_id = item["call_id"].as_str().ok_or_else(|| bad("Missing required parameter: 'call_id'.", &format!("{at}.call_id")))?;
            let output = match &item["output"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
                _ => return Err(bad("Missing required parameter: 'output'.", &format!("{at}.output"))),
            };
            out.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        // Earlier reasoning belongs to the model that made it; a chat backend takes none.
        "reasoning" => {}
        "" => return Err(bad("Missing required parameter: 'type'.", &format!("{at}.type"))),
        other => return Err(bad(format!("Input items of type '{other}' are not supported by Hermes."), &format!("{at}.type"))),
    }
    Ok(())
}

fn content_part(p: &Value, at: &str) -> Result<Value, ApiError> {
    match p["type"].as_str() {
        Some("input_text" | "output_text" | "text") => {
            Ok(json!({"type": "text", "text": p["text"].as_str().ok_or_else(|| bad("Missing required parameter: 'text'.", &format!("{at}.text")))?}))
        }
        Some("refusal") => Ok(json!({"type": "text", "text": p["refusal"].as_str().unwrap_or("")})),
        Some("input_image") => {
            let url = p["image_url"]
                .as_str()
                .ok_or_else(|| bad("Hermes takes images as 'image_url' (a URL or data URL), not file ids.", &format!("{at}.image_url")))?;
            let mut image = json!({"url": url});
            if let Some(d) = p["detail"].as_str() {
                image["detail"] = json!(d);
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        Some(other) => Err(bad(format!("Content parts of type '{other}' are not supported by Hermes."), &format!("{at}.type"))),
        None => Err(bad("Missing required parameter: 'type'.", &format!("{at}.type"))),
    }
}

fn usage(u: &Usage) -> Value {
    json!({"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": u.cache_write_tokens},
           "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens}, "total_tokens": u.prompt_tokens + u.completion_tokens})
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "in_progress" { json!([]) } else { json!([text_part(text)]) };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments})
}

/// A response object: OpenAI's fields in its order, then the request's fields it repeats.
#[derive(serde::Serialize)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    error: Option<Value>,
    incomplete_details: Option<Value>,
    model: &'a str,
    output: &'a [Value],
    store: bool,
    /// Absent until known: the published schema has no null for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
    #[serde(flatten)]
    echo: &'a Map<String, Value>,
}

impl Context {
    /// The response object: `status` in_progress while streaming, then completed or incomplete.
    fn object<'a>(&'a self, model: &'a str, output: &'a [Value], finish: Option<&str>, usage_of: Option<&Usage>) -> ResponseObject<'a> {
        let status = match finish {
            None => "in_progress",
            Some("length") => "incomplete",
            Some(_) => "completed",
        };
        ResponseObject {
            id: &self.id,
            object: "response",
            created_at: self.created_at,
            status,
            background: false,
            error: None,
            incomplete_details: (status == "incomplete").then(|| json!({"reason": "max_output_tokens"})),
            model,
            output,
            store: self.store,
            usage: usage_of.map(usage),
            echo: &self.echo,
        }
    }

    /// The response object as JSON, to be stored or changed.
    fn response(&self, model: &str, output: &[Value], finish: Option<&str>, usage_of: Option<&Usage>) -> Value {
        serde_json::to_value(self.object(model, output, finish, usage_of)).unwrap_or_default()
    }

    fn item_id(&self, prefix: &str, n: usize) -> String {
        let base = self.id.trim_start_matches("resp_");
        if n == 0 {
            format!("{prefix}_{base}")
        } else {
            format!("{prefix}_{base}_{n}")
        }
    }

    /// A whole chat completion as a response object.
    pub fn encode(&self, chat: &Value, model: &str) -> Value {
        let w = Whole::read(chat);
        let mut output = Vec::new();
        if !w.reasoning.is_empty() {
            output.push(json!({"id": self.item_id("rs", 0), "type": "reasoning", "summary": [{"type": "summary_text", "text": w.reasoning}]}));
        }
        if !w.text.is_empty() || w.tool_calls.is_empty() {
            output.push(message_item(&self.item_id("msg", 0), &w.text, "completed"));
        }
        for (i, (call_id, name, args)) in w.tool_calls.iter().enumerate() {
            output.push(call_item(&self.item_id("fc", i), call_id, name, args, "completed"));
        }
        self.response(model, &output, Some(&w.finish), Some(&w.usage))
    }

    /// The conversation to store with a finished response: everything before, then its output.
    pub fn continued(&self, response: &Value) -> Vec<Value> {
        let mut conversation = self.conversation.clone();
        let mut text = String::new();
        let mut calls = Vec::new();
        for item in response["output"].as_array().into_iter().flatten() {
            match item["type"].as_str() {
                Some("message") => text.extend(item["content"].as_array().into_iter().flatten().filter_map(|p| p["text"].as_str())),
                Some("function_call") => {
                    calls.push(json!({"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}))
                }
                _ => {}
            }
        }
        let mut m = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
        if !calls.is_empty() {
            m["tool_calls"] = Value::Array(calls);
        }
        conversation.push(m);
        conversation
    }
}

/// An output item being streamed.
enum Open {
    Text { id: String, text: String },
    Call { id: String, index: usize, call_id: String, name: String, arguments: String },
}

/// Chat chunks in, the Responses stream out: `response.created`, `response.in_progress`, then
/// per output item `output_item.added`, its parts and deltas and their `.done` events, and
/// `response.completed` with usage. Every event carries its `sequence_number`.
pub struct StreamEncoder {
    context: std::sync::Arc<Context>,
    model: String,
    reader: ChunkReader,
    sequence: u64,
    started: bool,
    open: Option<Open>,
    output: Vec<Value>,
    calls: usize,
    finish: Option<String>,
    usage: Option<Usage>,
    /// The final response, once `response.completed` went out.
    pub completed: Option<Value>,
}

impl StreamEncoder {
    pub fn new(context: std::sync::Arc<Context>, model: String) -> StreamEncoder {
        StreamEncoder {
            context,
            model,
            reader: ChunkReader::default(),
            sequence: 0,
            started: false,
            open: None,
            output: Vec::new(),
            calls: 0,
            finish: None,
            usage: None,
            completed: None,
        }
    }

    pub fn feed(&mut self, chat: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for delta in self.reader.feed(chat) {
            self.start(&mut out);
            match delta {
                Delta::Text(t) => {
                    if !matches!(self.open, Some(Open::Text { .. })) {
                        self.close(&mut out);
                        let id = self.context.item_id("msg", self.output.len());
                        self.event(
                            "response.output_item.added",
                            json!({"output_index": self.output.len(), "item": message_item(&id, "", "in_progress")}),
                            &mut out,
                        );
                        self.event(
                            "response.content_part.added",
                            json!({"item_id": id, "output_index": self.output.len(), "content_index": 0, "part": text_part("")}),
                            &mut out,
                        );
                        self.open = Some(Open::Text { id, text: String::new() });
                    }
                    let index = self.output.len();
                    let sequence = self.next_sequence();
                    if let Some(Open::Text { id, text }) = &mut self.open {
                        text.push_str(&t);
                        // One per chunk of text: written field by field.
                        EventWriter::new("response.output_text.delta", &mut out)
                            .field("item_id", id)
                            .field("output_index", &index)
                            .field("content_index", &0)
                            .field("delta", &t)
                            .raw("logprobs", b"[]")
                            .field("sequence_number", &sequence)
                            .end();
                    }
                }
                Delta::ToolStart { index, id: call_id, name } => {
                    self.close(&mut out);
                    let id = self.context.item_id("fc", self.calls);
                    self.calls += 1;
                    self.event(
                        "response.output_item.added",
                        json!({"output_index": self.output.len(), "item": call_item(&id, &call_id, &name, "", "in_progress")}),
                        &mut out,
                    );
                    self.open = Some(Open::Call { id, index, call_id, name, arguments: String::new() });
                }
                Delta::ToolArguments { index, fragment } => {
                    let at = self.output.len();
                    if let Some(Open::Call { id, index: open, arguments, .. }) = &mut self.open {
                        if *open == index {
                            arguments.push_str(&fragment);
                            let data = json!({"item_id": id, "output_index": at, "delta": fragment});
                            self.event("response.function_call_arguments.delta", data, &mut out);
                        }
                    }
                }
                Delta::Reasoning(_) => {}
                Delta::Finish(f) => self.finish = Some(f),
                Delta::Usage(u) => self.usage = Some(u),
                Delta::Done => {
                    self.close(&mut out);
                    let finish = self.finish.clone().unwrap_or_else(|| "stop".into());
                    let response = self.context.response(&self.model, &self.output, Some(&finish), Some(&self.usage.unwrap_or_default()));
                    let name = if response["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
                    self.event(name, json!({"response": response}), &mut out);
                    self.completed = Some(response);
                }
            }
        }
        out
    }

    /// The stream broke after its first byte: an `error` event, then `response.failed`.
    pub fn broke(&mut self, err: &ApiError) -> Vec<u8> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.event("error", json!({"code": err.code(), "message": err.message(), "param": null}), &mut out);
        let mut response = self.context.response(&self.model, &self.output, None, None);
        response["status"] = json!("failed");
        response["error"] = json!({"code": "server_error", "message": err.message()});
        self.event("response.failed", json!({"response": response}), &mut out);
        out
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            // Written once, sent twice: the stream's first bytes are on the time to first token.
            let mut response = Vec::with_capacity(1024);
            super::json_into(&mut response, &self.context.object(&self.model, &[], None, None));
            for name in ["response.created", "response.in_progress"] {
                let sequence = self.next_sequence();
                EventWriter::new(name, out).raw("response", &response).field("sequence_number", &sequence).end();
            }
        }
    }

    /// Ends the open item with its `.done` events.
    fn close(&mut self, out: &mut Vec<u8>) {
        let at = self.output.len();
        match self.open.take() {
            None => {}
            Some(Open::Text { id, text }) => {
                self.event("response.output_text.done", json!({"item_id": id, "output_index": at, "content_index": 0, "text": text, "logprobs": []}), out);
                self.event("response.content_part.done", json!({"item_id": id, "output_index": at, "content_index": 0, "part": text_part(&text)}), out);
                let item = message_item(&id, &text, "completed");
                self.event("response.output_item.done", json!({"output_index": at, "item": item}), out);
                self.output.push(item);
            }
            Some(Open::Call { id, call_id, name, arguments, .. }) => {
                self.event("response.function_call_arguments.done", json!({"item_id": id, "output_index": at, "name": name, "arguments": arguments}), out);
                let item = call_item(&id, &call_id, &name, &arguments, "completed");
                self.event("response.output_item.done", json!({"output_index": at, "item": item}), out);
                self.output.push(item);
            }
        }
    }

    fn event(&mut self, name: &str, data: Value, out: &mut Vec<u8>) {
        let sequence = self.next_sequence();
        EventWriter::new(name, out).fields_of(&data).field("sequence_number", &sequence).end();
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_json(v: Value) -> Result<(Map<String, Value>, Context), ApiError> {
        decode(v.as_object().unwrap(), "resp_1".into(), Vec::new())
    }

    #[test]
    fn items_tools_and_formats_decode_to_chat() {
        let (chat, ctx) = decode_json(json!({"model": "auto", "instructions": "Be terse.", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "-3C"}],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": true}],
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low"}, "max_output_tokens": 99, "store": false, "stream": true}))
        .unwrap();
        let m = chat["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be terse."}));
        assert_eq!(m[1], json!({"role": "user", "content": "Weather?"}));
        assert_eq!(m[2]["tool_calls"][0]["id"], "call_1");
        assert_eq!(m[3], json!({"role": "tool", "tool_call_id": "call_1", "content": "-3C"}));
        assert_eq!(chat["tools"][0]["function"]["strict"], true);
        assert_eq!(chat["response_format"]["json_schema"]["name"], "w");
        assert_eq!((chat["reasoning_effort"].clone(), chat["max_tokens"].clone()), (json!("low"), json!(99)));
        assert!(!ctx.store);
        assert_eq!(ctx.conversation.len(), 3, "instructions are not carried to the next turn");
        let e = decode_json(json!({"model": "m", "input": [{"type": "web_search_call"}]})).unwrap_err();
        assert_eq!(e.param(), Some("input[0].type"));
        assert_eq!(decode_json(json!({"model": "m"})).unwrap_err().param(), Some("input"));
    }

    #[test]
    fn a_stream_has_the_documented_events_in_order() {
        let (_, ctx) = decode_json(json!({"model": "m", "input": "hi", "stream": true})).unwrap();
        let mut enc = StreamEncoder::new(std::sync::Arc::new(ctx), "m".into());
        let chat = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        let text = String::from_utf8(enc.feed(chat.as_bytes())).unwrap();
        let events: Vec<Value> =
            text.split("\n\n").filter(|e| !e.is_empty()).map(|e| serde_json::from_str(e.split_once("data: ").unwrap().1).unwrap()).collect();
        let names: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert!(events.iter().enumerate().all(|(i, e)| e["sequence_number"] == i as u64));
        let done = &events[9]["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["usage"]["total_tokens"], 7);
        assert_eq!(enc.completed.as_ref().unwrap()["status"], "completed");
    }

    #[test]
    fn a_finished_response_continues_the_conversation() {
        let (_, ctx) = decode_json(json!({"model": "m", "input": "Call f"})).unwrap();
        let chat = json!({"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_7", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}});
        let r = ctx.encode(&chat, "m");
        assert_eq!(r["output"].as_array().unwrap().len(), 1, "no empty message beside a tool call: {r}");
        assert_eq!(r["output"][0]["call_id"], "call_7");
        let next = ctx.continued(&r);
        assert_eq!(next[1]["tool_calls"][0]["id"], "call_7");
    }
}
