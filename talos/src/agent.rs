//! Talos: the agent beside Ollama on a home machine. It does nothing clever: it carries OpenAI
//! chat to Ollama's native API and back, reports health and models, and runs the spec's
//! `/execute` call. All routing intelligence stays in Hermes.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use hermes::backends::ollama_wire::{self, NdjsonToSse};
use hermes::doors::openai::{parse_request, Endpoint};
use hermes::error::{ApiError, Kind};
use hermes::state::config::{ConfigError, EnvSource, Secret};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct TalosConfig {
    pub ollama: String,
    pub bind: String,
    pub port: u16,
    pub default_model: String,
    pub code_model: String,
    pub token: Option<Secret>,
}

impl TalosConfig {
    pub fn from_env(env: &EnvSource) -> Result<TalosConfig, ConfigError> {
        let ollama = env.get("OLLAMA_HOST").unwrap_or("http://localhost:11434");
        let ollama = if ollama.contains("://") { ollama.to_string() } else { format!("http://{ollama}") };
        Ok(TalosConfig {
            ollama: ollama.trim_end_matches('/').to_string(),
            bind: env.get("TALOS_BIND").unwrap_or("0.0.0.0").to_string(),
            port: env.number_or("TALOS_PORT", 8001u16)?,
            default_model: env.get("DEFAULT_MODEL").unwrap_or("llama3.1:8b").to_string(),
            code_model: env.get("CODE_MODEL").unwrap_or("qwen2.5-coder:7b").to_string(),
            token: env.get("TALOS_TOKEN").map(Secret::new),
        })
    }
}

struct Talos {
    config: TalosConfig,
    client: reqwest::Client,
}

/// Talos's client for Ollama beside it: one pool, Nagle off, no redirects.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .connect_timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// reqwest's message without the URL: the innermost cause.
fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_body() || e.is_decode() { "the body was cut".to_string() } else { "the request failed".to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

pub fn app(config: TalosConfig) -> Router {
    let state = Arc::new(Talos { config, client: http_client() });
    Router::new()
        .route("/health", get(health))
        .route("/models", get(models))
        .route("/v1/models", get(openai_models))
        .route("/execute", post(execute))
        .route("/v1/chat/completions", post(chat))
        .fallback(|req: Request| async move { error_response(&ApiError::unknown_path(req.method().as_str(), req.uri().path())) })
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        // Long conversations with images exceed axum's 2 MB default; Hermes already caps bodies.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .layer(middleware::from_fn(access_log))
        .with_state(state)
}

fn error_response(e: &ApiError) -> Response {
    (StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(e.to_value())).into_response()
}

/// One JSON line per request on stdout; never headers or bodies.
async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let resp = next.run(req).await;
    let line = json!({"ts": now_secs_f64(), "method": method, "path": path, "status": resp.status().as_u16(),
                      "ms": (started.elapsed().as_secs_f64() * 1e4).round() / 10.0});
    println!("{line}");
    resp
}

/// TALOS_TOKEN, when set, guards everything but `/health`.
async fn auth(State(t): State<Arc<Talos>>, req: Request, next: Next) -> Response {
    if let Some(token) = &t.config.token {
        let presented = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if req.uri().path() != "/health" && !presented.is_some_and(|p| token.matches(p)) {
            return error_response(&ApiError::new(Kind::Unauthorized, "Missing or wrong TALOS_TOKEN bearer token."));
        }
    }
    next.run(req).await
}

fn now_secs_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Talos {
    async fn tags(&self) -> Result<Vec<String>, String> {
        let resp = self
            .client
            .get(format!("{}/api/tags", self.config.ollama))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("Ollama is not reachable at {}: {}", self.config.ollama, describe(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("Ollama answered {} to /api/tags", resp.status().as_u16()));
        }
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        Ok(ollama_wire::tag_names(&v))
    }

    /// POST to Ollama's `/api/chat`; an unreachable Ollama is a 503 in OpenAI's shape.
    async fn ollama_chat(&self, body: &Value) -> Result<reqwest::Response, ApiError> {
        self.client
            .post(format!("{}/api/chat", self.config.ollama))
            .json(body)
            .send()
            .await
            .map_err(|e| ApiError::new(Kind::NoBackend, format!("Ollama is not reachable at {}: {}", self.config.ollama, describe(&e))))
    }

    fn model_or_default(&self, requested: Option<&str>) -> String {
        match requested {
            None | Some("" | "auto" | "default") => self.config.default_model.clone(),
            Some("code") => self.config.code_model.clone(),
            Some(m) => m.to_string(),
        }
    }
}

async fn health(State(t): State<Arc<Talos>>) -> Response {
    let timestamp = rfc3339_now();
    match t.tags().await {
        Ok(models) => Json(json!({"status": "healthy", "models": models, "timestamp": timestamp, "ollama": t.config.ollama})).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unhealthy", "models": [], "timestamp": timestamp, "error": e}))).into_response(),
    }
}

/// The spec's fallback: when Ollama cannot say, the configured models.
async fn models(State(t): State<Arc<Talos>>) -> Response {
    let models = t.tags().await.unwrap_or_else(|_| vec![t.config.default_model.clone(), t.config.code_model.clone()]);
    Json(json!({"models": models})).into_response()
}

