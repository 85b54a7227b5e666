//! What a finished request leaves behind: one log line and its metrics, the learner's
//! statistics (at once), and the whole story for the analytics writer (which never makes the
//! request wait).

use super::exchange::Exchange;
use crate::decide::classify::JobType;
use crate::state::analytics::record::{FeedbackRecord, JobRecord};
use crate::state::gateway::Gateway;
use crate::state::learn::{Band, Outcome, Served};
use crate::state::telemetry::{self, RequestRecord};
use std::time::{Duration, SystemTime};

/// A next turn that complains about the answer before it counts as a low rating of that answer,
/// unless a person rated it already.
pub fn implicit_feedback(gateway: &Gateway, request: &crate::doors::openai::ApiRequest, request_id: &str) {
    let Some(implicit) = &gateway.implicit else { return };
    let Some(messages) = request.body.get("messages").and_then(serde_json::Value::as_array) else { return };
    let Some((earlier, complaint)) = implicit.observe(&gateway.shared.conversations, messages, request_id) else { return };
    let learner = gateway.learner();
    let Some(served) = learner.lookup(&earlier).filter(|s| s.rating.is_none()) else { return };
    if let Some(r) = &gateway.shared.replicas {
        r.tell_rating(&earlier, &served, implicit.rating);
    }
    learner.rate(&earlier, served, implicit.rating);
    metrics::counter!("hermes_implicit_feedback_total", "reason" => complaint.reason()).increment(1);
    let record = FeedbackRecord {
        request_id: earlier,
        rating: Some(implicit.rating),
        comment: Some(complaint.as_str().to_string()),
        at: Some(SystemTime::now()),
        ..FeedbackRecord::default()
    };
    gateway.analytics().offer(crate::state::analytics::Event::Feedback(Box::new(record)));
}

/// The end of a request (the edge's logging hook): API requests that were routed are logged,
/// counted and remembered.
pub fn finish(ex: &mut Exchange, method: &str, path: &str) {
    let Some(gateway) = ex.in_flight.as_ref().map(|f| f.gateway().clone()) else { return };
    if !ex.routed {
        return;
    }
    super::keyed::settle(&gateway, ex);
    if let Some(trace) = ex.trace.take() {
        trace.finish(&gateway, ex, method, path);
    }
    let backend = ex.backend.and_then(|i| gateway.config.backends.get(i)).map(|b| b.name.as_str()).unwrap_or("none");
    let total = ex.started.elapsed();
    // One line per API request; never headers or bodies (keys, prompts).
    log::info!(
        "{} {method} {path} status={} backend={} model={:?} attempts={} ms={:.1}{}",
        ex.request_id,
        ex.status,
        backend,
        ex.model.as_deref().unwrap_or("-"),
        ex.attempts,
        total.as_secs_f64() * 1000.0,
        KeyName(ex.caller.key().map(|k| k.spec.name.as_str()))
    );
    telemetry::record_request(&RequestRecord {
        endpoint: ex.endpoint,
        backend,
        model: gateway.model_label(ex.model.as_deref()),
        job_type: ex.job_type.map_or("none", JobType::as_str),
        status: ex.status,
        total,
        overhead: total.saturating_sub(ex.upstream_time),
        ttft: ex.ttft,
        tokens: ex.usage,
        cost_cents: ex.cost_cents,
    });
    remember(&gateway, ex, total);
}

/// ` key=NAME` in the log line of a virtual key's request (its name, never the key).
struct KeyName<'a>(Option<&'a str>);

impl std::fmt::Display for KeyName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(name) => write!(f, " key={name}"),
            None => Ok(()),
        }
    }
}

fn remember(gateway: &Gateway, ex: &mut Exchange, total: Duration) {
    let learner = gateway.learner();
    for a in &ex.tries {
        gateway.shared.helm.attempted(&a.backend, a.success, a.elapsed.as_secs_f64() * 1000.0);
    }
    if let Some(job_type) = ex.job_type {
        let last = ex.tries.len().saturating_sub(1);
        for (n, a) in ex.tries.iter().enumerate() {
            let outcome = Outcome {
                job_type,
                backend: &a.backend,
                // Only models the catalog knows become keys: a client cannot grow the table.
                model: gateway.model_label(Some(&a.model)),
                success: a.success,
                latency: a.elapsed,
                // Time to first token belongs to the try that streamed.
                ttft: if n == last { a.ttft } else { None },
                cost_cents: a.cost_cents,
            };
            learner.record(&outcome);
            if let Some(r) = &gateway.shared.replicas {
                r.tell_outcome(&outcome);
            }
        }
    }
    let backend = ex.backend.and_then(|i| gateway.config.backends.get(i)).map(|b| b.name.clone());
    let answered = (200..300).contains(&ex.status);
    let served = match (answered, ex.job_type, &backend, &ex.model) {
        (true, Some(job_type), Some(b), Some(m)) => {
            Some(Served::new(job_type, ex.complexity.map(Band::of), b, gateway.model_label(Some(m))).by(ex.client.clone()))
        }
        _ => None,
    };
    gateway.analytics().record(JobRecord {
        request_id: ex.request_id.clone(),
        at: SystemTime::now().checked_sub(total),
        endpoint: ex.endpoint,
        model_requested: ex.model_requested.take(),
        job_type: ex.job_type.map(|j| j.as_str()),
        complexity: ex.complexity,
        criteria: ex.selection.as_ref().map(|s| s.criteria),
        stream: ex.stream,
        status: ex.status,
        backend,
        model_used: ex.model.clone(),
        total,
        ttft: ex.ttft,
        overhead: total.saturating_sub(ex.upstream_time),
        prompt_tokens: ex.usage.map(|u| u.prompt_tokens),
        completion_tokens: ex.usage.map(|u| u.completion_tokens),
        cached_tokens: ex.usage.map(|u| u.cached_tokens),
        reasoning_tokens: ex.usage.map(|u| u.reasoning_tokens),
        cost_cents: ex.cost_cents,
        cache_hit: ex.cache_hit,
        error: ex.error.take(),
        prompt: ex.prompt.take(),
        response: ex.answer.take(),
        attempts: std::mem::take(&mut ex.tries),
        selection: ex.selection.take(),
        key_name: ex.caller.key().map(|k| k.spec.name.clone()),
        team: ex.caller.key().and_then(|k| k.spec.team.clone()),
        client: ex.client.clone(),
    });
    // After the record is queued, so a rating that follows finds its rows in the file.
    if let Some(s) = served {
        if let Some(r) = &gateway.shared.replicas {
            r.tell_served(&ex.request_id, &s);
        }
        learner.served(&ex.request_id, s);
    }
}
