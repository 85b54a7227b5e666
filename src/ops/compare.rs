//! The spec's BackendTester: one prompt to several backends at once, and a table of how each
//! did (status, time, cost, answer length), kept in the analytics file as a comparison.

use crate::backends::sse::usage_from_json;
use crate::backends::Call;
use crate::doors::openai::{self, Endpoint};
use crate::error::ApiError;
use crate::ops::shadow::answer_text;
use crate::state::analytics::record::ComparisonRecord;
use crate::state::gateway::Gateway;
use std::fmt::Write;
use std::time::Instant;

/// Send `prompt` to each named backend (all enabled ones when `names` is empty).
pub async fn run(gateway: &Gateway, prompt: &str, names: &[String]) -> Result<Vec<ComparisonRecord>, ApiError> {
    let mut targets = Vec::new();
    for name in names {
        let i = gateway.config.backends.iter().position(|b| &b.name == name).ok_or_else(|| {
            let known: Vec<&str> = gateway.config.backends.iter().map(|b| b.name.as_str()).collect();
            ApiError::not_found(format!("No enabled backend is named '{name}' (enabled: {}).", known.join(", ")), "backends", "backend_not_found")
        })?;
        targets.push(i);
    }
    if targets.is_empty() {
        targets = (0..gateway.config.backends.len()).collect();
    }
    let id = format!("cmp_{:016x}", fastrand::u64(..));
    let keep_prompt = gateway.config.log_content.then(|| prompt.to_string());
    let runs = targets.into_iter().map(|i| one(gateway, i, prompt));
    let rows = futures_util::future::join_all(runs).await;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            r.comparison_id = id.clone();
            r.prompt = keep_prompt.clone();
            r
        })
        .collect())
}

async fn one(gateway: &Gateway, index: usize, prompt: &str) -> ComparisonRecord {
    let cfg = &gateway.config.backends[index];
    let model = gateway.catalog.models(index).first().cloned().unwrap_or_else(|| "auto".to_string());
    let mut row = ComparisonRecord {
        comparison_id: String::new(),
        source: "compare".into(),
        request_id: None,
        prompt: None,
        backend: cfg.name.clone(),
        model: model.clone(),
        status: None,
        seconds: 0.0,
        cost_cents: None,
        answer_chars: 0,
        similarity: None,
        error: None,
    };
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": prompt}]}).to_string();
    let body = bytes::Bytes::from(body);
    let request = match openai::parse_request(Endpoint::ChatCompletions, &body) {
        Ok(r) => r,
        Err(e) => {
            row.error = Some(e.message().to_string());
            return row;
        }
    };
    let Some(backend) = gateway.registry.get(index) else { return row };
    let started = Instant::now();
    let outcome = tokio::time::timeout(cfg.timeout, async {
        let mut reply = backend.send(Call::chat(&request, &body, &model)).await.map_err(|e| e.to_string())?.scrubbed(&gateway.scrubber);
        let bytes = reply.bytes().await.map_err(|e| e.to_string())?.to_vec();
        Ok::<_, String>((reply.status, bytes))
    })
    .await
    .unwrap_or_else(|_| Err(format!("timed out after {}s", cfg.timeout.as_secs_f64())));
    row.seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok((status, bytes)) => {
            row.status = Some(status);
            if (200..300).contains(&status) {
                row.answer_chars = answer_text(&bytes).chars().count();
                row.cost_cents = usage_from_json(&bytes).map(|u| gateway.config.price(cfg, &model).cost(&u));
            } else {
                row.error = Some(format!("HTTP {status}"));
            }
        }
        Err(e) => row.error = Some(e),
    }
    row
}

/// The comparison as a text table.
pub fn render(rows: &[ComparisonRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {:<28} {:>6} {:>8} {:>12} {:>8}  error", "backend", "model", "status", "seconds", "cost_cents", "chars");
    for r in rows {
        let _ = writeln!(
            out,
            "{:<16} {:<28} {:>6} {:>8.3} {:>12} {:>8}  {}",
            r.backend,
            r.model,
            r.status.map_or("-".to_string(), |s| s.to_string()),
            r.seconds,
            r.cost_cents.map_or("-".to_string(), |c| format!("{c:.6}")),
            r.answer_chars,
            r.error.as_deref().unwrap_or("")
        );
    }
    if let Some(id) = rows.first().map(|r| r.comparison_id.as_str()) {
        let _ = writeln!(out, "stored as comparison {id}");
    }
    out
}
