//! Hermes's own endpoints: liveness, metrics, the model list, ratings (`/feedback`), and
//! `/admin/*` for operators. Each handler takes what the edge read (the body's JSON) and returns
//! what to answer; the edge does the reading and writing.

use crate::decide::classify::JobType;
use crate::error::{ApiError, Kind};
use crate::ops::steering::Steering;
use crate::state::analytics::record::{FeedbackRecord, MigrationStepRecord};
use crate::state::analytics::Event;
use crate::state::gateway::{Gateway, Live};
use crate::state::learn::Priors;
use bytes::Bytes;
use serde_json::json;
use std::time::UNIX_EPOCH;

/// The body of a POST: a JSON object.
pub fn object(raw: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match serde_json::from_slice(raw) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(ApiError::invalid_json()),
    }
}

pub fn health(gateway: &Gateway) -> serde_json::Value {
    json!({"status": "ok", "backends": gateway.config.backends.len(), "in_flight": gateway.in_flight()})
}

/// The Prometheus text.
pub fn metrics(gateway: &Gateway) -> Bytes {
    // Health also changes with time (rests and cooldowns end): read it at scrape time.
    for (i, b) in gateway.config.backends.iter().enumerate() {
        crate::state::telemetry::set_backend_healthy(&b.name, gateway.health.available(i));
        crate::state::telemetry::set_backend_scores(&b.name, b.quality_score, b.speed_score, gateway.health.reliability(i));
        for (job, e) in learned(gateway, i) {
            crate::state::telemetry::set_learned_scores(&b.name, job.as_str(), e.quality, e.speed, e.reliability);
        }
    }
    crate::state::telemetry::set_analytics_queue(gateway.analytics().queued());
    Bytes::from(crate::state::telemetry::render())
}

/// Every enabled backend's models, plus `auto`, in OpenAI's list shape; rendered at most once a
/// second (SDKs and UIs poll it).
pub async fn models(gateway: &Gateway) -> Bytes {
    gateway.model_list.get_with((), async { Bytes::from(model_list(gateway).to_string()) }).await
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
pub fn authorize(gateway: &Gateway, bearer: Option<&str>, peer: Option<std::net::IpAddr>) -> Result<(), ApiError> {
    match &gateway.config.admin_key {
        Some(key) if bearer.is_some_and(|p| key.matches(p)) => Ok(()),
        Some(_) => Err(ApiError::unauthorized()),
        // A dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1.
        None if peer.is_some_and(|ip| ip.to_canonical().is_loopback()) => Ok(()),
        None => Err(ApiError::forbidden("/admin is open to loopback clients only while HERMES_ADMIN_KEY is unset.")),
    }
}

/// Every backend: type, health, models, load and scores.
pub fn backends(gateway: &Gateway) -> serde_json::Value {
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
                "base_url": crate::state::config::redact_url(&b.base_url),
                "health_status": gateway.health.status(i).as_str(),
                "last_check": check,
                "models": *gateway.catalog.models(i),
                "in_flight": gateway.backend_in_flight(i),
                "timeout_seconds": b.timeout.as_secs_f64(),
                "price_per_mtok": {"input": b.price.input_per_mtok, "output": b.price.output_per_mtok, "free": !b.kind.is_paid()},
                "scores": {"quality": b.quality_score, "speed": b.speed_score, "source": "configured prior"},
                "learned": learned(gateway, i)
                    .map(|(job, e)| (job.as_str().to_string(), json!({"quality": e.quality, "speed": e.speed, "reliability": e.reliability})))
                    .collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    json!({"backends": list})
}

/// What the learner believes of a backend, for each job type it has evidence on.
fn learned(gateway: &Gateway, i: usize) -> impl Iterator<Item = (JobType, crate::state::learn::Estimate)> + '_ {
    let b = &gateway.config.backends[i];
    let models = gateway.catalog.models(i);
    let model = models.first().cloned().unwrap_or_else(|| "auto".to_string());
    let prior = Priors { quality: b.quality_score, speed: b.speed_score, reliability: gateway.health.reliability(i) };
    JobType::ALL.into_iter().map(move |job| (job, gateway.learner().belief(job, &b.name, &model, prior))).filter(|(_, e)| e.evidence)
}

