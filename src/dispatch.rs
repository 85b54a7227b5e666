//! One request from arrival to answer: path, auth, body, plan, then the attempt loop that fails
//! over between backends and relays the winner's answer (streams chunk by chunk).

use crate::learn::{Band, Served};
use crate::admin;
use crate::analytics::record::{AttemptRecord, SelectionRecord};
use crate::backends::{AttemptError, Call, Reply};
use crate::gateway::{Gateway, Live};
use crate::openai::{self, ApiError, ApiRequest, Endpoint};
use crate::proxy::{bearer, read_body, response_head, send_error, send_whole, Exchange};
use crate::cache::CachedAnswer;
use crate::config::Criteria;
use crate::limits::ClientVerdict;
use crate::route::{retry, Ask};
use crate::shadow::{answer_text, Primary};
use crate::sse::{usage_from_json, SseScanner};
use crate::telemetry;
use bytes::Bytes;
use futures_util::StreamExt;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout_at;

pub async fn handle(gateway: &Arc<Gateway>, live: &Live, session: &mut Session, ex: &mut Exchange) {
    let method = session.req_header().method.as_str().to_string();
    let path = session.req_header().uri.path().to_string();
    let endpoint = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/chat/completions") => Endpoint::ChatCompletions,
        ("POST", "/v1/embeddings") => Endpoint::Embeddings,
        ("GET", "/health") => return admin::health(gateway, session, ex).await,
        ("GET", "/metrics") => return admin::metrics(gateway, session, ex).await,
        ("GET", "/v1/models") => {
            if let Err(e) = authorize(gateway, session) {
                return send_error(gateway, session, ex, &e).await;
            }
            return admin::models(gateway, session, ex).await;
        }
        ("POST", "/feedback") => {
            if let Err(e) = authorize(gateway, session) {
                return send_error(gateway, session, ex, &e).await;
            }
            return admin::feedback(gateway, session, ex).await;
        }
        ("GET", "/admin/backends")
        | ("POST", "/admin/reload")
        | ("GET", "/admin/stats")
        | ("POST", "/admin/compare")
        | ("GET", "/admin/migration")
        | ("POST", "/admin/migration") => {
            if let Err(e) = admin::authorize(gateway, session) {
                return send_error(gateway, session, ex, &e).await;
            }
            return match path.as_str() {
                "/admin/reload" => admin::reload(gateway, live, session, ex).await,
                "/admin/stats" => admin::stats(gateway, session, ex).await,
                "/admin/compare" => admin::compare(gateway, session, ex).await,
                "/admin/migration" if method == "GET" => admin::migration(gateway, session, ex).await,
                "/admin/migration" => admin::steer(gateway, session, ex).await,
                _ => admin::backends(gateway, session, ex).await,
            };
        }
        (
            _,
            "/v1/chat/completions" | "/v1/embeddings" | "/v1/models" | "/health" | "/metrics" | "/feedback" | "/admin/backends" | "/admin/reload"
            | "/admin/stats" | "/admin/compare" | "/admin/migration",
        ) => {
            return send_error(gateway, session, ex, &ApiError::method_not_allowed(&method, &path)).await
        }
        _ => return send_error(gateway, session, ex, &ApiError::unknown_path(&method, &path)).await,
    };
    ex.routed = true;
    ex.endpoint = endpoint.path();
    if let Err(e) = forward(gateway, session, ex, endpoint).await {
        send_error(gateway, session, ex, &e).await;
    }
}

