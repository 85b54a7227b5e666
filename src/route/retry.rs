//! Failover decisions: whether an attempt's outcome sends the request on, and how long to pause.

use std::time::Duration;

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
