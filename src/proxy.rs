//! Pingora glue: every request is answered from `request_filter`, so Hermes owns the attempt loop
//! (failover, streaming, bodies of any size). Hooks stay short; the work lives in `dispatch`.

use crate::analytics::record::{AttemptRecord, SelectionRecord};
use crate::classify::JobType;
use crate::dispatch;
use crate::gateway::{Gateway, InFlight, Live};
use crate::openai::ApiError;
use crate::sse::Usage;
use crate::telemetry::{self, RequestRecord};
use crate::outcome;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct HermesProxy {
    pub live: Arc<Live>,
}

/// One request's story, filled in as it goes and recorded in `logging`.
pub struct Exchange {
    pub request_id: String,
    pub started: Instant,
    /// Set for API calls that were routed (metrics are kept for those).
    pub routed: bool,
    pub backend: Option<usize>,
    pub model: Option<String>,
    pub status: u16,
    pub attempts: u32,
    pub upstream_time: Duration,
    pub ttft: Option<Duration>,
    pub usage: Option<Usage>,
    pub cost_cents: Option<f64>,
    pub job_type: Option<JobType>,
    pub complexity: Option<f64>,
    pub endpoint: &'static str,
    pub model_requested: Option<String>,
    pub stream: bool,
    /// The routing decision; its reasoning is shown when the client sent `x-hermes-debug`.
    pub selection: Option<SelectionRecord>,
    /// Every try at a backend, in order.
    pub tries: Vec<AttemptRecord>,
    /// What the client was told when the answer is an error.
    pub error: Option<String>,
    /// Prompt and answer text, kept only with HERMES_LOG_CONTENT=true.
    pub prompt: Option<String>,
    pub answer: Option<String>,
    pub debug: bool,
    /// The client's (limit, remaining) under HERMES_CLIENT_RATE_LIMIT.
    pub rate_limit: Option<(u32, u32)>,
    pub cache_hit: bool,
    _in_flight: Option<InFlight>,
}

impl Exchange {
    fn new() -> Exchange {
        Exchange {
            request_id: format!("req_{:016x}", fastrand::u64(..)),
            started: Instant::now(),
            routed: false,
            backend: None,
            model: None,
            status: 0,
            attempts: 0,
            upstream_time: Duration::ZERO,
            ttft: None,
            usage: None,
            cost_cents: None,
            job_type: None,
            complexity: None,
            endpoint: "",
            model_requested: None,
            stream: false,
            selection: None,
            tries: Vec::new(),
            error: None,
            prompt: None,
            answer: None,
            debug: false,
            rate_limit: None,
            cache_hit: false,
            _in_flight: None,
        }
    }
}

#[async_trait]
impl ProxyHttp for HermesProxy {
    type CTX = Exchange;

    fn new_ctx(&self) -> Exchange {
        Exchange::new()
    }

    async fn request_filter(&self, session: &mut Session, ex: &mut Exchange) -> Result<bool> {
        let gateway = self.live.current();
        ex._in_flight = Some(gateway.enter());
        dispatch::handle(&gateway, &self.live, session, ex).await;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ex: &mut Exchange) -> Result<Box<HttpPeer>> {
        // Never reached: request_filter answers every request.
        Err(Error::new(ErrorType::InternalError))
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ex: &mut Exchange) {
        let Some(gateway) = ex._in_flight.as_ref().map(|f| f.gateway().clone()) else { return };
        if !ex.routed {
            return;
        }
        let backend = ex.backend.and_then(|i| gateway.config.backends.get(i)).map(|b| b.name.as_str()).unwrap_or("none");
        let total = ex.started.elapsed();
        // One line per API request; never headers or bodies (keys, prompts).
        log::info!(
            "{} {} {} status={} backend={} model={:?} attempts={} ms={:.1}",
            ex.request_id,
            session.req_header().method,
            session.req_header().uri.path(),
            ex.status,
            backend,
            ex.model.as_deref().unwrap_or("-"),
            ex.attempts,
            total.as_secs_f64() * 1000.0
        );
        telemetry::record_request(&RequestRecord {
            backend,
            model: gateway.model_label(ex.model.as_deref()),
            job_type: ex.job_type.map_or("none", JobType::as_str),
            status: ex.status,
            total,
            overhead: total.saturating_sub(ex.upstream_time),
            ttft: ex.ttft,
            tokens: ex.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            cost_cents: ex.cost_cents,
        });
        outcome::remember(&gateway, ex, total);
    }
}