/// `Authorization: Bearer <key>` against HERMES_API_KEYS; open when none are configured.
fn authorize(gateway: &Gateway, session: &Session) -> Result<(), ApiError> {
    let keys = &gateway.config.api_keys;
    if keys.is_empty() {
        return Ok(());
    }
    match bearer(session) {
        // Every key is compared, each in constant time.
        Some(p) if keys.iter().fold(false, |found, k| k.matches(p) | found) => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

/// Why an attempt did not produce the answer, for the failover metric and the final 502.
struct Failure {
    reason: &'static str,
    detail: String,
    /// The backend's retry-after, when it answered 429.
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(reason: &'static str, detail: impl Into<String>) -> Failure {
        Failure { reason, detail: detail.into(), retry_after: None }
    }
}

/// The per-request routing hints a client may send.
struct Hints {
    criteria: Option<Criteria>,
    budget_cents: Option<f64>,
    local_only: bool,
    pinned: Option<String>,
}

fn hints(session: &Session) -> Result<Hints, ApiError> {
    let criteria = match header(session, "x-hermes-criteria") {
        None => None,
        Some(v) => Some(Criteria::parse(&v).ok_or_else(|| ApiError::bad_request(format!("x-hermes-criteria: '{v}' is not cost_first, quality_first or speed_first."), None))?),
    };
    let budget_cents = match header(session, "x-hermes-budget-cents") {
        None => None,
        Some(v) => Some(v.parse::<f64>().ok().filter(|b| b.is_finite() && *b >= 0.0).ok_or_else(|| ApiError::bad_request(format!("x-hermes-budget-cents: '{v}' is not a number of cents."), None))?),
    };
    let local_only = match header(session, "x-hermes-privacy").as_deref() {
        None => false,
        Some("local") => true,
        Some(v) => return Err(ApiError::bad_request(format!("x-hermes-privacy: '{v}' is not `local`."), None)),
    };
    Ok(Hints { criteria, budget_cents, local_only, pinned: header(session, "x-hermes-backend") })
}

/// HERMES_CLIENT_RATE_LIMIT, per client key (per address when the gateway is open).
fn client_limit(gateway: &Gateway, session: &Session, ex: &mut Exchange) -> Result<(), ApiError> {
    // Keyed by client key; on an open gateway any token would do, so by address instead.
    let address = || session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_string()).unwrap_or_default();
    let key = if gateway.config.api_keys.is_empty() { address() } else { bearer(session).map(str::to_string).unwrap_or_else(address) };
    match gateway.limits.client(&key) {
        ClientVerdict::Unlimited => Ok(()),
        ClientVerdict::Allowed { limit, remaining } => {
            ex.rate_limit = Some((limit, remaining));
            Ok(())
        }
        ClientVerdict::Refused { limit, retry_after } => {
            ex.rate_limit = Some((limit, 0));
            metrics::counter!("hermes_rate_limited_total", "scope" => "client").increment(1);
            Err(ApiError::rate_limited(format!("Rate limit of {limit} requests per minute reached for this client."), retry_after.as_secs_f64().ceil() as u64))
        }
    }
}

async fn forward(gateway: &Arc<Gateway>, session: &mut Session, ex: &mut Exchange, endpoint: Endpoint) -> Result<(), ApiError> {
    authorize(gateway, session)?;
    client_limit(gateway, session, ex)?;
    let hints = hints(session)?;
    ex.debug = header(session, "x-hermes-debug").is_some_and(|v| v != "0" && v != "false");
    let raw = read_body(session, gateway.config.max_body_bytes, gateway.config.body_read_timeout).await?;
    let request = openai::parse_request(endpoint, &raw)?;
    ex.model_requested = Some(request.model.clone());
    ex.stream = request.stream;
    if gateway.config.log_content {
        ex.prompt = request.body.get("messages").or_else(|| request.body.get("input")).map(|v| v.to_string());
    }
    let job = gateway.classify(&request, &ex.request_id);
    crate::outcome::implicit_feedback(gateway, &request, &ex.request_id);
    ex.job_type = Some(job.job_type);
    ex.complexity = Some(job.complexity);
    let routing = &gateway.config.routing;
    let local_only = hints.local_only || job.personal_data.is_some();
    let ask = Ask {
        model: &request.model,
        job: &job,
        criteria: hints.criteria.unwrap_or(routing.criteria),
        criteria_requested: hints.criteria.is_some(),
        budget_cents: hints.budget_cents.map_or(routing.max_cost_per_job_cents, |b| b.min(routing.max_cost_per_job_cents)),
        local_only,
        pinned: hints.pinned.as_deref(),
    };
    let decision = gateway.decide(&ask).inspect_err(|e| {
        if e.status == 402 {
            metrics::counter!("hermes_budget_rejections_total").increment(1);
        }
    })?;
    let name = |i: usize| gateway.config.backends[i].name.clone();
    ex.selection = Some(SelectionRecord {
        criteria: ask.criteria.as_str(),
        candidates: decision.candidates.iter().map(|c| (name(c.backend), c.model.clone(), c.estimated_cost_cents)).collect(),
        reasoning: decision.reason,
        confidence: decision.confidence,
        rejected: decision.rejected,
    });

    let cache_key = gateway.cache.key(&request, &raw, &[hints.pinned.as_deref(), hints.criteria.map(Criteria::as_str), local_only.then_some("local")]);
    if let Some(hit) = match cache_key {
        Some(k) => gateway.cache.get(k).await,
        None => None,
    } {
        ex.backend = Some(hit.backend);
        ex.model = Some(hit.model.clone());
        ex.cache_hit = true;
        let Some(mut head) = response_head(gateway, ex, 200) else { return Ok(()) };
        let _ = head.insert_header("content-type", hit.content_type.as_str());
        send_whole(session, ex, 200, head, hit.body.clone()).await;
        return Ok(());
    }

    let policy = &gateway.config.failover;
    let max_attempts = if policy.enabled { policy.max_attempts as usize } else { 1 };
    let mut tried: Vec<String> = Vec::new();
    let mut rate_limited = 0;
    let mut previous: Option<(usize, &'static str)> = None;
    // When every backend tried was busy (429), the client hears 429 and the soonest retry-after.
    let mut all_busy = true;
    let mut soonest_retry: Option<Duration> = None;
    let mut relay = Relay { cache_key, shadow: None };
    // HERMES_MAX_RESPONSE_TIME_SECONDS bounds the whole wait, failovers and pauses included.
    let limit = gateway.config.routing.max_response_time;
    let answer_by = limit.map(|d| tokio::time::Instant::from_std(ex.started + d));
    let mut out_of_time = false;
    for candidate in &decision.candidates {
        if ex.attempts as usize >= max_attempts {
            break;
        }
        let Some(backend) = gateway.registry.get(candidate.backend) else { continue };
        let cfg = backend.config();
        if !gateway.limits.backend_allows(candidate.backend) {
            rate_limited += 1;
            metrics::counter!("hermes_rate_limited_total", "scope" => "backend").increment(1);
            tried.push(format!("{} (over its BACKEND_{}_RATE_LIMIT)", cfg.name, cfg.name.to_ascii_uppercase()));
            continue;
        }
        if let Some((from, reason)) = previous {
            let pause = retry::backoff(ex.attempts + 1, gateway.config.policies.backoff_base, policy.max_delay);
            let resume = tokio::time::Instant::now() + pause;
            if answer_by.is_some_and(|by| resume >= by) {
                out_of_time = true;
                break;
            }
            telemetry::record_failover(&gateway.config.backends[from].name, &cfg.name, reason);
            tokio::time::sleep_until(resume).await;
        }
        ex.attempts += 1;
        ex.backend = Some(candidate.backend);
        // Known to the learner before anything is sent: a rating may come with the first byte.
        let expected = Served::new(job.job_type, Some(Band::of(job.complexity)), &cfg.name, gateway.model_label(Some(&candidate.model)));
        gateway.learner().expect(&ex.request_id, expected);
        ex.model = Some(candidate.model.clone());
        relay.shadow = crate::shadow::pick(gateway, candidate.backend, local_only);
        let began = Instant::now();
        let own_deadline = tokio::time::Instant::from_std(began + cfg.timeout);
        let deadline = answer_by.map_or(own_deadline, |by| by.min(own_deadline));
        gateway.backend_started(candidate.backend, 1);
        let call = Call { request: &request, body: request.body_for(&raw, &candidate.model), model: &candidate.model };
        let outcome = match timeout_at(deadline, backend.send(call)).await {
            Err(_) if deadline == own_deadline => {
                Err(mark_failed(gateway, candidate.backend, Failure::new("timeout", format!("timed out after {}s", cfg.timeout.as_secs_f64()))))
            }
            Err(_) => Err(mark_failed(gateway, candidate.backend, Failure::new("timeout", format!("cut off at the response time limit after {:.1}s", began.elapsed().as_secs_f64())))),
            Ok(Err(e)) => Err(mark_failed(gateway, candidate.backend, failure_of(&e))),
            Ok(Ok(reply)) => deliver(gateway, session, ex, &request, reply, deadline, candidate.backend, &relay).await,
        };
        gateway.backend_started(candidate.backend, -1);
        ex.upstream_time += began.elapsed();
        ex.tries.push(attempt_record(ex, &cfg.name, &candidate.model, began.elapsed(), outcome.as_ref().err()));
        match outcome {
            Ok(()) => return Ok(()),
            Err(f) => {
                log::info!("{} attempt {} on {} failed: {}", ex.request_id, ex.attempts, cfg.name, f.detail);
                all_busy &= f.reason == "rate_limited";
                if let Some(wait) = f.retry_after {
                    soonest_retry = Some(soonest_retry.map_or(wait, |s| s.min(wait)));
                }
                tried.push(format!("{} ({})", cfg.name, f.detail));
                previous = Some((candidate.backend, f.reason));
            }
        }
    }
    if ex.attempts == 0 && rate_limited > 0 {
        return Err(ApiError::rate_limited(format!("Every backend that could answer is at its rate limit: {}.", tried.join("; ")), 60));
    }
    if let Some(limit) = limit.filter(|_| out_of_time || answer_by.is_some_and(|by| tokio::time::Instant::now() >= by)) {
        let mut e = ApiError::no_backend_answered(&tried, true);
        e.message = format!("No backend answered within HERMES_MAX_RESPONSE_TIME_SECONDS ({}s); tried: {}.", limit.as_secs_f64(), tried.join("; "));
        return Err(e);
    }
    if ex.attempts > 0 && all_busy {
        let wait = soonest_retry.map_or(1, |d| d.as_secs_f64().ceil() as u64);
        return Err(ApiError::rate_limited(format!("Every backend that could answer is busy: {}.", tried.join("; ")), wait));
    }
    Err(ApiError::no_backend_answered(&tried, !tried.is_empty()))
}

/// One try for the analytics: the answer's status, or the failure. A request's own 4xx, a busy
/// 429 and a client that left say nothing about the backend (success is None).
fn attempt_record(ex: &Exchange, backend: &str, model: &str, elapsed: Duration, failure: Option<&Failure>) -> AttemptRecord {
    let (status, success, error, ttft) = match failure {
        Some(f) => (None, (f.reason != "rate_limited").then_some(false), Some(f.detail.clone()), None),
        None => {
            let success = match ex.status {
                200..=299 => Some(true),
                400..=499 => None,
                _ => Some(false),
            };
            (Some(ex.status), success, ex.error.clone(), ex.ttft)
        }
    };
    AttemptRecord {
        backend: backend.to_string(),
        model: model.to_string(),
        elapsed,
        ttft,
        status,
        success,
        error,
        tokens: failure.is_none().then(|| ex.usage.map(|u| u.prompt_tokens + u.completion_tokens)).flatten(),
        cost_cents: if failure.is_none() { ex.cost_cents } else { None },
    }
}

/// What the relay of a winning answer needs beyond the answer itself.
struct Relay {
    cache_key: Option<u64>,
    shadow: Option<usize>,
}

fn failure_of(e: &AttemptError) -> Failure {
    let reason = match e {
        AttemptError::Connect => "connect",
        AttemptError::Broken(_) => "broken",
    };
    Failure::new(reason, e.to_string())
}

/// The backend answered. A failing-over status or a body that never came is a failure (nothing
/// has reached the client yet); anything else is relayed and the request is done.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    gateway: &Arc<Gateway>,
    session: &mut Session,
    ex: &mut Exchange,
    request: &ApiRequest,
    mut reply: Reply,
    deadline: tokio::time::Instant,
    backend: usize,
    relay: &Relay,
) -> Result<(), Failure> {
    let ok = (200..300).contains(&reply.status);
    if retry::status_fails_over(reply.status, &gateway.config.policies.retry_on_status) {
        // 429 means busy, not broken: only server errors count against health. A busy backend
        // is left alone for as long as its retry-after asks.
        if reply.status >= 500 {
            gateway.record_outcome(backend, false);
        }
        let retry_after = retry::retry_after(&reply.headers);
        if let Some(wait) = retry_after {
            gateway.health.rest(backend, wait);
        }
        let excerpt = match timeout_at(deadline, reply.bytes()).await {
            Ok(Ok(body)) => upstream_message(&body),
            _ => String::new(),
        };
        let reason = if reply.status == 429 { "rate_limited" } else { "status_5xx" };
        return Err(Failure { reason, detail: format!("HTTP {}{excerpt}", reply.status), retry_after });
    }
    if let Some(why) = backend_fault(gateway, backend, reply.status, ex.model.as_deref()) {
        // The backend, not the request, is at fault: its body (which may quote its key) stays here.
        return Err(mark_failed(gateway, backend, Failure::new("backend_refused", format!("HTTP {}: {why}", reply.status))));
    }
    if ok && request.stream {
        // Nothing is committed to the client until a first data event: comments, keep-alives
        // and errors before it still fail over.
        let mut scanner = SseScanner::default();
        if relay.shadow.is_some() || gateway.config.log_content {
            scanner.text = Some(String::new());
        }
        let mut held = Vec::new();
        while scanner.data_events == 0 {
            match timeout_at(deadline, reply.body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    scanner.feed(&chunk);
                    held.push(chunk);
                }
                Ok(Some(Err(e))) => return Err(mark_failed(gateway, backend, failure_of(&e))),
                Ok(None) => return Err(mark_failed(gateway, backend, Failure::new("broken", "the stream ended before any data"))),
                Err(_) => return Err(mark_failed(gateway, backend, Failure::new("timeout", "no data before the timeout"))),
            }
            if let Some(e) = scanner.error.take() {
                return Err(mark_failed(gateway, backend, Failure::new("broken", format!("error event: {e}"))));
            }
        }
        gateway.record_outcome(backend, true);
        relay_stream(gateway, session, ex, request, reply, held, scanner, backend, relay).await;
        return Ok(());
    }
    let body = match timeout_at(deadline, reply.bytes()).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return Err(mark_failed(gateway, backend, failure_of(&e))),
        Err(_) => return Err(mark_failed(gateway, backend, Failure::new("timeout", "answer not complete before the timeout"))),
    };
    if !ok {
        // The request's own fault (a 4xx): neutral for health; the body is kept in OpenAI's shape.
        let body = openai_shaped(reply.status, body);
        let Some(mut head) = relay_head(gateway, ex, &reply) else { return Ok(()) };
        let _ = head.insert_header("content-type", "application/json");
        send_whole(session, ex, reply.status, head, body).await;
        return Ok(());
    }
    gateway.record_outcome(backend, true);
    account(gateway, ex, usage_from_json(&body));
    if gateway.config.log_content {
        ex.answer = Some(answer_text(&body));
    }
    if let Some(key) = relay.cache_key {
        let content_type = reply.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
        let answer = CachedAnswer { backend, model: ex.model.clone().unwrap_or_default(), content_type, body: body.clone() };
        gateway.cache.put(key, answer).await;
    }
    if let Some(shadow) = relay.shadow {
        let primary = Primary { backend: gateway.config.backends[backend].name.clone(), status: reply.status, elapsed: ex.started.elapsed(), text: answer_text(&body) };
        crate::shadow::spawn(gateway.clone(), request.clone(), shadow, ex.request_id.clone(), primary);
    }
    let Some(mut head) = relay_head(gateway, ex, &reply) else { return Ok(()) };
    if let Some(cost) = ex.cost_cents {
        let _ = head.insert_header("x-hermes-cost-cents", format!("{cost:.6}"));
    }
    send_whole(session, ex, reply.status, head, body).await;
    Ok(())
}

