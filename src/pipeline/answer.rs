//! Hermes's own answers: the head every answer starts from (Hermes's headers), and whole answers,
//! JSON and errors, written to the client within HERMES_SEND_TIMEOUT_SECONDS.

use super::exchange::Exchange;
use super::{Downstream, Head};
use crate::error::ApiError;
use crate::state::gateway::Gateway;
use bytes::Bytes;

/// The response head every answer starts from: status plus Hermes's own headers.
pub fn response_head(gateway: &Gateway, ex: &Exchange, status: u16) -> Head {
    let mut h = Head::new(status);
    let backend = ex.backend.and_then(|i| gateway.config.backends.get(i)).map(|b| b.name.as_str()).unwrap_or("none");
    h.set("x-hermes-request-id", &ex.request_id);
    h.set("x-hermes-backend", backend);
    h.set("x-hermes-attempts", ex.attempts.to_string());
    if let Some(m) = &ex.model {
        h.set("x-hermes-model", m);
    }
    if let Some(j) = ex.job_type {
        h.set("x-hermes-job-type", j.as_str());
    }
    if let (true, Some(reason)) = (ex.debug, ex.selection.as_ref().map(|s| &s.reasoning)) {
        // Header values must be visible ASCII: the reason's ¢ becomes "c".
        let ascii: String = reason
            .chars()
            .map(|c| {
                if c == '¢' {
                    'c'
                } else if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        h.set("x-hermes-route-reason", ascii);
    }
    if let Some((limit, remaining)) = ex.rate_limit {
        h.set("x-ratelimit-limit-requests", limit.to_string());
        h.set("x-ratelimit-remaining-requests", remaining.to_string());
    }
    if ex.cache_hit {
        h.set("x-hermes-cache", "hit");
    }
    if let Some(left) = super::keyed::remaining_after(gateway, ex) {
        h.set("x-hermes-budget-remaining-cents", format!("{left:.6}"));
    }
    if ex.budget_exhausted {
        h.set("x-hermes-budget", "exhausted");
    }
    h
}

/// A whole answer in one go; a client that does not take it within the send timeout is let go.
pub async fn send_whole<D: Downstream>(down: &mut D, ex: &mut Exchange, mut head: Head, body: Bytes) {
    ex.status = head.status;
    head.set("content-length", body.len().to_string());
    let written = super::timer::within(ex.send_timeout, down.write_head(head, body, true)).await;
    if !matches!(written, Ok(true)) {
        ex.abandoned = true;
    }
}

pub async fn send_json<D: Downstream>(gateway: &Gateway, down: &mut D, ex: &mut Exchange, status: u16, body: Bytes) {
    let mut head = response_head(gateway, ex, status);
    head.set("content-type", "application/json");
    send_whole(down, ex, head, body).await;
}

pub async fn send_error<D: Downstream>(gateway: &Gateway, down: &mut D, ex: &mut Exchange, err: &ApiError) {
    if ex.routed {
        ex.error = Some(err.message().to_string());
        ex.error_code = err.code();
    }
    let mut head = response_head(gateway, ex, err.status());
    head.set("content-type", "application/json");
    if let Some(s) = err.retry_after() {
        head.set("retry-after", s.to_string());
        if err.status() == 429 {
            head.set("x-ratelimit-reset-requests", format!("{s}s"));
        }
    }
    if err.status() == 413 || err.status() == 408 {
        // The body was never read: the connection cannot be reused.
        head.set("connection", "close");
        down.close_after();
    }
    let body = ex.door.error_body(err);
    send_whole(down, ex, head, body).await;
}
