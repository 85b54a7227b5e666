//! Hermes's own read-only endpoints: liveness, metrics, the model list.

use crate::gateway::Gateway;
use crate::proxy::{response_head, send_json, send_whole, Exchange};
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::json;

pub async fn health(gateway: &Gateway, session: &mut Session, ex: &mut Exchange) {
    let body = json!({"status": "ok", "backends": gateway.config.backends.len(), "in_flight": gateway.in_flight()});
    send_json(gateway, session, ex, 200, Bytes::from(body.to_string())).await;
}

pub async fn metrics(gateway: &Gateway, session: &mut Session, ex: &mut Exchange) {
    let Some(mut head) = response_head(gateway, ex, 200) else { return };
    let _ = head.insert_header("content-type", "text/plain; version=0.0.4; charset=utf-8");
    send_whole(session, ex, 200, head, Bytes::from(crate::telemetry::render())).await;
}

/// Every enabled backend's models, plus `auto`, in OpenAI's list shape.
pub async fn models(gateway: &Gateway, session: &mut Session, ex: &mut Exchange) {
    let mut data = vec![json!({"id": "auto", "object": "model", "created": 0, "owned_by": "hermes"})];
    let mut seen = std::collections::HashSet::new();
    for b in &gateway.config.backends {
        for m in &b.models {
            if seen.insert(m.as_str()) {
                data.push(json!({"id": m, "object": "model", "created": 0, "owned_by": b.name}));
            }
        }
    }
    let body = json!({"object": "list", "data": data});
    send_json(gateway, session, ex, 200, Bytes::from(body.to_string())).await;
}
