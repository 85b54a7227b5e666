//! The request's way to an answer: read and check the body, classify, plan, then try the
//! candidates in order. Before the first byte reaches the client any failure fails over (what
//! counts as one, and what comes next, is `decide::route::retry`); a client that leaves cancels.

use super::admit::{authorize, client_limit, client_of, hint, hints};
use super::answer::{response_head, send_error, send_whole};
use super::exchange::Exchange;
use super::relay::{relay_answer, Received, Relay, CLIENT_CLOSED};
use super::timer;
use super::Downstream;
use crate::backends::reply::{AttemptError, Reply};
use crate::backends::sse::SseScanner;
use crate::backends::Call;
use crate::decide::route::retry::{self, Next, Reason};
use crate::decide::route::Ask;
use crate::doors::openai::{ApiRequest, Endpoint};
use crate::doors::DoorKind;
use crate::error::{ApiError, Kind};
use crate::state::analytics::record::{AttemptRecord, SelectionRecord};
use crate::state::config::Criteria;
use crate::state::gateway::Gateway;
use crate::state::learn::{Band, Served};
use crate::state::telemetry;
use futures_util::StreamExt;
use opentelemetry::KeyValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An API call (chat completions, embeddings, responses, messages): the answer, or the error,
/// in the shape of the door it came in by.
pub async fn serve<D: Downstream>(gateway: &Arc<Gateway>, down: &mut D, ex: &mut Exchange, endpoint: Endpoint, door: DoorKind) {
    ex.routed = true;
    ex.door = door;
    ex.endpoint = match door {
        DoorKind::OpenAi => endpoint.path(),
        DoorKind::Responses => "/responses",
        DoorKind::Messages => "/messages",
    };
    ex.trace = super::traced::RequestTrace::start(down, ex.started);
    if let Err(e) = forward(gateway, down, ex, endpoint).await {
        send_error(gateway, down, ex, &e).await;
    }
}

/// How many backends one request may try.
fn max_attempts(gateway: &Gateway) -> usize {
    let policy = &gateway.config.failover;
    if policy.enabled {
        policy.max_attempts as usize
    } else {
        1
    }
}

