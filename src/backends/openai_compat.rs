//! Backends that speak OpenAI's API themselves: OpenAI, OpenRouter, Talos, vLLM, llama.cpp, TGI.
//! The client's bytes go through as they are; only the key and routing headers are added.

use super::{describe, model_ids, request_failed, AttemptError, Backend, Call, Reply};
use crate::config::{BackendConfig, BackendKind};
use crate::openai::Endpoint;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde_json::Value;

pub struct OpenAiCompat {
    config: BackendConfig,
    client: reqwest::Client,
    /// Endpoint URLs parsed once, not per request.
    chat_url: Option<reqwest::Url>,
    embeddings_url: Option<reqwest::Url>,
}

impl OpenAiCompat {
    pub fn new(config: BackendConfig, client: reqwest::Client) -> OpenAiCompat {
        let url = |e: Endpoint| reqwest::Url::parse(&format!("{}{}", config.base_url, e.path())).ok();
        let (chat_url, embeddings_url) = (url(Endpoint::ChatCompletions), url(Endpoint::Embeddings));
        OpenAiCompat { config, client, chat_url, embeddings_url }
    }
}

#[async_trait]
impl Backend for OpenAiCompat {
    fn config(&self) -> &BackendConfig {
        &self.config
    }

    async fn send(&self, call: Call<'_>) -> Result<Reply, AttemptError> {
        let url = match call.request.endpoint {
            Endpoint::ChatCompletions => self.chat_url.clone(),
            Endpoint::Embeddings => self.embeddings_url.clone(),
        }
        .ok_or_else(|| AttemptError::Broken("the backend's base URL is not a URL".into()))?;
        let body = match self.config.kind {
            BackendKind::OpenAi => completion_tokens_field(call.body, call.model),
            _ => call.body,
        };
        let req = self
            .authorized(self.client.post(url))
            .header(http::header::CONTENT_TYPE, "application/json")
            // Streams must arrive readable, chunk by chunk.
            .header(http::header::ACCEPT_ENCODING, "identity")
            .body(body);
        let resp = req.send().await.map_err(|e| request_failed(&e, &self.config))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes_stream().map_err(|e| AttemptError::Broken(describe(&e)));
        Ok(Reply { status, headers, body: Box::pin(body) })
    }

    async fn probe(&self) -> Result<Vec<String>, String> {
        let resp = self.authorized(self.client.get(format!("{}/models", self.config.base_url))).send().await.map_err(|e| describe(&e))?;
        if !resp.status().is_success() {
            return Err(format!("GET /models answered {}", resp.status().as_u16()));
        }
        let v: Value = resp.json().await.map_err(|e| describe(&e))?;
        Ok(model_ids(&v))
    }
}

impl OpenAiCompat {
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn authorized(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key.expose());
        }
        if self.config.kind == BackendKind::OpenRouter {
            // OpenRouter's app attribution headers.
            req = req.header("HTTP-Referer", "https://github.com/hermes-gateway/hermes").header("X-Title", "Hermes");
        }
        req
    }
}

/// OpenAI's reasoning models (gpt-5, o1, o3, o4...) refuse `max_tokens` and take
/// `max_completion_tokens`; older ones take either. Other bodies pass as they are.
pub fn completion_tokens_field(body: Bytes, model: &str) -> Bytes {
    let newer = model.starts_with("gpt-5") || (model.starts_with('o') && model[1..].starts_with(|c: char| c.is_ascii_digit()));
    if !newer {
        return body;
    }
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&body) else { return body };
    let Some(v) = map.shift_remove("max_tokens") else { return body };
    map.entry("max_completion_tokens").or_insert(v);
    Bytes::from(Value::Object(map).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_openai_models_get_max_completion_tokens() {
        let body = Bytes::from_static(br#"{"model":"gpt-5","messages":[],"max_tokens":50,"seed":1}"#);
        let out: Value = serde_json::from_slice(&completion_tokens_field(body.clone(), "gpt-5")).unwrap();
        assert_eq!(out["max_completion_tokens"], 50);
        assert!(out.get("max_tokens").is_none());
        assert_eq!(out["seed"], 1);
        assert_eq!(completion_tokens_field(body.clone(), "gpt-4o"), body);
        assert_ne!(completion_tokens_field(body.clone(), "o3-mini"), body);
        assert_eq!(completion_tokens_field(body.clone(), "omni-x"), body);
    }
}
