//! Backends: one trait (the spec's ExecutionBackend), one module per wire type, and the registry
//! that builds them from configuration. Routing only ever sees `dyn Backend`.

pub mod anthropic;
mod ollama;
pub mod ollama_wire;
mod openai_compat;
pub mod reply;
mod sim;
pub mod sse;
mod talos;
pub mod upstream;

use crate::doors::openai::ApiRequest;
use crate::state::config::{BackendConfig, BackendKind};
use async_trait::async_trait;
use bytes::Bytes;
use reply::{AttemptError, Reply};
use std::sync::Arc;
use upstream::Upstream;

/// One API call for one backend: the checked request, the bytes to send, the model to ask for.
pub struct Call<'a> {
    pub request: &'a ApiRequest,
    pub body: Bytes,
    pub model: &'a str,
    /// The client's own body and the headers of its API that a backend speaking that API takes
    /// unchanged (`anthropic-version`, `anthropic-beta` on the Messages door).
    pub original: &'a Bytes,
    pub passed_headers: &'a [(&'static str, String)],
    /// The W3C trace context (`traceparent`, `tracestate`) every backend gets: the attempt's
    /// span when traces are exported, else the client's own.
    pub trace_headers: &'a [(&'static str, String)],
}

impl<'a> Call<'a> {
    /// A chat completions call of Hermes's own (shadows, comparisons): nothing passed through.
    pub fn chat(request: &'a ApiRequest, body: &'a Bytes, model: &'a str) -> Call<'a> {
        Call { request, body: body.clone(), model, original: body, passed_headers: &[], trace_headers: &[] }
    }
}

#[async_trait]
pub trait Backend: Send + Sync {
    fn config(&self) -> &BackendConfig;

    /// Send one call. Non-2xx answers are replies too; only a missing answer is an error.
    async fn send(&self, call: Call<'_>) -> Result<Reply, AttemptError>;

    /// The active health check that fits the type; on success, the models the backend reports.
    async fn probe(&self) -> Result<Vec<String>, String>;
}

/// The spec's BackendRegistry: every enabled backend, built once from configuration.
pub struct Registry {
    backends: Vec<Arc<dyn Backend>>,
}

impl Registry {
    pub fn build(configs: &[BackendConfig], upstream: &Arc<Upstream>) -> Registry {
        let backends = configs
            .iter()
            .map(|c| -> Arc<dyn Backend> {
                match c.kind {
                    BackendKind::Sim => Arc::new(sim::Sim::new(c.clone())),
                    BackendKind::Local => Arc::new(talos::Talos::new(c.clone(), upstream)),
                    BackendKind::Ollama => Arc::new(ollama::Ollama::new(c.clone(), upstream)),
                    BackendKind::Anthropic => Arc::new(anthropic::Anthropic::new(c.clone(), upstream)),
                    BackendKind::OpenRouter | BackendKind::OpenAi | BackendKind::Custom => Arc::new(openai_compat::OpenAiCompat::new(c.clone(), upstream)),
                }
            })
            .collect();
        Registry { backends }
    }

    pub fn all(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    pub fn get(&self, index: usize) -> Option<&Arc<dyn Backend>> {
        self.backends.get(index)
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Model ids from an OpenAI-style `{"data": [{"id": ...}]}` list.
pub fn model_ids(v: &serde_json::Value) -> Vec<String> {
    v["data"].as_array().map(|d| d.iter().filter_map(|m| m["id"].as_str().map(str::to_string)).collect()).unwrap_or_default()
}