/// nginx's code for a client that left before the answer was complete.
const CLIENT_CLOSED: u16 = 499;

/// Answers that say the backend, not the request, is broken: redirects (never followed), refused
/// credentials, and "no such model" for a model it lists.
fn backend_fault(gateway: &Gateway, backend: usize, status: u16, model: Option<&str>) -> Option<&'static str> {
    match status {
        300..=399 => Some("the backend redirected; redirects are not followed"),
        401 | 403 | 407 => Some("the backend refused Hermes's credentials (check BACKEND_<NAME>_API_KEY)"),
        404 if model.is_some_and(|m| gateway.catalog.models(backend).iter().any(|x| x == m)) => {
            Some("the backend does not have a model it is configured to serve")
        }
        _ => None,
    }
}

/// A 4xx body in OpenAI's error shape: kept as is when it already is, wrapped otherwise.
fn openai_shaped(status: u16, body: Bytes) -> Bytes {
    let shaped = serde_json::from_slice::<serde_json::Value>(&body).ok().is_some_and(|v| v.get("error").is_some_and(|e| e.is_object()));
    if shaped {
        return body;
    }
    let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
    let mut e = ApiError::bad_request(format!("The backend refused the request: {}", text.trim()), None);
    e.status = status;
    e.body()
}

fn mark_failed(gateway: &Gateway, backend: usize, f: Failure) -> Failure {
    gateway.record_outcome(backend, false);
    f
}

