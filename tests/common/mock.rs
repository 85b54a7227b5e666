//! A mock OpenAI-compatible upstream. Its answers copy OpenAI's wire format byte for byte:
//! `data: {chunk}\n\n` events, a usage chunk with empty choices, `data: [DONE]\n\n`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Answer normally; streams pace their events `gap` apart.
    Ok { gap: Duration },
    /// Answer normally after this long, whole answers too (requests that overlap).
    Delay(Duration),
    /// Answer every call with this status and an OpenAI error body.
    Status(u16),
    /// Accept the call and never answer.
    Hang,
    /// 200 and headers, then the connection drops before any body byte.
    CutBeforeFirstByte,
    /// Stream the first events, then drop the connection.
    CutAfterFirstByte,
    /// A model that uses tools: offered tools and no tool result yet, it calls one (see
    /// [`agent_call`]); after a tool result it answers `Done: <the result>`.
    Agent,
}

/// The tool an agent-mode mock calls, and with what: the coding CLIs' shell tools first, so
/// that the CLI runs a command, else the first tool offered.
pub fn agent_call(tools: &[Value]) -> Option<(String, Value)> {
    let names: Vec<&str> = tools.iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    let proof = "echo hermes-was-here > proof.txt";
    for (name, args) in [
        ("shell", json!({"command": ["bash", "-lc", proof]})),
        ("exec_command", json!({"cmd": proof})),
        ("Bash", json!({"command": proof, "description": "Write the proof file"})),
    ] {
        if names.contains(&name) {
            return Some((name.to_string(), args));
        }
    }
    names.first().map(|n| (n.to_string(), json!({"city": "Paris"})))
}

/// What an agent-mode mock answers: a tool call, or text.
fn agent_answer(req: &Value, name: &str) -> (Option<(String, Value)>, String) {
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    // A tool result since the last assistant turn (clients may add text of their own after it).
    let since = messages.iter().rposition(|m| m["role"] == "assistant").map_or(0, |i| i + 1);
    if let Some(result) = messages[since..].iter().find(|m| m["role"] == "tool") {
        let said = result["content"].as_str().map(str::to_string).unwrap_or_else(|| result["content"].to_string());
        return (None, format!("Done: {}", said.trim().chars().take(120).collect::<String>()));
    }
    match agent_call(req["tools"].as_array().map(Vec::as_slice).unwrap_or(&[])) {
        Some(call) => (Some(call), String::new()),
        None => (None, answer_words(name).concat()),
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }
}

pub struct MockState {
    pub name: String,
    pub mode: Mutex<Mode>,
    pub calls: Mutex<Vec<Recorded>>,
}

pub struct MockUpstream {
    pub port: u16,
    pub state: Arc<MockState>,
    _runtime: tokio::runtime::Runtime,
}

/// The words every normal answer of mock `name` streams, one event each.
pub fn answer_words(name: &str) -> Vec<String> {
    vec!["Hello".into(), " from".into(), format!(" {name}")]
}

