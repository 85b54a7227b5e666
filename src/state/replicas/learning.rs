//! What every replica learns, for all of them: each replica appends its answers' outcomes and
//! the ratings it takes to a Redis stream (`hermes:learn`) and applies the others' entries to
//! its own learner, so every replica routes by what all of them learned; a replica that starts
//! reads the stream from its beginning (the last 100,000 entries). Where each answered request
//! ran is kept for a day (`hermes:served:<request id>`), so that a rating posted to any replica
//! finds it, and only from the key that made it.
//!
//! Publishing is off the answer's path: entries wait in a bounded queue for one task that sends
//! them in batches, and are dropped (this replica still learned them) while Redis is away.

use super::{Down, Replicas};
use crate::decide::classify::JobType;
use crate::state::learn::{Band, Learner, Outcome, Served};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Entries that may wait to be published.
pub const OUTBOX: usize = 16_384;
const STREAM: &str = "hermes:learn";
const STREAM_LENGTH: usize = 100_000;
const SERVED_FOR_SECONDS: u64 = 24 * 3600;
/// How often the others' entries are read.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Where a request ran, as Redis keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ran {
    job_type: String,
    band: Option<String>,
    backend: String,
    model: String,
    /// The digest of the client key that made it (never the key).
    client: Option<String>,
}

impl Ran {
    fn of(s: &Served) -> Ran {
        let band = s.band.map(|b| if b == Band::Hard { "hard" } else { "simple" }.to_string());
        Ran { job_type: s.job_type.as_str().into(), band, backend: s.backend.clone(), model: s.model.clone(), client: s.client.clone() }
    }

    fn served(&self) -> Option<Served> {
        let band = self.band.as_deref().map(|b| if b == "hard" { Band::Hard } else { Band::Simple });
        Some(Served::new(JobType::parse(&self.job_type)?, band, &self.backend, &self.model).by(self.client.clone()))
    }
}

/// One entry of the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Learned {
    Outcome { job_type: String, backend: String, model: String, success: Option<bool>, latency_ms: f64, ttft_ms: Option<f64>, cost_cents: Option<f64> },
    Rating { request_id: String, ran: Ran, rating: u8 },
}

/// What waits in the outbox.
pub enum Note {
    Learned(Learned),
    Served(String, Ran),
}

impl Replicas {
    fn post(&self, note: Note) {
        if self.up() && self.outbox.try_send(note).is_err() {
            metrics::counter!("hermes_redis_dropped_total").increment(1);
        }
    }

    /// An attempt's result, for the others' learners.
    pub fn tell_outcome(&self, o: &Outcome<'_>) {
        self.post(Note::Learned(Learned::Outcome {
            job_type: o.job_type.as_str().into(),
            backend: o.backend.into(),
            model: o.model.into(),
            success: o.success,
            latency_ms: o.latency.as_secs_f64() * 1000.0,
            ttft_ms: o.ttft.map(|t| t.as_secs_f64() * 1000.0),
            cost_cents: o.cost_cents,
        }));
    }

    /// Where an answered request ran, so a rating on another replica finds it.
    pub fn tell_served(&self, request_id: &str, s: &Served) {
        self.post(Note::Served(request_id.to_string(), Ran::of(s)));
    }

    /// A rating this replica took, for every replica's learner.
    pub fn tell_rating(&self, request_id: &str, s: &Served, rating: u8) {
        self.post(Note::Learned(Learned::Rating { request_id: request_id.to_string(), ran: Ran::of(s), rating }));
    }

    /// Where another replica's answer ran (None: no replica answered it in the last day).
    pub async fn served(&self, request_id: &str) -> Result<Option<Served>, Down> {
        let key = format!("hermes:served:{request_id}");
        let found: Option<String> = self.call(|mut c| async move { c.get(key).await }).await?;
        Ok(found.and_then(|j| serde_json::from_str::<Ran>(&j).ok()).and_then(|r| r.served()))
    }
}

/// Sends the outbox in batches.
pub async fn publish(replicas: Arc<Replicas>, mut outbox: tokio::sync::mpsc::Receiver<Note>) {
    while let Some(first) = outbox.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match outbox.try_recv() {
                Ok(n) => batch.push(n),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        for note in &batch {
            match note {
                Note::Learned(l) => {
                    let data = serde_json::to_string(l).unwrap_or_default();
                    pipe.cmd("XADD")
                        .arg(STREAM)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(STREAM_LENGTH)
                        .arg("*")
                        .arg("from")
                        .arg(&replicas.me)
                        .arg("data")
                        .arg(data)
                        .ignore();
                }
                Note::Served(id, ran) => {
                    pipe.set_ex(format!("hermes:served:{id}"), serde_json::to_string(ran).unwrap_or_default(), SERVED_FOR_SECONDS).ignore();
                }
            }
        }
        if replicas.call(|mut c| async move { pipe.query_async::<()>(&mut c).await }).await.is_err() {
            metrics::counter!("hermes_redis_dropped_total").increment(batch.len() as u64);
        }
    }
}

/// Applies the other replicas' entries to this replica's learner, from the stream's start.
pub async fn follow(replicas: Arc<Replicas>, learner: Arc<Learner>) {
    let mut last = "0-0".to_string();
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        if !replicas.up() {
            continue;
        }
        let from = last.clone();
        let read: Result<redis::streams::StreamReadReply, Down> =
            replicas.call(|mut c| async move { c.xread_options(&[STREAM], &[from], &redis::streams::StreamReadOptions::default().count(1000)).await }).await;
        let Ok(read) = read else { continue };
        for entry in read.keys.iter().flat_map(|k| &k.ids) {
            last = entry.id.clone();
            if entry.get::<String>("from").as_deref() == Some(replicas.me.as_str()) {
                continue;
            }
            if let Some(l) = entry.get::<String>("data").and_then(|d| serde_json::from_str::<Learned>(&d).ok()) {
                apply(&learner, l);
            }
        }
    }
}

fn apply(learner: &Learner, l: Learned) {
    match l {
        Learned::Outcome { job_type, backend, model, success, latency_ms, ttft_ms, cost_cents } => {
            let Some(job_type) = JobType::parse(&job_type) else { return };
            learner.record(&Outcome {
                job_type,
                backend: &backend,
                model: &model,
                success,
                latency: Duration::from_secs_f64(latency_ms.max(0.0) / 1000.0),
                ttft: ttft_ms.map(|t| Duration::from_secs_f64(t.max(0.0) / 1000.0)),
                cost_cents,
            });
        }
        Learned::Rating { request_id, ran, rating } => {
            // The replica that answered knows an earlier rating of it, which this one replaces.
            let Some(served) = learner.lookup(&request_id).or_else(|| ran.served()) else { return };
            if (1..=5).contains(&rating) {
                learner.rate(&request_id, served, rating);
            }
        }
    }
}
