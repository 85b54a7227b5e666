//! Backends that speak OpenAI's API themselves: OpenAI, OpenRouter, Talos, vLLM, llama.cpp, TGI.
//! The client's bytes go through as they are; only the key and routing headers are added.

use super::{AttemptError, Backend, Call, Reply};
use crate::config::{BackendConfig, BackendKind};
use async_trait::async_trait;
use futures_util::TryStreamExt;

pub struct OpenAiCompat {
    config: BackendConfig,
    client: reqwest::Client,
}

impl OpenAiCompat {
    pub fn new(config: BackendConfig, client: reqwest::Client) -> OpenAiCompat {
        OpenAiCompat { config, client }
    }
}

#[async_trait]
impl Backend for OpenAiCompat {
    fn config(&self) -> &BackendConfig {
        &self.config
    }

    async fn send(&self, call: Call<'_>) -> Result<Reply, AttemptError> {
        let url = format!("{}{}", self.config.base_url, call.request.endpoint.path());
        let mut req = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            // Streams must arrive readable, chunk by chunk.
            .header(http::header::ACCEPT_ENCODING, "identity")
            .body(call.body);
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key.expose());
        }
        if self.config.kind == BackendKind::OpenRouter {
            // OpenRouter's app attribution headers.
            req = req.header("HTTP-Referer", "https://github.com/hermes-gateway/hermes").header("X-Title", "Hermes");
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                AttemptError::Timeout(self.config.timeout.as_secs())
            } else if e.is_connect() {
                AttemptError::Connect
            } else {
                AttemptError::Broken(describe(&e))
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes_stream().map_err(|e| AttemptError::Broken(describe(&e)));
        Ok(Reply { status, headers, body: Box::pin(body) })
    }
}

/// reqwest's message without the URL: the base URL is configuration, not news to the client.
fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_body() || e.is_decode() { "the body was cut".to_string() } else { "the request failed".to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}
