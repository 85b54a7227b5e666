//! `local`: a Talos agent beside Ollama. Talos speaks OpenAI chat itself, so calls go through the
//! OpenAI-compatible adapter; health and models come from Talos's own `/health`.

use super::openai_compat::{self, OpenAiCompat};
use super::reply::{AttemptError, Reply};
use super::{Backend, Call};
use crate::backends::upstream::{Api, Upstream};
use crate::state::config::BackendConfig;
use async_trait::async_trait;
use std::sync::Arc;

pub struct Talos {
    api: OpenAiCompat,
    /// Talos's root, where `/health` lives (the API base without `/v1`).
    root: Api,
}

impl Talos {
    pub fn new(config: BackendConfig, upstream: &Arc<Upstream>) -> Talos {
        let root = Api::new(upstream, config.base_url.strip_suffix("/v1").unwrap_or(&config.base_url), openai_compat::headers(&config));
        Talos { api: OpenAiCompat::new(config, upstream), root }
    }
}

#[async_trait]
impl Backend for Talos {
    fn config(&self) -> &BackendConfig {
        self.api.config()
    }

    async fn send(&self, call: Call<'_>) -> Result<Reply, AttemptError> {
        self.api.send(call).await
    }

    async fn probe(&self) -> Result<Vec<String>, String> {
        let resp = self.root.get("/health").await.map_err(|e| e.to_string())?;
        let status = resp.status;
        let v = resp.json().await?;
        if status != 200 || v["status"] != "healthy" {
            return Err(format!("Talos reports {} ({status})", v["status"].as_str().unwrap_or("no status")));
        }
        Ok(v["models"].as_array().map(|m| m.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default())
    }
}
