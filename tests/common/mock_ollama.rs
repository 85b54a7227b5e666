//! A mock Ollama speaking its native API as Ollama does: `/api/tags`, `/api/chat` (NDJSON lines
//! when streaming, which is Ollama's default), `/api/embed`, and its error bodies.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const MODELS: &[&str] = &["llama3.1:8b", "qwen2.5-coder:7b"];

pub struct OllamaState {
    pub chats: Mutex<Vec<Value>>,
}

pub struct MockOllama {
    pub port: u16,
    pub state: Arc<OllamaState>,
    _runtime: tokio::runtime::Runtime,
}

/// The words of every answer: they say how many messages arrived.
pub fn answer_words(messages: usize) -> Vec<String> {
    vec!["Hello".into(), " from".into(), " ollama".into(), format!(" ({messages} messages)")]
}

impl MockOllama {
    pub fn start() -> MockOllama {
        let state = Arc::new(OllamaState { chats: Mutex::new(Vec::new()) });
        let app = Router::new().route("/api/tags", get(tags)).route("/api/chat", post(chat)).route("/api/embed", post(embed)).with_state(state.clone());
        let (port, runtime) = super::serve_mock(app);
        MockOllama { port, state, _runtime: runtime }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn chats(&self) -> Vec<Value> {
        self.state.chats.lock().unwrap().clone()
    }
}

async fn tags() -> Json<Value> {
    let models: Vec<Value> = MODELS
        .iter()
        .map(|m| {
            json!({"name": m, "model": m, "modified_at": "2024-07-22T20:33:28.123648Z", "size": 4_661_224_676u64,
                        "digest": "365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1",
                        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                    "parameter_size": "8.0B", "quantization_level": "Q4_0"}})
        })
        .collect();
    Json(json!({"models": models}))
}

async fn chat(State(state): State<Arc<OllamaState>>, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap();
    state.chats.lock().unwrap().push(req.clone());
    let model = req["model"].as_str().unwrap_or("").to_string();
    if !MODELS.contains(&model.as_str()) {
        return (StatusCode::NOT_FOUND, Json(json!({"error": format!("model \"{model}\" not found, try pulling it first")}))).into_response();
    }
    let words = answer_words(req["messages"].as_array().map(Vec::len).unwrap_or(0));
    let created_at = "2024-07-22T20:33:28.123648Z";
    let done = |content: &str| {
        json!({"model": model, "created_at": created_at, "message": {"role": "assistant", "content": content},
               "done_reason": "stop", "done": true, "total_duration": 4_883_583_458u64, "load_duration": 1_334_875,
               "prompt_eval_count": 26, "prompt_eval_duration": 342_546_000, "eval_count": words.len(), "eval_duration": 4_535_599_000u64})
    };
    // Ollama streams unless told not to.
    if req["stream"] == false {
        return Json(done(&words.concat())).into_response();
    }
    let mut lines: Vec<String> = words
        .iter()
        .map(|w| json!({"model": model, "created_at": created_at, "message": {"role": "assistant", "content": w}, "done": false}).to_string() + "\n")
        .collect();
    lines.push(done("").to_string() + "\n");
    let stream = futures_util::stream::unfold(lines.into_iter(), |mut it| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        it.next().map(|l| (Ok::<_, std::io::Error>(Bytes::from(l)), it))
    });
    Response::builder().header("content-type", "application/x-ndjson").body(Body::from_stream(stream)).unwrap()
}

async fn embed(body: Bytes) -> Json<Value> {
    let req: Value = serde_json::from_slice(&body).unwrap();
    Json(json!({"model": req["model"], "embeddings": [[0.5, 0.25]], "total_duration": 14_143_917, "load_duration": 1_019_500, "prompt_eval_count": 3}))
}
