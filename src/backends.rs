//! Backends: one trait (the spec's ExecutionBackend), one module per wire type, and the registry
//! that builds them from configuration. Routing only ever sees `dyn Backend`.

mod openai_compat;
mod sim;

use crate::config::{BackendConfig, BackendKind};
use crate::openai::ApiRequest;
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

/// Why an attempt produced no answer at all. Messages never carry keys.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttemptError {
    #[error("connection failed")]
    Connect,
    #[error("timed out after {0}s")]
    Timeout(u64),
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
}

/// The spec's BackendRegistry: every enabled backend, built once from configuration.
pub struct Registry {
    backends: Vec<Arc<dyn Backend>>,
}

impl Registry {
    pub fn build(configs: &[BackendConfig], client: &reqwest::Client) -> Registry {
        let backends = configs
            .iter()
            .map(|c| -> Arc<dyn Backend> {
                match c.kind {
                    BackendKind::Sim => Arc::new(sim::Sim::new(c.clone())),
                    BackendKind::Local | BackendKind::OpenRouter | BackendKind::OpenAi | BackendKind::Custom => {
                        Arc::new(openai_compat::OpenAiCompat::new(c.clone(), client.clone()))
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

/// The HTTP client every network backend shares: one connection pool, Nagle off.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
