//! Hermes's own endpoints: liveness, metrics, the model list, and `/admin/*` for operators.

use crate::gateway::{Gateway, Live};
use crate::openai::ApiError;
use crate::proxy::{bearer, response_head, send_error, send_json, send_whole, Exchange};
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::json;
use std::time::UNIX_EPOCH;

pub async fn health(gateway: &Gateway, session: &mut Session, ex: &mut Exchange) {
    let body = json!({"status": "ok", "backends": gateway.config.backends.len(), "in_flight": gateway.in_flight()});
    send_json(gateway, session, ex, 200, Bytes::from(body.to_string())).await;
}

pub async fn metrics(gateway: &Gateway, session: &mut Session, ex: &mut Exchange) {
    // Health also changes with time (rests and cooldowns end): read it at scrape time.
    for (i, b) in gateway.config.backends.iter().enumerate() {
        crate::telemetry::set_backend_healthy(&b.name, gateway.health.available(i));
        crate::telemetry::set_backend_scores(&b.name, b.quality_score, b.speed_score, gateway.health.reliability(i));
    }
    let Some(mut head) = response_head(gateway, ex, 200) else { return };
    let _ = head.insert_header("content-type", "text/plain; version=0.0.4; charset=utf-8");
    send_whole(session, ex, 200, head, Bytes::from(crate::telemetry::render())).await;
}

/// Every enabled backend's models, plus `auto`, in OpenAI's list shape; rendered at most once a
/// second (SDKs and UIs poll it).
pub async fn models(gateway: &Gateway, session: &mut Session, ex: &mut Exchange) {
    let body = gateway.model_list.get_with((), async { Bytes::from(model_list(gateway).to_string()) }).await;
    send_json(gateway, session, ex, 200, body).await;
}

fn model_list(gateway: &Gateway) -> serde_json::Value {
    let mut data = vec![json!({"id": "auto", "object": "model", "created": 0, "owned_by": "hermes"})];
    let mut seen = std::collections::HashSet::new();
    for (b, models) in gateway.config.backends.iter().zip(gateway.catalog.all()) {
        for m in models.iter() {
            if seen.insert(m.clone()) {
                data.push(json!({"id": m, "object": "model", "created": 0, "owned_by": b.name}));
            }
        }
    }
    json!({"object": "list", "data": data})
}

/// `/admin/*` takes HERMES_ADMIN_KEY as a bearer token; without one configured, loopback only.
pub fn authorize(gateway: &Gateway, session: &Session) -> Result<(), ApiError> {
    match &gateway.config.admin_key {
        Some(key) if bearer(session).is_some_and(|p| key.matches(p)) => Ok(()),
        Some(_) => Err(ApiError::unauthorized()),
        None if session.client_addr().and_then(|a| a.as_inet()).is_some_and(|a| a.ip().is_loopback()) => Ok(()),
        None => Err(ApiError::forbidden("/admin is open to loopback clients only while HERMES_ADMIN_KEY is unset.")),
    }
}

/// Every backend: type, health, models, load and scores.
pub async fn backends(gateway: &Gateway, session: &mut Session, ex: &mut Exchange) {
    let list: Vec<_> = gateway
        .config
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let check = gateway.last_check(i).map(|c| {
                let at = c.at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                match c.outcome {
                    Ok(models) => json!({"at": at, "ok": true, "models_reported": models}),
                    Err(e) => json!({"at": at, "ok": false, "error": e}),
                }
            });
            json!({
                "name": b.name,
                "type": b.kind.as_str(),
                "base_url": crate::config::redact_url(&b.base_url),
                "health_status": gateway.health.status(i).as_str(),
                "last_check": check,
                "models": *gateway.catalog.models(i),
                "in_flight": gateway.backend_in_flight(i),
                "timeout_seconds": b.timeout.as_secs_f64(),
                "price_per_mtok": {"input": b.price.input_per_mtok, "output": b.price.output_per_mtok, "free": !b.kind.is_paid()},
                "scores": {"quality": b.quality_score, "speed": b.speed_score, "source": "configured prior"},
            })
        })
        .collect();
    send_json(gateway, session, ex, 200, Bytes::from(json!({"backends": list}).to_string())).await;
}

/// POST /admin/reload: the new configuration, or why it was refused (the old one keeps serving).
pub async fn reload(gateway: &Gateway, live: &Live, session: &mut Session, ex: &mut Exchange) {
    match live.reload() {
        Ok(new) => {
            let names: Vec<&str> = new.config.backends.iter().map(|b| b.name.as_str()).collect();
            send_json(gateway, session, ex, 200, Bytes::from(json!({"status": "reloaded", "backends": names}).to_string())).await;
        }
        Err(why) => {
            log::warn!("reload refused: {why}");
            let mut e = ApiError::bad_request(format!("Reload refused, the running configuration stays: {why}"), None);
            e.code = Some("invalid_configuration");
            send_error(gateway, session, ex, &e).await;
        }
    }
}
