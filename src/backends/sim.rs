//! `sim`: an OpenAI-compatible backend inside Hermes. Latency, speed, failures and price come
//! from configuration; every answer says it is simulated. Used by `--demo`, tests and benches.

use super::reply::{json_reply, AttemptError, BodyStream, Reply};
use super::{now_secs, Backend, Call};
use crate::doors::openai::Endpoint;
use crate::state::config::{BackendConfig, SimSettings};
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;
use std::sync::Mutex;
use std::time::Duration;

pub struct Sim {
    config: BackendConfig,
    settings: SimSettings,
    rng: Mutex<fastrand::Rng>,
}

impl Sim {
    pub fn new(config: BackendConfig) -> Sim {
        let settings =
            config.sim.clone().unwrap_or(SimSettings { latency: Duration::ZERO, tokens_per_second: 0.0, failure_rate: 0.0, output_tokens: 24, seed: None });
        let rng = settings.seed.map(fastrand::Rng::with_seed).unwrap_or_default();
        Sim { config, settings, rng: Mutex::new(rng) }
    }

    fn roll(&self) -> (f64, u64) {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        (rng.f64(), rng.u64(..))
    }

    fn answer_words(&self, model: &str, prompt: &str, max: u32) -> Vec<String> {
        let echo: Vec<&str> = prompt.split_whitespace().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
        let intro = format!("[simulated] Hermes sim backend {} ({model}) answers; no model ran. You wrote: {}", self.config.name, echo.join(" "));
        let filler = ["the", "gateway", "routes", "this", "job", "by", "cost", "quality", "and", "speed"];
        let mut words: Vec<String> = intro.split(' ').map(str::to_string).collect();
        let mut i = 0;
        while words.len() < max as usize {
            words.push(filler[i % filler.len()].to_string());
            i += 1;
        }
        words.truncate(max.max(1) as usize);
        words.iter().enumerate().map(|(i, w)| if i == 0 { w.clone() } else { format!(" {w}") }).collect()
    }

    fn token_interval(&self) -> Duration {
        if self.settings.tokens_per_second > 0.0 {
            Duration::from_secs_f64(1.0 / self.settings.tokens_per_second)
        } else {
            Duration::ZERO
        }
    }
}

/// Roughly four characters a token, the usual rule of thumb for English.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

#[async_trait]
impl Backend for Sim {
    fn config(&self) -> &BackendConfig {
        &self.config
    }

    async fn probe(&self) -> Result<Vec<String>, String> {
        Ok(self.config.models.clone())
    }

    async fn send(&self, call: Call<'_>) -> Result<Reply, AttemptError> {
        tokio::time::sleep(self.settings.latency).await;
        let (dice, id) = self.roll();
        if dice < self.settings.failure_rate {
            return Ok(json_reply(
                500,
                json!({"error": {"message": format!("simulated failure from sim backend {} (failure rate {})", self.config.name, self.settings.failure_rate), "type": "server_error", "param": null, "code": "simulated_failure"}}),
            ));
        }
        let prompt = call.request.prompt_text();
        let prompt_tokens = estimate_tokens(&prompt);
        let model = call.model.to_string();
        if call.request.endpoint == Endpoint::Embeddings {
            // One embedding per input, as OpenAI answers: a string is one input, an array of
            // strings (or of token arrays) one per item.
            let inputs = match call.request.body.get("input") {
                Some(serde_json::Value::Array(items)) if items.iter().all(|i| !i.is_number()) => items.len(),
                _ => 1,
            };
            let data: Vec<serde_json::Value> = (0..inputs)
                .map(|n| {
                    let seed = id.rotate_left(n as u32 * 7);
                    let vector: Vec<f64> = (0..8).map(|i| ((seed >> (i * 8)) & 0xff) as f64 / 255.0 - 0.5).collect();
                    json!({"object": "embedding", "index": n, "embedding": vector})
                })
                .collect();
            return Ok(json_reply(
                200,
                json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}),
            ));
        }
        let requested = ["max_completion_tokens", "max_tokens"].iter().find_map(|k| call.request.body.get(*k).and_then(|v| v.as_u64())).unwrap_or(u64::MAX);
        let max = (self.settings.output_tokens as u64).min(requested).max(1) as u32;
        let words = self.answer_words(&model, &prompt, max);
        let completion_tokens = words.len() as u64;
        let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
        let chat_id = format!("chatcmpl-sim{id:016x}");
        let created = now_secs();
        let interval = self.token_interval();

        if !call.request.stream {
            tokio::time::sleep(interval * completion_tokens as u32).await;
            return Ok(json_reply(
                200,
                json!({"id": chat_id, "object": "chat.completion", "created": created, "model": model,
                       "system_fingerprint": "hermes-sim",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": words.concat(), "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
                       "usage": usage}),
            ));
        }

        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            let v = json!({"id": chat_id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": "hermes-sim",
                           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
            Bytes::from(format!("data: {v}\n\n"))
        };
        let mut events = vec![chunk(json!({"role": "assistant", "content": "", "refusal": null}), None)];
        events.extend(words.iter().map(|w| chunk(json!({"content": w}), None)));
        events.push(chunk(json!({}), Some("stop")));
        if call.request.include_usage() {
            let v = json!({"id": chat_id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": "hermes-sim", "choices": [], "usage": usage});
            events.push(Bytes::from(format!("data: {v}\n\n")));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        let body: BodyStream = Box::pin(futures_util::stream::unfold(events.into_iter().enumerate(), move |mut it| async move {
            let (i, event) = it.next()?;
            // Content tokens are paced; the role chunk and the tail go at once.
            if i > 0 && i <= completion_tokens as usize {
                tokio::time::sleep(interval).await;
            }
            Some((Ok(event), it))
        }));
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream; charset=utf-8"));
        Ok(Reply { status: 200, headers, body, limit: usize::MAX, native: false })
    }
}
