//! Backend health from real traffic: consecutive failures mark a backend unhealthy for a cooldown,
//! after which one request may try it again (half-open) and a success restores it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Unknown => "unknown",
        }
    }
}

#[derive(Default)]
struct Marks {
    consecutive_failures: AtomicU32,
    successes: AtomicU64,
    /// Milliseconds since the board's epoch until which the backend is skipped.
    down_until_ms: AtomicU64,
}

pub struct HealthBoard {
    marks: Vec<Marks>,
    threshold: u32,
    /// None: no automatic recovery.
    cooldown: Option<Duration>,
    epoch: Instant,
}

impl HealthBoard {
    pub fn new(backends: usize, threshold: u32, cooldown: Option<Duration>) -> HealthBoard {
        HealthBoard { marks: (0..backends).map(|_| Marks::default()).collect(), threshold, cooldown, epoch: Instant::now() }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn record_success(&self, backend: usize) {
        if let Some(m) = self.marks.get(backend) {
            m.consecutive_failures.store(0, Ordering::Relaxed);
            m.down_until_ms.store(0, Ordering::Relaxed);
            m.successes.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_failure(&self, backend: usize) {
        let Some(m) = self.marks.get(backend) else { return };
        let failures = m.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.threshold {
            let until = match self.cooldown {
                Some(c) => self.now_ms() + c.as_millis() as u64,
                None => u64::MAX,
            };
            m.down_until_ms.store(until, Ordering::Relaxed);
        }
    }

    pub fn status(&self, backend: usize) -> HealthStatus {
        let Some(m) = self.marks.get(backend) else { return HealthStatus::Unknown };
        let failures = m.consecutive_failures.load(Ordering::Relaxed);
        if failures >= self.threshold {
            if self.now_ms() < m.down_until_ms.load(Ordering::Relaxed) {
                HealthStatus::Unhealthy
            } else {
                HealthStatus::Degraded
            }
        } else if failures > 0 {
            HealthStatus::Degraded
        } else if m.successes.load(Ordering::Relaxed) > 0 {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unknown
        }
    }

    /// Worth sending traffic to now.
    pub fn available(&self, backend: usize) -> bool {
        self.status(backend) != HealthStatus::Unhealthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_failures_take_a_backend_out_until_the_cooldown_ends() {
        let board = HealthBoard::new(1, 2, Some(Duration::from_millis(40)));
        assert_eq!(board.status(0), HealthStatus::Unknown);
        board.record_failure(0);
        assert_eq!(board.status(0), HealthStatus::Degraded);
        assert!(board.available(0));
        board.record_failure(0);
        assert_eq!(board.status(0), HealthStatus::Unhealthy);
        assert!(!board.available(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(board.status(0), HealthStatus::Degraded, "cooldown over: half-open");
        board.record_success(0);
        assert_eq!(board.status(0), HealthStatus::Healthy);
    }
}
