//! Backends that speak OpenAI's API themselves: OpenAI, OpenRouter, Talos, vLLM, llama.cpp, TGI.
//! The client's bytes go through as they are; only the key and routing headers are added.

use super::reply::{AttemptError, Reply};
use super::{model_ids, Backend, Call};
use crate::backends::upstream::{Api, Upstream};
use crate::state::config::{BackendConfig, BackendKind};
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

pub struct OpenAiCompat {
    config: BackendConfig,
    api: Api,
}

impl OpenAiCompat {
    pub fn new(config: BackendConfig, upstream: &Arc<Upstream>) -> OpenAiCompat {
        let api = Api::new(upstream, &config.base_url, headers(&config));
        OpenAiCompat { config, api }
    }
}

/// What every call carries: the key, and OpenRouter's app attribution.
pub fn headers(config: &BackendConfig) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if let Some(key) = &config.api_key {
        headers.push(("authorization", format!("Bearer {}", key.expose())));
    }
    if config.kind == BackendKind::OpenRouter {
        headers.push(("http-referer", "https://github.com/hermes-gateway/hermes".into()));
        headers.push(("x-title", "Hermes".into()));
    }
    headers
}

#[async_trait]
impl Backend for OpenAiCompat {
    fn config(&self) -> &BackendConfig {
        &self.config
    }

    async fn send(&self, call: Call<'_>) -> Result<Reply, AttemptError> {
        let body = match self.config.kind {
            BackendKind::OpenAi => completion_tokens_field(call.body, call.model),
            _ => call.body,
        };
        self.api.post_json_with(call.request.endpoint.path(), body, call.trace_headers).await
    }

    async fn probe(&self) -> Result<Vec<String>, String> {
        Ok(model_ids(&self.api.get_json("/models").await?))
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
