//! A mock of Anthropic's Messages API: the real event names and JSON of its streams.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

pub struct AnthropicState {
    pub calls: Mutex<Vec<(HeaderMap, Value)>>,
}

pub struct MockAnthropic {
    pub port: u16,
    pub state: Arc<AnthropicState>,
    _runtime: tokio::runtime::Runtime,
}

pub const KEY: &str = "sk-ant-mock-SECRET";

impl MockAnthropic {
    pub fn start() -> MockAnthropic {
        let state = Arc::new(AnthropicState { calls: Mutex::new(Vec::new()) });
        let app = Router::new().route("/v1/messages", post(messages)).route("/v1/models", get(models)).with_state(state.clone());
        let (port, runtime) = super::serve_mock(app);
        MockAnthropic { port, state, _runtime: runtime }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn calls(&self) -> Vec<(HeaderMap, Value)> {
        self.state.calls.lock().unwrap().clone()
    }
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}))).into_response()
}

async fn models(headers: HeaderMap) -> Response {
    if headers.get("x-api-key").map(|v| v.as_bytes()) != Some(KEY.as_bytes()) {
        return unauthorized();
    }
    Json(json!({"data": [{"type": "model", "id": "claude-3-5-haiku-latest", "display_name": "Claude Haiku", "created_at": "2024-10-22T00:00:00Z"}],
                "has_more": false, "first_id": "claude-3-5-haiku-latest", "last_id": "claude-3-5-haiku-latest"}))
    .into_response()
}

async fn messages(State(state): State<Arc<AnthropicState>>, headers: HeaderMap, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap();
    state.calls.lock().unwrap().push((headers.clone(), req.clone()));
    if headers.get("x-api-key").map(|v| v.as_bytes()) != Some(KEY.as_bytes()) || headers.get("anthropic-version").is_none() {
        return unauthorized();
    }
    let turns = req["messages"].as_array().map(Vec::len).unwrap_or(0);
    let text = format!("Hello from claude ({turns} turns)");
    let model = req["model"].as_str().unwrap_or("claude").to_string();
    // A request that marks a cache breakpoint reads 100 tokens from the cache, as Anthropic
    // reports it (apart from input_tokens); one that enables thinking gets a signed thinking block.
    let cached = body.windows(13).any(|w| w == b"cache_control");
    let thinking = req["thinking"]["type"] == "enabled";
    let mut usage = json!({"input_tokens": 21, "output_tokens": 9});
    if cached {
        usage["cache_read_input_tokens"] = json!(100);
        usage["cache_creation_input_tokens"] = json!(0);
    }
    if req["stream"] != true {
        let mut content = vec![json!({"type": "text", "text": text})];
        if thinking {
            content.insert(0, json!({"type": "thinking", "thinking": "The user wants a greeting.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}));
        }
        return Json(json!({"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": model,
                           "content": content, "stop_reason": "end_turn", "stop_sequence": null, "usage": usage}))
        .into_response();
    }
    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": model, "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
    )];
    let text_index = if thinking {
        events.push(event("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}})));
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "The user wants a greeting."}}),
        ));
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}),
        ));
        events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
        1
    } else {
        0
    };
    events.push(event("content_block_start", json!({"type": "content_block_start", "index": text_index, "content_block": {"type": "text", "text": ""}})));
    events.push(event("ping", json!({"type": "ping"})));
    for piece in text.split_inclusive(' ') {
        events.push(event("content_block_delta", json!({"type": "content_block_delta", "index": text_index, "delta": {"type": "text_delta", "text": piece}})));
    }
    events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": text_index})));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    let stream = futures_util::stream::iter(events.into_iter().map(|e| Ok::<_, std::io::Error>(Bytes::from(e))));
    Response::builder().header("content-type", "text/event-stream; charset=utf-8").body(Body::from_stream(stream)).unwrap()
}