async fn forward<D: Downstream>(gateway: &Arc<Gateway>, down: &mut D, ex: &mut Exchange, endpoint: Endpoint) -> Result<(), ApiError> {
    ex.caller = authorize(gateway, down).await?;
    ex.client = client_of(&ex.caller, down);
    super::keyed::requests(gateway, &ex.caller)?;
    client_limit(gateway, down, ex).await?;
    let hints = hints(down)?;
    ex.debug = hint(down, "x-hermes-debug")?.is_some_and(|v| v != "0" && v != "false");
    let raw = down.read_body(gateway.config.max_body_bytes, gateway.config.body_read_timeout).await?;
    let owner = || crate::state::responses::owner(down.client_key());
    let earlier = |id: &str| gateway.shared.responses.get(id, &owner()).map(|s| s.conversation.clone());
    let request = crate::doors::decode(ex.door, endpoint, &raw, &ex.request_id, earlier)?;
    ex.model_requested = Some(request.model.clone());
    ex.stream = request.stream;
    if gateway.config.log_content {
        ex.prompt = request.body.get("messages").or_else(|| request.body.get("input")).map(|v| v.to_string());
    }
    let classifying = Instant::now();
    let job = gateway.classify(&request, &ex.request_id);
    if let Some(t) = &ex.trace {
        let personal = job.personal_data.is_some();
        t.stage("hermes.classify", classifying, || {
            vec![
                KeyValue::new("hermes.job_type", job.job_type.as_str()),
                KeyValue::new("hermes.complexity", job.complexity),
                KeyValue::new("hermes.personal_data", personal),
            ]
        });
    }
    super::record::implicit_feedback(gateway, &request, &ex.request_id);
    ex.job_type = Some(job.job_type);
    ex.complexity = Some(job.complexity);
    let keyed = ex.caller.key().cloned();
    let key = keyed.as_deref().map(|k| &k.spec);
    if let Some(k) = key {
        super::keyed::admit(gateway, ex, k, &request.model, job.prompt_tokens)?;
    }
    let routing = &gateway.config.routing;
    let local_only = hints.local_only || job.personal_data.is_some() || key.is_some_and(|k| k.privacy_local);
    let ask = Ask {
        model: &request.model,
        job: &job,
        criteria: hints.criteria.unwrap_or(routing.criteria),
        criteria_requested: hints.criteria.is_some(),
        budget_cents: hints.budget_cents.map_or(routing.max_cost_per_job_cents, |b| b.min(routing.max_cost_per_job_cents)),
        local_only,
        pinned: hints.pinned.as_deref(),
    };
    let routing_began = Instant::now();
    let decision = match (gateway.decide(&ask), key) {
        (Ok(d), Some(k)) => super::keyed::plan(gateway, ex, k, &ask, d, max_attempts(gateway), job.prompt_tokens).await,
        (decided, _) => decided,
    };
    let decision = decision.inspect_err(|e| {
        if e.status() == 402 {
            metrics::counter!("hermes_budget_rejections_total").increment(1);
        }
    })?;
    if let Some(t) = &ex.trace {
        t.stage("hermes.route", routing_began, || {
            vec![
                KeyValue::new("hermes.criteria", ask.criteria.as_str()),
                KeyValue::new("hermes.candidates", decision.candidates.len() as i64),
                KeyValue::new("hermes.local_only", local_only),
            ]
        });
    }
    let name = |i: usize| gateway.config.backends[i].name.clone();
    ex.selection = Some(SelectionRecord {
        criteria: ask.criteria.as_str(),
        candidates: decision.candidates.iter().map(|c| (name(c.backend), c.model.clone(), c.estimated_cost_cents)).collect(),
        reasoning: decision.reason,
        confidence: decision.confidence,
        rejected: decision.rejected,
    });

    // The client's digest is part of the key: one tenant's answer is never another's hit.
    let cache_key = gateway.cache.key(
        &request,
        &raw,
        &[hints.pinned.as_deref(), hints.criteria.map(Criteria::as_str), local_only.then_some("local"), ex.client.as_deref()],
    );
    if let Some(hit) = match cache_key {
        Some(k) => gateway.cache.get(k).await,
        None => None,
    } {
        ex.backend = Some(hit.backend);
        ex.model = Some(hit.model.clone());
        ex.cache_hit = true;
        let mut head = response_head(gateway, ex, 200);
        head.set("content-type", &hit.content_type);
        let body = super::relay::door_body(gateway, down, &request, hit.body.clone(), &hit.model)?;
        send_whole(down, ex, head, body).await;
        return Ok(());
    }

    // What an Anthropic backend takes unchanged from a Messages request.
    let passed: Vec<(&'static str, String)> = match ex.door {
        DoorKind::Messages => ["anthropic-version", "anthropic-beta"].into_iter().filter_map(|h| hint(down, h).ok().flatten().map(|v| (h, v))).collect(),
        _ => Vec::new(),
    };
    // Without traces of its own, Hermes passes the client's trace context on unchanged.
    let client_trace = if ex.trace.is_none() { super::traced::passed_through(down) } else { Vec::new() };
    let operation = super::traced::operation(ex.endpoint);
    let policy = &gateway.config.failover;
    let max_attempts = max_attempts(gateway);
    let mut tried: Vec<String> = Vec::new();
    let mut rate_limited = 0;
    let mut previous: Option<(usize, Reason)> = None;
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
        // A migration may have drained it since the plan was made: it takes nothing new.
        if gateway.shared.helm.drains(&cfg.name) {
            continue;
        }
        if !backend_allows(gateway, candidate.backend, &cfg.name).await {
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
            telemetry::record_failover(&gateway.config.backends[from].name, &cfg.name, reason.as_str());
            tokio::time::sleep_until(resume).await;
        }
        // Counted at the backend before the drain is read again: a migration drains a backend,
        // then waits for its count to reach zero, so either it sees this request or this request
        // sees the drain (also one that came during a pause above).
        gateway.backend_started(candidate.backend, 1);
        if gateway.shared.helm.drains(&cfg.name) {
            gateway.backend_started(candidate.backend, -1);
            continue;
        }
        ex.attempts += 1;
        ex.backend = Some(candidate.backend);
        // Known to the learner before anything is sent: a rating may come with the first byte.
        let expected = Served::new(job.job_type, Some(Band::of(job.complexity)), &cfg.name, gateway.model_label(Some(&candidate.model))).by(ex.client.clone());
        gateway.learner().expect(&ex.request_id, expected);
        ex.model = Some(candidate.model.clone());
        relay.shadow = crate::ops::shadow::pick(gateway, candidate.backend, local_only);
        let began = Instant::now();
        let own_deadline = tokio::time::Instant::from_std(began + cfg.timeout);
        let deadline = answer_by.map_or(own_deadline, |by| by.min(own_deadline));
        let trace_headers = match &mut ex.trace {
            Some(t) => t.attempt(ex.attempts, operation, &cfg.name, cfg.kind.as_str(), &candidate.model),
            None => client_trace.clone(),
        };
        let call = Call {
            request: &request,
            body: request.body_for(&raw, &candidate.model),
            model: &candidate.model,
            original: &raw,
            passed_headers: &passed,
            trace_headers: &trace_headers,
        };
        // A shadow comparison and HERMES_LOG_CONTENT need the streamed answer's text.
        let wants_text = relay.shadow.is_some() || gateway.config.log_content;
        let attempt = async {
            match timer::until(deadline, backend.send(call)).await {
                Err(_) if deadline == own_deadline => {
                    Err(mark_failed(gateway, candidate.backend, Failure::new(Reason::Timeout, format!("timed out after {}s", cfg.timeout.as_secs_f64()))))
                }
                Err(_) => Err(mark_failed(
                    gateway,
                    candidate.backend,
                    Failure::new(Reason::Timeout, format!("cut off at the response time limit after {:.1}s", began.elapsed().as_secs_f64())),
                )),
                Ok(Err(e)) => Err(mark_failed(gateway, candidate.backend, failure_of(&e))),
                Ok(Ok(reply)) => receive(gateway, &request, reply.scrubbed(&gateway.scrubber), deadline, candidate.backend, &candidate.model, wants_text).await,
            }
        };
        // A client that leaves while the backend works cancels the call (dropping it closes the
        // upstream connection), so nothing is generated, or paid for, that nobody reads.
        let received = tokio::select! {
            r = attempt => r,
            () = down.gone() => Err(Failure::new(Reason::Cancelled, "the client left before the answer")),
        };
        let outcome = match received {
            Ok(received) => {
                relay_answer(gateway, down, ex, &request, received, candidate.backend, &relay).await;
                Ok(())
            }
            Err(f) => Err(f),
        };
        gateway.backend_started(candidate.backend, -1);
        ex.upstream_time += began.elapsed();
        let record = attempt_record(ex, &cfg.name, &candidate.model, began.elapsed(), outcome.as_ref().err());
        if let Some(t) = &mut ex.trace {
            let failure = outcome.as_ref().err();
            t.attempt_ended(&record, failure.map_or(record.status, |f| f.status), failure.map(|f| f.reason));
        }
        ex.tries.push(record);
        match outcome {
            Ok(()) => return Ok(()),
            Err(f) if retry::after(f.reason) == Next::Stop => {
                log::info!("{} cancelled on {}: {}", ex.request_id, cfg.name, f.detail);
                ex.status = CLIENT_CLOSED;
                ex.abandoned = true;
                ex.error = Some(format!("cancelled: {}", f.detail));
                return Ok(());
            }
            Err(f) => {
                log::info!("{} attempt {} on {} failed: {}", ex.request_id, ex.attempts, cfg.name, f.detail);
                all_busy &= f.reason == Reason::RateLimited;
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
        let message = format!("No backend answered within HERMES_MAX_RESPONSE_TIME_SECONDS ({}s); tried: {}.", limit.as_secs_f64(), tried.join("; "));
        return Err(ApiError::new(Kind::BackendsFailed, message));
    }
    if ex.attempts > 0 && all_busy {
        let wait = soonest_retry.map_or(1, |d| d.as_secs_f64().ceil() as u64);
        return Err(ApiError::rate_limited(format!("Every backend that could answer is busy: {}.", tried.join("; ")), wait));
    }
    Err(ApiError::no_backend_answered(&tried, !tried.is_empty()))
}

/// Why an attempt did not produce the answer, for the failover metric and the final 502.
struct Failure {
    reason: Reason,
    detail: String,
    /// The backend's retry-after, when it answered 429.
    retry_after: Option<Duration>,
    /// The backend's status, when it answered with one.
    status: Option<u16>,
}

impl Failure {
    fn new(reason: Reason, detail: impl Into<String>) -> Failure {
        Failure { reason, detail: detail.into(), retry_after: None, status: None }
    }
}

/// One try for the analytics: the answer's status, or the failure. A request's own 4xx, a busy
/// 429 and a client that left say nothing about the backend (success is None).
fn attempt_record(ex: &Exchange, backend: &str, model: &str, elapsed: Duration, failure: Option<&Failure>) -> AttemptRecord {
    let (status, success, error, ttft) = match failure {
        Some(f) => (None, f.reason.blames_backend().then_some(false), Some(f.detail.clone()), None),
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

fn failure_of(e: &AttemptError) -> Failure {
    let reason = match e {
        AttemptError::Connect => Reason::Connect,
        AttemptError::Broken(_) => Reason::Broken,
        AttemptError::TooLarge(_) => Reason::TooLarge,
    };
    Failure::new(reason, e.to_string())
}

/// How much of a failing-over answer is read for its message.
const EXCERPT_BYTES: usize = 64 * 1024;

/// The backend answered: a failing-over status or a body that never came (or is larger than
/// HERMES_MAX_ANSWER_BYTES) is a failure, since nothing has reached the client yet.
async fn receive(
    gateway: &Gateway,
    request: &ApiRequest,
    mut reply: Reply,
    deadline: tokio::time::Instant,
    backend: usize,
    model: &str,
    wants_text: bool,
) -> Result<Received, Failure> {
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
        let excerpt = match timer::until(deadline, reply.bytes_within(EXCERPT_BYTES)).await {
            Ok(Ok(body)) => upstream_message(&body),
            _ => String::new(),
        };
        let reason = if reply.status == 429 { Reason::RateLimited } else { Reason::ServerError };
        return Err(Failure { reason, detail: format!("HTTP {}{excerpt}", reply.status), retry_after, status: Some(reply.status) });
    }
    if let Some(why) = backend_fault(gateway, backend, reply.status, model) {
        // The backend, not the request, is at fault: its body (which may quote its key) stays here.
        let refused = Failure { status: Some(reply.status), ..Failure::new(Reason::BackendRefused, format!("HTTP {}: {why}", reply.status)) };
        return Err(mark_failed(gateway, backend, refused));
    }
    if ok && request.stream {
        let limit = gateway.config.max_answer_bytes;
        // Nothing is committed to the client until a first data event: comments, keep-alives
        // and errors before it still fail over.
        let mut scanner = SseScanner::default();
        if wants_text {
            scanner.text = Some(String::new());
        }
        let (mut held, mut size) = (Vec::new(), 0);
        while scanner.data_events == 0 {
            match timer::until(deadline, reply.body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    size += chunk.len();
                    if size > limit {
                        return Err(mark_failed(gateway, backend, failure_of(&AttemptError::TooLarge(limit))));
                    }
                    scanner.feed(&chunk);
                    held.push(chunk);
                }
                Ok(Some(Err(e))) => return Err(mark_failed(gateway, backend, failure_of(&e))),
                Ok(None) => return Err(mark_failed(gateway, backend, Failure::new(Reason::Broken, "the stream ended before any data"))),
                Err(_) => return Err(mark_failed(gateway, backend, Failure::new(Reason::Timeout, "no data before the timeout"))),
            }
            if let Some(e) = scanner.error.take() {
                return Err(mark_failed(gateway, backend, Failure::new(Reason::Broken, format!("error event: {e}"))));
            }
        }
        gateway.record_outcome(backend, true);
        return Ok(Received::Stream { reply, held, scanner });
    }
    match timer::until(deadline, reply.bytes()).await {
        Ok(Ok(body)) => Ok(Received::Whole { status: reply.status, headers: std::mem::take(&mut reply.headers), body, native: reply.native }),
        Ok(Err(e)) => Err(mark_failed(gateway, backend, failure_of(&e))),
        Err(_) => Err(mark_failed(gateway, backend, Failure::new(Reason::Timeout, "answer not complete before the timeout"))),
    }
}

/// Answers that say the backend, not the request, is broken: redirects (never followed), refused
/// credentials, and "no such model" for a model it lists.
fn backend_fault(gateway: &Gateway, backend: usize, status: u16, model: &str) -> Option<&'static str> {
    match status {
        300..=399 => Some("the backend redirected; redirects are not followed"),
        401 | 403 | 407 => Some("the backend refused Hermes's credentials (check BACKEND_<NAME>_API_KEY)"),
        404 if gateway.catalog.models(backend).iter().any(|x| x == model) => Some("the backend does not have a model it is configured to serve"),
        _ => None,
    }
}

fn mark_failed(gateway: &Gateway, backend: usize, f: Failure) -> Failure {
    gateway.record_outcome(backend, false);
    f
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

/// BACKEND_<NAME>_RATE_LIMIT: over every replica when they share Redis, else this one's.
async fn backend_allows(gateway: &Gateway, backend: usize, name: &str) -> bool {
    let Some(limit) = gateway.limits.backend_limit(backend) else { return true };
    let what = format!("backend:{name}");
    match super::admit::shared(gateway, false, |r| r.request(&what, limit)).await {
        Ok(Some(counted)) => matches!(counted, crate::state::replicas::rates::Counted::Allowed { .. }),
        _ => gateway.limits.backend_allows(backend),
    }
}
