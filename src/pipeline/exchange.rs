//! One request's story, filled in as it goes and recorded when it ends.

use crate::backends::sse::Usage;
use crate::decide::classify::JobType;
use crate::state::analytics::record::{AttemptRecord, SelectionRecord};
use crate::state::gateway::InFlight;
use crate::state::keys::{KeyRecord, Reservation};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// The door it came in by: the shape of its answer and errors.
    pub door: crate::doors::DoorKind,
    pub model_requested: Option<String>,
    pub stream: bool,
    /// The routing decision; its reasoning is shown when the client sent `x-hermes-debug`.
    pub selection: Option<SelectionRecord>,
    /// Every try at a backend, in order.
    pub tries: Vec<AttemptRecord>,
    /// What the client was told when the answer is an error.
    pub error: Option<String>,
    /// That error's code (`ApiError::code`), when it has one.
    pub error_code: Option<&'static str>,
    /// Prompt and answer text, kept only with HERMES_LOG_CONTENT=true.
    pub prompt: Option<String>,
    pub answer: Option<String>,
    pub debug: bool,
    /// The client's (limit, remaining) under HERMES_CLIENT_RATE_LIMIT.
    pub rate_limit: Option<(u32, u32)>,
    pub cache_hit: bool,
    /// The client is gone or was let go (it stopped reading): the connection is dropped as it
    /// is, with nothing more written to it.
    pub abandoned: bool,
    /// HERMES_SEND_TIMEOUT_SECONDS: how long one write to the client may wait.
    pub send_timeout: Duration,
    /// Counts the request in flight (shutdown waits for it) and pins its gateway generation.
    pub in_flight: Option<InFlight>,
    /// Who asked: open, a static key, or a virtual key with its limits.
    pub caller: Caller,
    /// A SHA-256 of the client's key: whose cache entries, stored responses and ratings.
    pub client: Option<String>,
    /// What this request holds of its key's and team's budgets until it ends.
    pub reservation: Option<Reservation>,
    /// The cost is settled against the key (once, as soon as it is known).
    pub spend_settled: bool,
    /// What the key's tightest budget had left when this request's cost was settled.
    pub budget_left: Option<f64>,
    /// The key's budget is spent and `--on-budget local` sent the request to a free local backend.
    pub budget_exhausted: bool,
    /// The prompt tokens taken from the key's tokens per minute at admission.
    pub tokens_held: u64,
    /// The request's spans, when traces are exported.
    pub trace: Option<Box<super::traced::RequestTrace>>,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No keys of any kind are configured: anyone may ask.
    Open,
    /// A key of HERMES_API_KEYS: no limits of its own.
    Static,
    /// A virtual key, with its limits and budget.
    Virtual(Arc<KeyRecord>),
}

impl Caller {
    pub fn key(&self) -> Option<&Arc<KeyRecord>> {
        match self {
            Caller::Virtual(k) => Some(k),
            _ => None,
        }
    }
}

/// Whether `id` has the form of the request ids Hermes gives out (`req_` and 16 hex digits).
pub fn is_request_id(id: &str) -> bool {
    id.strip_prefix("req_").is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Exchange {
    pub fn new() -> Exchange {
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
            door: crate::doors::DoorKind::OpenAi,
            model_requested: None,
            stream: false,
            selection: None,
            tries: Vec::new(),
            error: None,
            error_code: None,
            prompt: None,
            answer: None,
            debug: false,
            rate_limit: None,
            cache_hit: false,
            abandoned: false,
            send_timeout: Duration::from_secs(30),
            in_flight: None,
            caller: Caller::Open,
            client: None,
            reservation: None,
            spend_settled: false,
            budget_left: None,
            budget_exhausted: false,
            tokens_held: 0,
            trace: None,
        }
    }
}

impl Default for Exchange {
    fn default() -> Exchange {
        Exchange::new()
    }
}
