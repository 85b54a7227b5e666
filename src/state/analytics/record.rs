//! What the request path hands to the analytics writer: plain owned values, built once per
//! request in `logging`, so the writer never reaches back into live state.

use std::time::{Duration, SystemTime};

/// One request: the `jobs` row, its attempts and the routing decision behind them.
#[derive(Debug, Clone, Default)]
pub struct JobRecord {
    pub request_id: String,
    pub at: Option<SystemTime>,
    pub endpoint: &'static str,
    pub model_requested: Option<String>,
    pub job_type: Option<&'static str>,
    pub complexity: Option<f64>,
    pub criteria: Option<&'static str>,
    pub stream: bool,
    pub status: u16,
    pub backend: Option<String>,
    pub model_used: Option<String>,
    pub total: Duration,
    pub ttft: Option<Duration>,
    pub overhead: Duration,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cost_cents: Option<f64>,
    pub cache_hit: bool,
    pub error: Option<String>,
    /// Only with HERMES_LOG_CONTENT=true.
    pub prompt: Option<String>,
    pub response: Option<String>,
    pub attempts: Vec<AttemptRecord>,
    pub selection: Option<SelectionRecord>,
    /// The virtual key's name and team, for a request that carried one.
    pub key_name: Option<String>,
    pub team: Option<String>,
    /// A SHA-256 of the client's key (any key, or none): ratings come only from the same client.
    pub client: Option<String>,
}

/// One try at one backend (`backend_performance`).
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub backend: String,
    pub model: String,
    pub elapsed: Duration,
    pub ttft: Option<Duration>,
    pub status: Option<u16>,
    /// None: neither the backend's success nor its fault (a 4xx, a 429, a client gone).
    pub success: Option<bool>,
    pub error: Option<String>,
    pub tokens: Option<u64>,
    pub cost_cents: Option<f64>,
}

/// The routing decision (`backend_selection_history`).
#[derive(Debug, Clone)]
pub struct SelectionRecord {
    pub criteria: &'static str,
    /// (backend, model, estimated cents) in the order they were to be tried.
    pub candidates: Vec<(String, String, f64)>,
    pub reasoning: String,
    pub confidence: f64,
    pub rejected: Vec<(String, String)>,
}

/// A person's verdict (`feedback`, and `backend_performance.user_satisfaction`) and/or their
/// correction of the job type (`classifier_corrections`).
#[derive(Debug, Clone, Default)]
pub struct FeedbackRecord {
    pub request_id: String,
    pub rating: Option<u8>,
    pub comment: Option<String>,
    pub job_type: Option<&'static str>,
    /// What the classifier read of the request, as JSON `[[bucket, value], ...]`, when still known.
    pub features: Option<String>,
    pub at: Option<SystemTime>,
}

/// One backend's answer to a compared prompt (`comparisons`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ComparisonRecord {
    pub comparison_id: String,
    pub source: String,
    pub request_id: Option<String>,
    pub prompt: Option<String>,
    pub backend: String,
    pub model: String,
    pub status: Option<u16>,
    pub seconds: f64,
    pub cost_cents: Option<f64>,
    pub answer_chars: usize,
    pub similarity: Option<f64>,
    pub error: Option<String>,
}

/// One step of a migration between backends (`migration_steps`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MigrationStepRecord {
    pub migration_id: String,
    pub strategy: String,
    pub from: String,
    pub to: String,
    pub step: u32,
    pub action: String,
    pub description: String,
    pub outcome: String,
    #[serde(default)]
    pub detail: Option<String>,
    /// JSON of the steering in force after the step (filled in by the gateway).
    #[serde(default)]
    pub steering: String,
}

/// A configured backend (`backends`), written at start-up and on reload.
#[derive(Debug, Clone)]
pub struct BackendRecord {
    pub name: String,
    pub kind: &'static str,
    pub is_primary: bool,
    /// JSON without secrets.
    pub config: String,
    pub capabilities: String,
    pub quality: f64,
    pub speed: f64,
    pub cost_score: f64,
    pub health_status: &'static str,
}

pub fn micros(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// A moment not recorded is written as now.
pub fn micros_or_now(at: Option<SystemTime>) -> i64 {
    micros(at.unwrap_or_else(SystemTime::now))
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
