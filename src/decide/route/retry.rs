//! Failover decisions: whether an attempt's outcome sends the request on, and how long to pause.

use std::time::Duration;

/// Why an attempt produced no answer for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No connection (refused, unreachable, no address).
    Connect,
    /// The answer broke off, or the stream ended or erred before its first data event.
    Broken,
    Timeout,
    /// The backend is busy (429): says nothing about its health.
    RateLimited,
    /// A status in `retry_on_status` other than 429.
    ServerError,
    /// A redirect, a refusal of Hermes's credentials, or no such model where one is configured.
    BackendRefused,
    /// Larger than HERMES_MAX_ANSWER_BYTES.
    TooLarge,
    /// The client left: nobody is waiting for an answer any more.
    Cancelled,
}

impl Reason {
    /// The `reason` label of `hermes_failovers_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Broken => "broken",
            Reason::Timeout => "timeout",
            Reason::RateLimited => "rate_limited",
            Reason::ServerError => "status_5xx",
            Reason::BackendRefused => "backend_refused",
            Reason::TooLarge => "too_large",
            Reason::Cancelled => "cancelled",
        }
    }

    /// Whether the failure speaks of the backend's health (a busy backend or a client that left
    /// does not).
    pub fn blames_backend(self) -> bool {
        !matches!(self, Reason::RateLimited | Reason::Cancelled)
    }
}

/// What comes after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The next candidate, if the attempts allow.
    FailOver,
    /// Nothing more: no one to answer.
    Stop,
}

pub fn after(reason: Reason) -> Next {
    match reason {
        Reason::Cancelled => Next::Stop,
        _ => Next::FailOver,
    }
}

/// Upstream statuses in `retry_on_status` (policies/routing.toml) fail over; other answers,
/// 4xx included, belong to the client.
pub fn status_fails_over(status: u16, retry_on_status: &[u16]) -> bool {
    retry_on_status.contains(&status)
}

/// A `retry-after` header in seconds (the HTTP-date form is rare from LLM APIs and ignored).
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs: f64 = headers.get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// Pause before try number `attempt` (2 = first failover): base, doubling, capped.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let doublings = attempt.saturating_sub(2).min(16);
    base.saturating_mul(1 << doublings).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_left_stops_the_loop_and_busy_is_not_broken() {
        assert_eq!(after(Reason::Cancelled), Next::Stop);
        assert_eq!(after(Reason::ServerError), Next::FailOver);
        assert!(!Reason::RateLimited.blames_backend() && Reason::TooLarge.blames_backend());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(25);
        let cap = Duration::from_millis(80);
        assert_eq!(backoff(2, base, cap), Duration::from_millis(25));
        assert_eq!(backoff(3, base, cap), Duration::from_millis(50));
        assert_eq!(backoff(4, base, cap), cap);
        assert_eq!(backoff(40, base, cap), cap);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn only_configured_statuses_fail_over() {
        let policy = [429, 500, 502, 503];
        assert!(status_fails_over(500, &policy));
        assert!(status_fails_over(429, &policy));
        assert!(!status_fails_over(400, &policy));
        assert!(!status_fails_over(404, &policy));
    }
}