/// POST /admin/reload: the new configuration, or why it was refused (the old one keeps serving).
pub fn reload(live: &Live) -> Result<serde_json::Value, ApiError> {
    match live.reload() {
        Ok(new) => {
            let names: Vec<&str> = new.config.backends.iter().map(|b| b.name.as_str()).collect();
            Ok(json!({"status": "reloaded", "backends": names}))
        }
        Err(why) => {
            log::warn!("reload refused: {why}");
            Err(ApiError::new(Kind::InvalidConfiguration, format!("Reload refused, the running configuration stays: {why}")))
        }
    }
}

/// POST /feedback `{"request_id", "rating": 1-5, "comment"?, "job_type"?}`: a person's verdict on
/// an answer, and/or their correction of its job type. The rating moves the learner at once and
/// lands in `backend_performance.user_satisfaction`; the correction lands in
/// `classifier_corrections`, which `hermes classifier train --from-db` learns from.
pub async fn rate(gateway: &Gateway, body: &serde_json::Map<String, serde_json::Value>, client: Option<&str>) -> Result<serde_json::Value, ApiError> {
    let request_id = match body.get("request_id") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => return Err(ApiError::bad_request("`request_id` must be the x-hermes-request-id of an answer.", Some("request_id"))),
    };
    let job_type = match body.get("job_type") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_str().and_then(JobType::parse) {
            Some(j) => Some(j),
            None => {
                let types = JobType::ALL.map(JobType::as_str).join(", ");
                return Err(ApiError::bad_request(format!("`job_type` must be one of {types}."), Some("job_type")));
            }
        },
    };
    let rating = match body.get("rating") {
        None | Some(serde_json::Value::Null) if job_type.is_some() => None,
        r => match r.and_then(serde_json::Value::as_f64) {
            Some(r) if r.fract() == 0.0 && (1.0..=5.0).contains(&r) => Some(r as u8),
            _ => return Err(ApiError::bad_request("`rating` must be a whole number from 1 to 5 (or give `job_type` alone).", Some("rating"))),
        },
    };
    let comment = match body.get("comment") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(c)) => Some(c.chars().take(2000).collect::<String>()),
        Some(_) => return Err(ApiError::bad_request("`comment` must be a string.", Some("comment"))),
    };
    let learner = gateway.learner();
    let served = match learner.lookup(&request_id) {
        Some(s) => Some(s),
        // Only ids Hermes could have made are looked for in the file, and at a bounded rate:
        // each lookup is a scan on the writer's thread.
        None if crate::pipeline::exchange::is_request_id(&request_id) => gateway
            .analytics()
            .lookup(&request_id)
            .await
            .map_err(|()| ApiError::rate_limited("Too many ratings of older requests at once; retry shortly.", 1))?,
        None => None,
    };
    // Another replica may have answered it (and be publishing that it did a moment after its
    // last byte: a rating sent at once may come first).
    let served = match (served, &gateway.shared.replicas) {
        (None, Some(r)) if crate::pipeline::exchange::is_request_id(&request_id) => {
            let mut found = None;
            for wait in [0, 50, 150] {
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                match r.served(&request_id).await {
                    Ok(None) => continue,
                    Ok(s) => found = s,
                    Err(_) => {}
                }
                break;
            }
            found
        }
        (known, _) => known,
    };
    // Only the client that made a request may rate it: another key's request does not exist
    // for it (anyone else could steer everyone's routing).
    let Some(served) = served.filter(|s| s.client.is_none() || s.client.as_deref() == client) else {
        return Err(ApiError::not_found(format!("No answered request has the id '{request_id}'."), "request_id", "request_not_found"));
    };
    // The features, not the text: a correction is kept without keeping the prompt.
    let features = job_type
        .and_then(|_| gateway.shared.readings.get(&request_id))
        .map(|f| serde_json::Value::Array(f.iter().map(|(b, v)| json!([b, v])).collect()).to_string());
    let mut reply = json!({
        "status": "recorded",
        "request_id": request_id,
        "rating": rating,
        "backend": served.backend,
        "model": served.model,
        "job_type": served.job_type.as_str(),
    });
    if let Some(j) = job_type {
        reply["corrected_job_type"] = j.as_str().into();
        reply["trainable"] = features.is_some().into();
    }
    if let Some(rating) = rating {
        gateway.shared.helm.rated(&served.backend, rating);
        if let Some(r) = &gateway.shared.replicas {
            r.tell_rating(&request_id, &served, rating);
        }
        learner.rate(&request_id, served, rating);
    }
    let at = Some(std::time::SystemTime::now());
    let record = FeedbackRecord { request_id, rating, comment, job_type: job_type.map(JobType::as_str), features, at };
    if !gateway.analytics().offer(Event::Feedback(Box::new(record))) {
        log::warn!("a rating was learned but could not be queued for the analytics file");
    }
    Ok(reply)
}

