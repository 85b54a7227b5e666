//! Backend health: active checks every interval (the check that fits each type), passive marks
//! from real traffic (consecutive failures take a backend out for a cooldown, after which one
//! request may try it again), and recovery when either sees it answer again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The board's sense of time, in milliseconds since some start. Cooldowns and rests are read
/// from it, so tests move time on by hand instead of sleeping through a cooldown.
pub trait Clock: Send + Sync {
    fn millis(&self) -> u64;
}

/// The real one: a monotonic clock (wall-clock jumps neither shorten nor stretch a cooldown).
pub struct Monotonic(Instant);

impl Clock for Monotonic {
    fn millis(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// A clock that moves only when told to.
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn millis(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

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

/// The last active check of one backend.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub at: SystemTime,
    pub outcome: Result<usize, String>,
}

#[derive(Default)]
struct Marks {
    consecutive_failures: AtomicU32,
    successes: AtomicU64,
    /// The board clock's milliseconds until which the backend is skipped.
    down_until_ms: AtomicU64,
    /// Until when the backend asked to be left alone (429 with retry-after).
    resting_until_ms: AtomicU64,
    last_check: Mutex<Option<CheckResult>>,
}

pub struct HealthBoard {
    /// Shared with the previous generation for backends a reload kept unchanged.
    marks: Vec<Arc<Marks>>,
    threshold: u32,
    /// None: no automatic recovery.
    cooldown: Option<Duration>,
    clock: Arc<dyn Clock>,
}

impl HealthBoard {
    pub fn new(backends: usize, threshold: u32, cooldown: Option<Duration>) -> HealthBoard {
        HealthBoard::with_clock(backends, threshold, cooldown, Arc::new(Monotonic(Instant::now())))
    }

    pub fn with_clock(backends: usize, threshold: u32, cooldown: Option<Duration>, clock: Arc<dyn Clock>) -> HealthBoard {
        HealthBoard { marks: (0..backends).map(|_| Arc::default()).collect(), threshold, cooldown, clock }
    }

    /// After a reload: backends that are still there with the same settings (`same[i]` is
    /// their place on `old`) keep their marks, so a backend that was down is not first in line again.
    pub fn keep_from(&mut self, old: &HealthBoard, same: &[Option<usize>]) {
        self.clock = old.clock.clone();
        for (i, j) in same.iter().enumerate() {
            if let (Some(j), Some(slot)) = (j, self.marks.get_mut(i)) {
                if let Some(m) = old.marks.get(*j) {
                    *slot = m.clone();
                }
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.millis()
    }

    pub fn record_success(&self, backend: usize) {
        // Without auto recovery, a backend taken out stays out until restart or reload.
        if self.cooldown.is_none() && self.status(backend) == HealthStatus::Unhealthy {
            return;
        }
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
        } else if failures > 0 || self.resting(backend) {
            HealthStatus::Degraded
        } else if m.successes.load(Ordering::Relaxed) > 0 {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unknown
        }
    }

    /// Worth sending traffic to now.
    pub fn available(&self, backend: usize) -> bool {
        self.status(backend) != HealthStatus::Unhealthy && !self.resting(backend)
    }

    fn resting(&self, backend: usize) -> bool {
        // Most backends never rest: no clock read for them on every routing decision.
        self.marks.get(backend).is_some_and(|m| match m.resting_until_ms.load(Ordering::Relaxed) {
            0 => false,
            until => self.now_ms() < until,
        })
    }

    /// A backend said "busy, come back in `for_how_long`" (429 with retry-after): skip it till then.
    pub fn rest(&self, backend: usize, for_how_long: Duration) {
        if let Some(m) = self.marks.get(backend) {
            m.resting_until_ms.fetch_max(self.now_ms() + for_how_long.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// 0..1 for the weighted score: healthy or unknown 1, degraded 0.6, unhealthy 0.2.
    pub fn reliability(&self, backend: usize) -> f64 {
        match self.status(backend) {
            HealthStatus::Healthy | HealthStatus::Unknown => 1.0,
            HealthStatus::Degraded => 0.6,
            HealthStatus::Unhealthy => 0.2,
        }
    }

    /// An active check: a failure takes the backend out at once (the check is deliberate, not
    /// one unlucky request); a success brings it back, unless auto recovery is off.
    pub fn record_check(&self, backend: usize, outcome: Result<usize, String>) {
        let Some(m) = self.marks.get(backend) else { return };
        match &outcome {
            Ok(_) => self.record_success(backend),
            Err(_) => {
                m.consecutive_failures.fetch_max(self.threshold, Ordering::Relaxed);
                let until = match self.cooldown {
                    Some(c) => self.now_ms() + c.as_millis() as u64,
                    None => u64::MAX,
                };
                m.down_until_ms.store(until, Ordering::Relaxed);
            }
        }
        *m.last_check.lock().unwrap_or_else(|p| p.into_inner()) = Some(CheckResult { at: SystemTime::now(), outcome });
    }

    pub fn last_check(&self, backend: usize) -> Option<CheckResult> {
        self.marks.get(backend).and_then(|m| m.last_check.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_failures_take_a_backend_out_until_the_cooldown_ends() {
        let clock = Arc::new(ManualClock::default());
        let board = HealthBoard::with_clock(1, 2, Some(Duration::from_secs(30)), clock.clone());
        assert_eq!(board.status(0), HealthStatus::Unknown);
        board.record_failure(0);
        assert_eq!(board.status(0), HealthStatus::Degraded);
        assert!(board.available(0));
        board.record_failure(0);
        assert_eq!(board.status(0), HealthStatus::Unhealthy);
        assert!(!board.available(0));
        clock.advance(Duration::from_secs(29));
        assert_eq!(board.status(0), HealthStatus::Unhealthy, "still cooling down");
        clock.advance(Duration::from_secs(1));
        assert_eq!(board.status(0), HealthStatus::Degraded, "cooldown over: half-open");
        board.record_success(0);
        assert_eq!(board.status(0), HealthStatus::Healthy);
    }

    #[test]
    fn a_reload_keeps_the_clock_so_a_cooldown_runs_on() {
        let clock = Arc::new(ManualClock::default());
        let old = HealthBoard::with_clock(1, 1, Some(Duration::from_secs(10)), clock.clone());
        old.record_failure(0);
        clock.advance(Duration::from_secs(6));
        let mut new = HealthBoard::new(1, 1, Some(Duration::from_secs(10)));
        new.keep_from(&old, &[Some(0)]);
        assert_eq!(new.status(0), HealthStatus::Unhealthy);
        clock.advance(Duration::from_secs(4));
        assert_eq!(new.status(0), HealthStatus::Degraded, "ten seconds in all, not ten after the reload");
    }

    #[test]
    fn one_failed_check_is_enough_and_one_good_check_restores() {
        let board = HealthBoard::new(1, 3, Some(Duration::from_secs(30)));
        board.record_check(0, Err("refused".into()));
        assert_eq!(board.status(0), HealthStatus::Unhealthy);
        assert!(board.last_check(0).unwrap().outcome.is_err());
        board.record_check(0, Ok(2));
        assert_eq!(board.status(0), HealthStatus::Healthy);
        let no_recovery = HealthBoard::new(1, 3, None);
        no_recovery.record_check(0, Err("refused".into()));
        no_recovery.record_check(0, Ok(2));
        assert_eq!(no_recovery.status(0), HealthStatus::Unhealthy, "auto recovery off");
    }

    #[test]
    fn a_rest_keeps_a_busy_backend_out_for_its_retry_after() {
        let clock = Arc::new(ManualClock::default());
        let board = HealthBoard::with_clock(1, 3, Some(Duration::from_secs(30)), clock.clone());
        board.rest(0, Duration::from_secs(7));
        assert!(!board.available(0));
        assert_eq!(board.status(0), HealthStatus::Degraded);
        clock.advance(Duration::from_millis(6_999));
        assert!(!board.available(0));
        clock.advance(Duration::from_millis(1));
        assert!(board.available(0));
    }
}