impl MockUpstream {
    pub fn start(name: &str, mode: Mode) -> MockUpstream {
        let state = Arc::new(MockState { name: name.to_string(), mode: Mutex::new(mode), calls: Mutex::new(Vec::new()) });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", get(models))
            .with_state(state.clone());
        let (port, runtime) = super::serve_mock(app);
        MockUpstream { port, state, _runtime: runtime }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn calls(&self) -> Vec<Recorded> {
        self.state.calls.lock().unwrap().clone()
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }
}

fn record(state: &MockState, path: &str, headers: &HeaderMap, body: &Bytes) -> Mode {
    state.calls.lock().unwrap().push(Recorded { path: path.into(), headers: headers.clone(), body: body.clone() });
    state.mode.lock().unwrap().clone()
}

fn error_response(status: u16, name: &str) -> Response {
    let body = json!({"error": {"message": format!("mock {name} answers {status}"), "type": "server_error", "param": null, "code": null}});
    let mut r = (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
    if status == 429 {
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
    }
    r
}

/// OpenAI's chunk JSON, field order as OpenAI sends it.
fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>, with_usage_field: bool) -> String {
    let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": 1_732_000_000, "model": model,
                       "system_fingerprint": "fp_mock", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    if with_usage_field {
        v["usage"] = Value::Null;
    }
    format!("data: {v}\n\n")
}

/// Every event a normal streamed answer sends, in order.
pub fn stream_events(name: &str, model: &str, include_usage: bool) -> Vec<String> {
    let id = format!("chatcmpl-{name}");
    let mut events = vec![chunk(&id, model, json!({"role": "assistant", "content": "", "refusal": null}), None, include_usage)];
    for w in answer_words(name) {
        events.push(chunk(&id, model, json!({"content": w}), None, include_usage));
    }
    events.push(chunk(&id, model, json!({}), Some("stop"), include_usage));
    if include_usage {
        let v = json!({"id": id, "object": "chat.completion.chunk", "created": 1_732_000_000, "model": model, "system_fingerprint": "fp_mock",
                       "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}});
        events.push(format!("data: {v}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

async fn chat(State(state): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let mode = record(&state, "/v1/chat/completions", &headers, &body);
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = req["model"].as_str().unwrap_or("unknown").to_string();
    let stream = req["stream"].as_bool().unwrap_or(false);
    let include_usage = req["stream_options"]["include_usage"].as_bool().unwrap_or(false);
    let name = state.name.clone();
    let gap = match mode {
        Mode::Status(s) => return error_response(s, &name),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return error_response(500, &name);
        }
        Mode::Ok { gap } => gap,
        Mode::Delay(d) => {
            tokio::time::sleep(d).await;
            Duration::ZERO
        }
        _ => Duration::ZERO,
    };
    if matches!(mode, Mode::Agent) {
        return agent(&req, &name, &model, stream);
    }
    if !stream {
        let v = json!({"id": format!("chatcmpl-{name}"), "object": "chat.completion", "created": 1_732_000_000, "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": answer_words(&name).concat(), "refusal": null},
                                    "logprobs": null, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}, "system_fingerprint": "fp_mock"});
        return ([("content-type", "application/json"), ("x-mock-upstream", name.as_str())], v.to_string()).into_response();
    }
    let events = stream_events(&name, &model, include_usage);
    let keep = match mode {
        Mode::CutBeforeFirstByte => 0,
        Mode::CutAfterFirstByte => 2,
        _ => events.len(),
    };
    let cut = keep < events.len();
    let body = futures_util::stream::unfold((events.into_iter().take(keep), cut, true), move |(mut it, cut, first)| async move {
        if !first {
            tokio::time::sleep(gap).await;
        }
        match it.next() {
            Some(e) => Some((Ok::<Bytes, std::io::Error>(Bytes::from(e)), (it, cut, false))),
            None if cut => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((Err(std::io::Error::other("mock cuts the stream")), (it, false, false)))
            }
            None => None,
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("x-mock-upstream", name.as_str())
        .body(Body::from_stream(body))
        .unwrap()
}

/// Agent mode's answer, whole or streamed as OpenAI streams tool calls (id and name first, then
/// the arguments in pieces).
fn agent(req: &Value, name: &str, model: &str, stream: bool) -> Response {
    let (call, text) = agent_answer(req, name);
    let id = format!("chatcmpl-{name}");
    let usage = json!({"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25, "prompt_tokens_details": {"cached_tokens": 8}});
    let finish = if call.is_some() { "tool_calls" } else { "stop" };
    if !stream {
        let mut message = json!({"role": "assistant", "content": if call.is_some() { Value::Null } else { json!(text) }, "refusal": null});
        if let Some((tool, args)) = &call {
            message["tool_calls"] = json!([{"id": "call_mock1", "type": "function", "function": {"name": tool, "arguments": args.to_string()}}]);
        }
        let v = json!({"id": id, "object": "chat.completion", "created": 1_732_000_000, "model": model,
                       "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}], "usage": usage});
        return ([("content-type", "application/json")], v.to_string()).into_response();
    }
    let mut events = vec![chunk(&id, model, json!({"role": "assistant", "content": null, "refusal": null}), None, false)];
    match &call {
        Some((tool, args)) => {
            let first = json!({"tool_calls": [{"index": 0, "id": "call_mock1", "type": "function", "function": {"name": tool, "arguments": ""}}]});
            events.push(chunk(&id, model, first, None, false));
            let args = args.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            for piece in [a, b] {
                events.push(chunk(&id, model, json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), None, false));
            }
        }
        None => {
            for word in text.split_inclusive(' ') {
                events.push(chunk(&id, model, json!({"content": word}), None, false));
            }
        }
    }
    events.push(chunk(&id, model, json!({}), Some(finish), false));
    if req["stream_options"]["include_usage"] == true {
        let v = json!({"id": id, "object": "chat.completion.chunk", "created": 1_732_000_000, "model": model, "choices": [], "usage": usage});
        events.push(format!("data: {v}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(Body::from_stream(futures_util::stream::iter(events.into_iter().map(|e| Ok::<Bytes, std::io::Error>(Bytes::from(e))))))
        .unwrap()
}

async fn embeddings(State(state): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let mode = record(&state, "/v1/embeddings", &headers, &body);
    if let Mode::Status(s) = mode {
        return error_response(s, &state.name);
    }
    let v = json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
                   "model": "text-embedding-3-small", "usage": {"prompt_tokens": 4, "total_tokens": 4}});
    Json(v).into_response()
}

async fn models(State(state): State<Arc<MockState>>) -> Response {
    Json(json!({"object": "list", "data": [{"id": format!("{}-model", state.name), "object": "model", "created": 0, "owned_by": state.name}]})).into_response()
}
