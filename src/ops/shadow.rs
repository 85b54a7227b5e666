//! Shadow traffic: a share of requests also goes to a candidate backend (policies/routing.toml
//! `[shadow]`). Its answer is compared with the one the client got, logged and kept in the
//! `comparisons` table; never returned.

use crate::backends::Call;
use crate::doors::openai::ApiRequest;
use crate::state::analytics::record::ComparisonRecord;
use crate::state::analytics::Event;
use crate::state::gateway::Gateway;
use metrics::counter;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the client got, to compare against.
pub struct Primary {
    pub backend: String,
    pub status: u16,
    pub elapsed: Duration,
    pub text: String,
}

/// Which backend shadows this request, if the dice say so and the request may leave.
/// A migration's shadow target (`hermes migrate apply --strategy parallel_testing`) replaces the
/// policy's while it runs.
pub fn pick(gateway: &Gateway, answered_by: usize, local_only: bool) -> Option<usize> {
    let steered = gateway.shared.helm.with(|s| s.shadow.as_ref().map(|t| (t.backend.clone(), t.share)));
    let (backend, share) = match steered {
        Some(target) => target,
        None => gateway.config.policies.shadow.as_ref().map(|p| (p.backend.clone(), p.share))?,
    };
    let index = gateway.config.backends.iter().position(|b| b.name == backend)?;
    let allowed = index != answered_by && (!local_only || gateway.config.backends[index].kind.is_local());
    (allowed && fastrand::f64() < share).then_some(index)
}

/// The answer's text from a whole OpenAI chat completion.
pub fn answer_text(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    v["choices"][0]["message"]["content"].as_str().unwrap_or("").to_string()
}

/// Word overlap (Jaccard) of two answers, 0..1.
pub fn similarity(a: &str, b: &str) -> f64 {
    let words = |s: &str| s.split_whitespace().map(|w| w.to_lowercase()).collect::<HashSet<_>>();
    let (a, b) = (words(a), words(b));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / a.union(&b).count().max(1) as f64
}

pub fn spawn(gateway: Arc<Gateway>, request: ApiRequest, shadow: usize, request_id: String, primary: Primary) {
    // In flight like a request: shutdown waits for it (within the grace) and its record.
    let in_flight = gateway.enter();
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let Some(backend) = gateway.registry.get(shadow) else { return };
        let cfg = backend.config();
        let models = gateway.catalog.models(shadow);
        let model = if request.model != "auto" && (models.is_empty() || models.contains(&request.model)) {
            request.model.clone()
        } else {
            models.first().cloned().unwrap_or_else(|| request.model.clone())
        };
        let mut quiet = request.clone();
        // The shadow is asked in chat completions whichever door the request came by.
        quiet.door = crate::doors::Door::OpenAi;
        quiet.stream = false;
        quiet.body.insert("stream".into(), Value::Bool(false));
        quiet.body.remove("stream_options");
        quiet.body.insert("model".into(), Value::String(model.clone()));
        let body = bytes::Bytes::from(Value::Object(quiet.body.clone()).to_string());
        let started = Instant::now();
        let outcome = tokio::time::timeout(cfg.timeout, async {
            let mut reply = backend.send(Call::chat(&quiet, &body, &model)).await.map_err(|e| e.to_string())?.scrubbed(&gateway.scrubber);
            let bytes = reply.bytes().await.map_err(|e| e.to_string())?.to_vec();
            Ok::<_, String>((reply.status, bytes))
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        let elapsed = started.elapsed();
        let row =
            |backend: &str, model: &str, status: Option<u16>, seconds: f64, chars: usize, similarity: Option<f64>, error: Option<String>| ComparisonRecord {
                comparison_id: format!("shadow_{request_id}"),
                source: "shadow".into(),
                request_id: Some(request_id.clone()),
                prompt: None,
                backend: backend.to_string(),
                model: model.to_string(),
                status,
                seconds,
                cost_cents: None,
                answer_chars: chars,
                similarity,
                error,
            };
        let mut rows =
            vec![row(&primary.backend, &request.model, Some(primary.status), primary.elapsed.as_secs_f64(), primary.text.chars().count(), None, None)];
        let (seconds, primary_seconds) = (elapsed.as_secs_f64(), primary.elapsed.as_secs_f64());
        match outcome {
            Ok((status, bytes)) => {
                let text = answer_text(&bytes);
                let sim = similarity(&primary.text, &text);
                let ok = (200..300).contains(&status);
                rows.push(row(&cfg.name, &model, Some(status), seconds, text.chars().count(), Some(sim), None));
                gateway.shared.helm.tally(&cfg.name, ok, sim, seconds, primary_seconds);
                counter!("hermes_shadow_requests_total", "backend" => cfg.name.clone(), "outcome" => if ok { "ok" } else { "error" }).increment(1);
                log::info!(
                    "shadow {request_id}: client got {} ({}, {} ms, {} chars); shadow {} ({status}, {} ms, {} chars); similarity {sim:.2}",
                    primary.backend,
                    primary.status,
                    primary.elapsed.as_millis(),
                    primary.text.len(),
                    cfg.name,
                    elapsed.as_millis(),
                    text.len()
                );
            }
            Err(e) => {
                gateway.shared.helm.tally(&cfg.name, false, 0.0, seconds, primary_seconds);
                counter!("hermes_shadow_requests_total", "backend" => cfg.name.clone(), "outcome" => "error").increment(1);
                log::info!("shadow {request_id}: shadow {} failed after {} ms: {e}", cfg.name, elapsed.as_millis());
                rows.push(row(&cfg.name, &model, None, seconds, 0, None, Some(e)));
            }
        }
        gateway.analytics().offer(Event::Comparison(rows));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_is_word_overlap() {
        assert_eq!(similarity("a b c", "a b c"), 1.0);
        assert_eq!(similarity("a b", "c d"), 0.0);
        assert!((similarity("the cat sat", "the cat ran") - 0.5).abs() < 1e-9);
    }
}