/// The response head every answer starts from: status plus Hermes's own headers.
pub fn response_head(gateway: &Gateway, ex: &Exchange, status: u16) -> Option<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(8)).ok()?;
    let backend = ex.backend.and_then(|i| gateway.config.backends.get(i)).map(|b| b.name.as_str()).unwrap_or("none");
    h.insert_header("x-hermes-request-id", ex.request_id.as_str()).ok()?;
    h.insert_header("x-hermes-backend", backend).ok()?;
    h.insert_header("x-hermes-attempts", ex.attempts.to_string()).ok()?;
    if let Some(m) = &ex.model {
        let _ = h.insert_header("x-hermes-model", m.as_str());
    }
    if let Some(j) = ex.job_type {
        let _ = h.insert_header("x-hermes-job-type", j.as_str());
    }
    if let (true, Some(reason)) = (ex.debug, ex.selection.as_ref().map(|s| &s.reasoning)) {
        // Header values must be visible ASCII: the reason's ¢ becomes "c".
        let ascii: String = reason.chars().map(|c| if c == '¢' { 'c' } else if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect();
        let _ = h.insert_header("x-hermes-route-reason", ascii);
    }
    if let Some((limit, remaining)) = ex.rate_limit {
        let _ = h.insert_header("x-ratelimit-limit-requests", limit.to_string());
        let _ = h.insert_header("x-ratelimit-remaining-requests", remaining.to_string());
    }
    if ex.cache_hit {
        let _ = h.insert_header("x-hermes-cache", "hit");
    }
    Some(h)
}

/// A whole answer in one go.
pub async fn send_whole(session: &mut Session, ex: &mut Exchange, status: u16, mut head: ResponseHeader, body: Bytes) {
    ex.status = status;
    let _ = head.insert_header("content-length", body.len().to_string());
    if session.write_response_header(Box::new(head), false).await.is_ok() {
        let _ = session.write_response_body(Some(body), true).await;
    }
}

pub async fn send_json(gateway: &Gateway, session: &mut Session, ex: &mut Exchange, status: u16, body: Bytes) {
    let Some(mut head) = response_head(gateway, ex, status) else { return };
    let _ = head.insert_header("content-type", "application/json");
    send_whole(session, ex, status, head, body).await;
}

pub async fn send_error(gateway: &Gateway, session: &mut Session, ex: &mut Exchange, err: &ApiError) {
    if ex.routed {
        ex.error = Some(err.message.clone());
    }
    let Some(mut head) = response_head(gateway, ex, err.status) else { return };
    let _ = head.insert_header("content-type", "application/json");
    if let Some(s) = err.retry_after {
        let _ = head.insert_header("retry-after", s.to_string());
        if err.status == 429 {
            let _ = head.insert_header("x-ratelimit-reset-requests", format!("{s}s"));
        }
    }
    if err.status == 413 || err.status == 408 {
        // The body was never read: the connection cannot be reused.
        let _ = head.insert_header("connection", "close");
        session.set_keepalive(None);
    }
    send_whole(session, ex, err.status, head, err.body()).await;
}

/// The request body, refused with 413 from Content-Length alone when it is too large.
/// A client has `within` to send its whole body; one that trickles or stalls frees its slot.
pub async fn read_body(session: &mut Session, limit: usize, within: Duration) -> Result<Bytes, ApiError> {
    let deadline = tokio::time::Instant::now() + within;
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::body_too_large(limit));
    }
    let expects_continue = session
        .req_header()
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        let _ = session.write_continue_response().await;
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    loop {
        let Ok(read) = tokio::time::timeout_at(deadline, session.read_request_body()).await else {
            session.set_keepalive(None);
            return Err(ApiError::request_timeout(within));
        };
        match read {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::body_too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(_) => return Err(ApiError::bad_request("The request body could not be read.", None)),
        }
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(session: &Session) -> Option<&str> {
    let v = session.req_header().headers.get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim)
}
