//! What a finished request leaves behind: the learner's statistics move at once, and the whole
//! story goes to the analytics writer (which never makes the request wait).

use crate::analytics::record::{FeedbackRecord, JobRecord};
use crate::gateway::Gateway;
use crate::learn::{Band, Outcome, Served};
use crate::proxy::Exchange;
use std::time::{Duration, SystemTime};

/// A next turn that complains about the answer before it counts as a low rating of that answer,
/// unless a person rated it already.
pub fn implicit_feedback(gateway: &Gateway, request: &crate::openai::ApiRequest, request_id: &str) {
    let Some(implicit) = &gateway.implicit else { return };
    let Some(messages) = request.body.get("messages").and_then(serde_json::Value::as_array) else { return };
    let Some((earlier, complaint)) = implicit.observe(&gateway.shared.conversations, messages, request_id) else { return };
    let learner = gateway.learner();
    let Some(served) = learner.lookup(&earlier).filter(|s| s.rating.is_none()) else { return };
    learner.rate(&earlier, served, implicit.rating);
    metrics::counter!("hermes_implicit_feedback_total", "reason" => complaint.reason()).increment(1);
    let record = FeedbackRecord { request_id: earlier, rating: Some(implicit.rating), comment: Some(complaint.as_str().to_string()), at: Some(SystemTime::now()), ..FeedbackRecord::default() };
    gateway.analytics().offer(crate::analytics::Event::Feedback(Box::new(record)));
}

pub fn remember(gateway: &Gateway, ex: &mut Exchange, total: Duration) {
    let learner = gateway.learner();
    if let Some(job_type) = ex.job_type {
        let last = ex.tries.len().saturating_sub(1);
        for (n, a) in ex.tries.iter().enumerate() {
            learner.record(&Outcome {
                job_type,
                backend: &a.backend,
                // Only models the catalog knows become keys: a client cannot grow the table.
                model: gateway.model_label(Some(&a.model)),
                success: a.success,
                latency: a.elapsed,
                // Time to first token belongs to the try that streamed.
                ttft: if n == last { a.ttft } else { None },
                cost_cents: a.cost_cents,
            });
        }
    }
    let backend = ex.backend.and_then(|i| gateway.config.backends.get(i)).map(|b| b.name.clone());
    let answered = (200..300).contains(&ex.status);
    let served = match (answered, ex.job_type, &backend, &ex.model) {
        (true, Some(job_type), Some(b), Some(m)) => Some(Served::new(job_type, ex.complexity.map(Band::of), b, gateway.model_label(Some(m)))),
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
        cost_cents: ex.cost_cents,
        cache_hit: ex.cache_hit,
        error: ex.error.take(),
        prompt: ex.prompt.take(),
        response: ex.answer.take(),
        attempts: std::mem::take(&mut ex.tries),
        selection: ex.selection.take(),
    });
    // After the record is queued, so a rating that follows finds its rows in the file.
    if let Some(s) = served {
        learner.served(&ex.request_id, s);
    }
}
