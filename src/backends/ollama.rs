//! `ollama`: Ollama's native API directly (`/api/chat`, `/api/embed`, `/api/tags`), translated
//! to and from OpenAI's by `crate::backends::ollama_wire`.

use super::reply::{json_reply, translated_stream, AttemptError, Reply};
use super::{now_secs, Backend, Call};
use crate::backends::ollama_wire::{self as wire, NdjsonToSse};
use crate::backends::upstream::{Api, Upstream};
use crate::doors::openai::Endpoint;
use crate::state::config::BackendConfig;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;

pub struct Ollama {
    config: BackendConfig,
    api: Api,
}

impl Ollama {
    pub fn new(config: BackendConfig, upstream: &Arc<Upstream>) -> Ollama {
        let api = Api::new(upstream, &config.base_url, Vec::new());
        Ollama { config, api }
    }
}

#[async_trait]
impl Backend for Ollama {
    fn config(&self) -> &BackendConfig {
        &self.config
    }

    async fn send(&self, call: Call<'_>) -> Result<Reply, AttemptError> {
        let request = call.request;
        let (path, body) = match request.endpoint {
            Endpoint::ChatCompletions => ("/api/chat", wire::chat_request(&request.body, call.model, request.stream)),
            Endpoint::Embeddings => ("/api/embed", json!({"model": call.model, "input": request.body.get("input").cloned().unwrap_or(Value::Null)})),
        };
        let mut resp = self.api.post_json_with(path, body.to_string().into(), call.trace_headers).await?;
        let status = resp.status;
        let id = format!("chatcmpl-ollama{:016x}", fastrand::u64(..));
        if status == 200 && request.stream && request.endpoint == Endpoint::ChatCompletions {
            let mut t = NdjsonToSse::new(id, call.model.to_string(), now_secs(), request.include_usage());
            return Ok(translated_stream(resp, move |chunk| t.feed(chunk)));
        }
        let bytes = resp.bytes().await?;
        if status != 200 {
            return Ok(json_reply(status, wire::error(status, &bytes).to_value()));
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| AttemptError::Broken(format!("unreadable answer from Ollama: {e}")))?;
        Ok(json_reply(
            200,
            match request.endpoint {
                Endpoint::ChatCompletions => wire::chat_response(&v, &id, call.model, now_secs()),
                Endpoint::Embeddings => {
                    let data: Vec<Value> = v["embeddings"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .enumerate()
                        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e}))
                        .collect();
                    let tokens = v["prompt_eval_count"].as_u64().unwrap_or(0);
                    json!({"object": "list", "data": data, "model": call.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
                }
            },
        ))
    }

    async fn probe(&self) -> Result<Vec<String>, String> {
        Ok(wire::tag_names(&self.api.get_json("/api/tags").await?))
    }
}
