//! Backends: one trait (the spec's ExecutionBackend), one module per wire type, and the registry
//! that builds them from configuration. Routing only ever sees `dyn Backend`.

pub mod anthropic;
mod ollama;
mod openai_compat;
mod sim;
mod talos;

use crate::config::{BackendConfig, BackendKind};
use crate::openai::ApiRequest;
use crate::upstream::Upstream;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::sync::Arc;

pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, AttemptError>> + Send>>;

/// A backend's answer: status and headers as soon as they arrive, the body as it comes.
/// The body is OpenAI's wire format (JSON, or SSE for streams) whatever the backend speaks.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: BodyStream,
}

impl Reply {
    /// The whole body; status and headers stay readable.
    pub async fn bytes(&mut self) -> Result<Bytes, AttemptError> {
        use futures_util::StreamExt;
        let mut all = Vec::new();
        while let Some(chunk) = self.body.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(Bytes::from(all))
    }

    pub async fn json(mut self) -> Result<serde_json::Value, String> {
        let bytes = self.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| format!("the answer is not JSON: {e}"))
    }
}

/// Why an attempt produced no answer at all. Messages never carry keys.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttemptError {
    #[error("connection failed")]
    Connect,
    #[error("answer broke off: {0}")]
    Broken(String),
}

/// One API call for one backend: the checked request, the bytes to send, the model to ask for.
pub struct Call<'a> {
    pub request: &'a ApiRequest,
    pub body: Bytes,
    pub model: &'a str,
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
                    BackendKind::OpenRouter | BackendKind::OpenAi | BackendKind::Custom => {
                        Arc::new(openai_compat::OpenAiCompat::new(c.clone(), upstream))
                    }
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

/// A whole JSON answer made by Hermes (translated, simulated or an error).
pub fn json_reply(status: u16, body: serde_json::Value) -> Reply {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    let bytes = Bytes::from(body.to_string());
    Reply { status, headers, body: Box::pin(futures_util::stream::iter([Ok::<_, AttemptError>(bytes)])) }
}

/// A 200 stream whose bytes are translated into OpenAI SSE as they arrive.
pub fn translated_stream<F>(resp: Reply, mut translate: F) -> Reply
where
    F: FnMut(&[u8]) -> Result<Vec<u8>, String> + Send + 'static,
{
    use futures_util::StreamExt;
    let body = resp.body.map(move |chunk| translate(&chunk?).map(Bytes::from).map_err(AttemptError::Broken));
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream; charset=utf-8"));
    Reply { status: 200, headers, body: Box::pin(body.filter(|c| std::future::ready(!matches!(c, Ok(b) if b.is_empty())))) }
}

/// Model ids from an OpenAI-style `{"data": [{"id": ...}]}` list.
pub fn model_ids(v: &serde_json::Value) -> Vec<String> {
    v["data"].as_array().map(|d| d.iter().filter_map(|m| m["id"].as_str().map(str::to_string)).collect()).unwrap_or_default()
}
