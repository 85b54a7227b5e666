//! `local`: a Talos agent beside Ollama. Talos speaks OpenAI chat itself, so calls go through the
//! OpenAI-compatible adapter; health and models come from Talos's own `/health`.

use super::openai_compat::OpenAiCompat;
use super::{describe, AttemptError, Backend, Call, Reply};
use crate::config::BackendConfig;
use async_trait::async_trait;
use serde_json::Value;

pub struct Talos {
    api: OpenAiCompat,
    /// Talos's root, where `/health` lives (the API base without `/v1`).
    root: String,
}

impl Talos {
    pub fn new(config: BackendConfig, client: reqwest::Client) -> Talos {
        let root = config.base_url.strip_suffix("/v1").unwrap_or(&config.base_url).to_string();
        Talos { api: OpenAiCompat::new(config, client), root }
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
        let resp = self.api.authorized(self.api.client().get(format!("{}/health", self.root))).send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.map_err(|e| describe(&e))?;
        if status != 200 || v["status"] != "healthy" {
            return Err(format!("Talos reports {} ({status})", v["status"].as_str().unwrap_or("no status")));
        }
        Ok(v["models"].as_array().map(|m| m.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default())
    }
}