async fn openai_models(State(t): State<Arc<Talos>>) -> Response {
    match t.tags().await {
        Ok(models) => Json(json!({"object": "list", "data": models.iter().map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "ollama"})).collect::<Vec<_>>()})).into_response(),
        Err(e) => {
            error_response(&ApiError::new(Kind::NoBackend, e))
        }
    }
}

/// The spec's call: `{"prompt", "model_config": {"model", ...}}` → the answer and its timing.
async fn execute(State(t): State<Arc<Talos>>, body: Bytes) -> Response {
    let started = Instant::now();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let missing: Vec<&str> = ["prompt", "model_config"].into_iter().filter(|f| v.get(*f).is_none_or(Value::is_null)).collect();
    if !missing.is_empty() || !v["prompt"].is_string() || !v["model_config"].is_object() {
        let what = if missing.is_empty() {
            "prompt must be a string and model_config an object".to_string()
        } else {
            format!("Missing required fields: {}", missing.join(", "))
        };
        return (StatusCode::BAD_REQUEST, Json(json!({"status": "error", "error": what}))).into_response();
    }
    let model = t.model_or_default(v["model_config"]["model"].as_str());
    let mut openai: Map<String, Value> = v["model_config"].as_object().cloned().unwrap_or_default();
    openai.insert("messages".into(), json!([{"role": "user", "content": v["prompt"]}]));
    let request = ollama_wire::chat_request(&openai, &model, false);
    let outcome = async {
        let resp = t.ollama_chat(&request).await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| ApiError::internal(e.to_string()))?;
        if status != 200 {
            return Err(ollama_wire::error(status, &bytes));
        }
        serde_json::from_slice::<Value>(&bytes).map_err(|e| ApiError::internal(e.to_string()))
    }
    .await;
    match outcome {
        Ok(answer) => Json(json!({"status": "success", "result": answer["message"]["content"], "model_used": model,
                                  "execution_time": started.elapsed().as_secs_f64(), "cost_cents": 0}))
        .into_response(),
        Err(e) => (StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY), Json(json!({"status": "error", "error": e.message()}))).into_response(),
    }
}

/// OpenAI chat, carried whole to Ollama's `/api/chat`; NDJSON streams come back as SSE as they arrive.
async fn chat(State(t): State<Arc<Talos>>, _headers: HeaderMap, body: Bytes) -> Response {
    let request = match parse_request(Endpoint::ChatCompletions, &body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let model = t.model_or_default(Some(&request.model));
    let resp = match t.ollama_chat(&ollama_wire::chat_request(&request.body, &model, request.stream)).await {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let status = resp.status().as_u16();
    let id = format!("chatcmpl-talos{:016x}", fastrand::u64(..));
    let created = now_secs_f64() as u64;
    if status != 200 {
        let bytes = resp.bytes().await.unwrap_or_default();
        return error_response(&ollama_wire::error(status, &bytes));
    }
    if !request.stream {
        return match resp.json::<Value>().await {
            Ok(v) => Json(ollama_wire::chat_response(&v, &id, &model, created)).into_response(),
            Err(e) => error_response(&ApiError::internal(format!("unreadable answer from Ollama: {e}"))),
        };
    }
    let mut translate = NdjsonToSse::new(id, model, created, request.include_usage());
    // Read up to Ollama's first line before answering: an error there is still a plain error
    // status the caller can fail over on, not an event inside a 200 stream.
    let mut upstream = resp.bytes_stream();
    let mut first = Vec::new();
    while first.is_empty() {
        let broken = |why: String| error_response(&ApiError::new(Kind::BackendsFailed, why));
        match upstream.next().await {
            Some(Ok(bytes)) => match translate.feed(&bytes) {
                Ok(sse) => first.extend(sse),
                Err(why) => return broken(why),
            },
            Some(Err(e)) => return broken(format!("Ollama broke off: {}", describe(&e))),
            None => return broken("Ollama closed the stream without answering".into()),
        }
    }
    let rest = upstream.map(move |chunk| {
        let out = match chunk {
            Ok(bytes) => translate.feed(&bytes),
            Err(e) => Err(describe(&e)),
        };
        // A break after the first byte ends in an SSE error event, as Hermes does.
        Ok::<Bytes, std::convert::Infallible>(match out {
            Ok(sse) => Bytes::from(sse),
            Err(why) => Bytes::from(format!("event: error\ndata: {}\n\n", ApiError::new(Kind::StreamInterrupted, why).to_value())),
        })
    });
    let stream = futures_util::stream::once(async move { Ok(Bytes::from(first)) }).chain(rest);
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error_response(&ApiError::internal("response build failed")))
}

/// RFC 3339 UTC time without a date crate.
/// Now, as RFC 3339 in UTC to the second (`2026-12-02T07:30:00Z`).
fn rfc3339_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Serve until SIGTERM or Ctrl-C, then finish in-flight requests and return.
pub async fn serve(config: TalosConfig) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind((config.bind.as_str(), config.port)).await?;
    log::info!("talos listening on {}:{}, Ollama at {}", config.bind, config.port, config.ollama);
    axum::serve(listener, app(config))
        .with_graceful_shutdown(async {
            use tokio::signal::unix::{signal, SignalKind};
            if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            }
            log::info!("talos stopping");
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T');
    }
}