/// POST /admin/export `{"dir": "/absolute/folder"}`: every analytics table as
/// `<dir>/<table>.parquet`, written on the gateway's machine by the process that has the file.
pub async fn export(gateway: &Gateway, body: &serde_json::Map<String, serde_json::Value>) -> Result<serde_json::Value, ApiError> {
    let dir = match body.get("dir").and_then(serde_json::Value::as_str).map(std::path::PathBuf::from) {
        Some(d) if d.is_absolute() => d,
        _ => return Err(ApiError::bad_request("`dir` must be an absolute folder on the gateway's machine.", Some("dir"))),
    };
    let tables = gateway.analytics().export(dir.clone()).await.map_err(|e| ApiError::new(Kind::Internal, format!("The export failed: {e}")))?;
    let tables: serde_json::Map<String, serde_json::Value> = tables.into_iter().map(|(t, rows)| (t, rows.into())).collect();
    Ok(json!({"dir": dir.display().to_string(), "format": "parquet", "rows": tables}))
}

/// GET /admin/stats: the learned table, per job type and backend.
pub fn stats(gateway: &Gateway) -> serde_json::Value {
    json!({
        "rows": gateway.learner().table(),
        "analytics": {"path": gateway.config.db_path.display().to_string(), "queued": gateway.analytics().queued()},
    })
}

/// POST /admin/compare `{"prompt", "backends": [...]}`: the same prompt to each backend.
pub async fn compare(gateway: &Gateway, body: &serde_json::Map<String, serde_json::Value>) -> Result<serde_json::Value, ApiError> {
    {
        let prompt = body.get("prompt").and_then(|p| p.as_str()).filter(|p| !p.trim().is_empty());
        let prompt = prompt.ok_or_else(|| ApiError::bad_request("`prompt` must be a non-empty string.", Some("prompt")))?.to_string();
        let names: Vec<String> = match body.get("backends") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Some(_) => return Err(ApiError::bad_request("`backends` must be a list of backend names.", Some("backends"))),
        };
        let rows = crate::ops::compare::run(gateway, &prompt, &names).await?;
        gateway.analytics().offer(Event::Comparison(rows.clone()));
        Ok(json!({"comparison": rows}))
    }
}

/// GET /admin/migration: the steering in force, each backend's in-flight count and, while a
/// shadow runs, how its answers compare.
pub fn migration(gateway: &Gateway) -> serde_json::Value {
    let in_flight: serde_json::Map<String, serde_json::Value> =
        gateway.config.backends.iter().enumerate().map(|(i, b)| (b.name.clone(), gateway.backend_in_flight(i).into())).collect();
    json!({"steering": gateway.shared.helm.get(), "in_flight": in_flight, "shadow": gateway.shared.helm.tallies(), "stage": gateway.shared.helm.stage()})
}

/// POST /admin/migration `{"steering": {...}, "step": {...}}`: replace the steering (an empty
/// one returns routing to the configuration) and record the step in the analytics file.
pub fn steer(gateway: &Gateway, body: &serde_json::Map<String, serde_json::Value>) -> Result<serde_json::Value, ApiError> {
    {
        let steering: Steering = serde_json::from_value(body.get("steering").cloned().unwrap_or(json!({})))
            .map_err(|e| ApiError::bad_request(format!("`steering`: {e}"), Some("steering")))?;
        let names: Vec<&str> = gateway.config.backends.iter().map(|b| b.name.as_str()).collect();
        steering.check(&names).map_err(|e| ApiError::bad_request(format!("`steering`: {e}"), Some("steering")))?;
        let step = match body.get("step") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(serde_json::from_value::<MigrationStepRecord>(v.clone()).map_err(|e| ApiError::bad_request(format!("`step`: {e}"), Some("step")))?),
        };
        let described = serde_json::to_string(&steering).unwrap_or_default();
        gateway.shared.helm.set(steering);
        if let Some(mut step) = step {
            log::info!("migration {} step {}: {} ({})", step.migration_id, step.step, step.action, step.outcome);
            step.steering = described;
            gateway.analytics().offer(Event::MigrationStep(Box::new(step)));
        }
        Ok(migration(gateway))
    }
}