/// The upstream's own status and headers, minus hop-by-hop ones, plus Hermes's.
fn relay_head(gateway: &Gateway, ex: &Exchange, reply: &Reply) -> Option<ResponseHeader> {
    let mut head = response_head(gateway, ex, reply.status)?;
    for (name, value) in &reply.headers {
        let n = name.as_str();
        let hop = matches!(
            n,
            "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "te" | "trailer" | "upgrade" | "proxy-connection"
        );
        // What identifies the upstream account stays behind: cookies, organisation and project
        // ids, and the account's own rate-limit budget.
        let private = matches!(n, "set-cookie" | "openai-organization" | "openai-project" | "anthropic-organization-id")
            || n.starts_with("x-ratelimit-")
            || n.starts_with("anthropic-ratelimit-");
        if !hop && !private && !n.starts_with("x-hermes-") {
            let _ = head.append_header(name.clone(), value.clone());
        }
    }
    Some(head)
}

/// Relay a stream as it arrives. After the first byte there is no failover: a break becomes an
/// SSE `error` event so the client never mistakes a cut answer for a whole one.
#[allow(clippy::too_many_arguments)]
async fn relay_stream(
    gateway: &Arc<Gateway>,
    session: &mut Session,
    ex: &mut Exchange,
    request: &ApiRequest,
    mut reply: Reply,
    held: Vec<Bytes>,
    mut scanner: SseScanner,
    backend: usize,
    relay: &Relay,
) {
    ex.status = reply.status;
    let Some(mut head) = relay_head(gateway, ex, &reply) else { return };
    let _ = head.insert_header("transfer-encoding", "chunked");
    if session.write_response_header(Box::new(head), false).await.is_err() {
        return;
    }
    ex.ttft = Some(ex.started.elapsed());
    for chunk in held {
        if session.write_response_body(Some(chunk), false).await.is_err() {
            ex.status = CLIENT_CLOSED;
            return;
        }
    }
    let idle = gateway.config.backends[backend].timeout;
    let broke = loop {
        match tokio::time::timeout(idle, reply.body.next()).await {
            Ok(Some(Ok(chunk))) => {
                scanner.feed(&chunk);
                if session.write_response_body(Some(chunk), false).await.is_err() {
                    // The client left; dropping the upstream body cancels the backend's work.
                    account(gateway, ex, scanner.usage);
                    ex.status = CLIENT_CLOSED;
                    return;
                }
                if let Some(e) = scanner.error.take() {
                    break Some(format!("the backend sent an error event: {e}"));
                }
            }
            Ok(None) if scanner.saw_done => break None,
            Ok(None) => break Some("the backend closed the stream before [DONE]".to_string()),
            Ok(Some(Err(e))) => break Some(e.to_string()),
            Err(_) => break Some(format!("no data for {}s", idle.as_secs_f64())),
        }
    };
    account(gateway, ex, scanner.usage);
    if let Some(why) = broke {
        ex.status = 502;
        gateway.record_outcome(backend, false);
        let name = &gateway.config.backends[backend].name;
        log::warn!("{} stream from {name} broke after the first byte: {why}", ex.request_id);
        ex.error = Some(format!("the stream broke after the first byte: {why}"));
        let err = ApiError {
            status: 502,
            message: format!("The stream from backend {name} broke off: {why}."),
            kind: "api_error",
            param: None,
            code: Some("stream_interrupted"),
            retry_after: None,
        };
        let event = format!("event: error\ndata: {}\n\n", err.to_value());
        let _ = session.write_response_body(Some(Bytes::from(event)), false).await;
    } else if let Some(shadow) = relay.shadow {
        let text = scanner.text.clone().unwrap_or_default();
        let primary = Primary { backend: gateway.config.backends[backend].name.clone(), status: reply.status, elapsed: ex.started.elapsed(), text };
        crate::shadow::spawn(gateway.clone(), request.clone(), shadow, ex.request_id.clone(), primary);
    }
    if gateway.config.log_content {
        ex.answer = scanner.text.take();
    }
    let _ = session.write_response_body(None, true).await;
}

/// Tokens and cost from the upstream's usage report.
fn account(gateway: &Gateway, ex: &mut Exchange, usage: Option<crate::sse::Usage>) {
    let (Some(u), Some(i), Some(model)) = (usage, ex.backend, ex.model.as_deref()) else { return };
    ex.usage = Some(u);
    let price = gateway.config.price(&gateway.config.backends[i], model);
    ex.cost_cents = Some(price.cost_cents(u.prompt_tokens, u.completion_tokens));
}

/// `: message` from an OpenAI-shaped error body, short, for the client's 502.
fn upstream_message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let msg = v["error"]["message"].as_str().or_else(|| v["message"].as_str()).unwrap_or("");
    if msg.is_empty() {
        String::new()
    } else {
        format!(": {}", msg.chars().take(200).collect::<String>())
    }
}

fn header(session: &Session, name: &str) -> Option<String> {
    session.req_header().headers.get(name).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}
