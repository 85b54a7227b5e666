//! The writer's CPU priority. Measured here: under Linux's EEVDF scheduler a writer waking from
//! its 20 ms sleep ran a whole slice (about 3 ms of DuckDB work) before a request thread that
//! woke meanwhile got the core back; that was the one-connection p99 (2.3–3.0 ms against
//! 0.4–0.7 ms without analytics). Nice values do not shorten the slice; SCHED_IDLE does, since a
//! normal thread that wakes preempts an idle one at once.
//!
//! An idle writer starves while the cores are saturated, and a dropped record is worse than a
//! slow p99: when the backlog passes a quarter of the queue, the request thread that sees it
//! puts the writer back to normal priority (an idle writer may not run soon enough to notice);
//! the writer goes idle again once it has caught up. An unprivileged thread may not leave
//! SCHED_IDLE (RLIMIT_NICE), so the writer only goes idle where it can come back: as root, or
//! with RLIMIT_NICE allowing nice 0.

// Without the `analytics` feature there is no writer thread: only the request side is used.
#![cfg_attr(not(feature = "analytics"), allow(dead_code))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use thread_priority::{set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadId, ThreadPriority, ThreadSchedulePolicy};

pub struct WriterPriority {
    thread: OnceLock<ThreadId>,
    adaptive: AtomicBool,
    idle: AtomicBool,
    /// Backlog at or under which the writer goes idle.
    calm_at: usize,
    /// Backlog over which it runs at normal priority.
    busy_over: usize,
}

impl WriterPriority {
    pub fn new(queue_capacity: usize) -> WriterPriority {
        WriterPriority {
            thread: OnceLock::new(),
            adaptive: AtomicBool::new(can_return_from_idle()),
            idle: AtomicBool::new(false),
            calm_at: queue_capacity / 64,
            busy_over: queue_capacity / 4,
        }
    }

    /// On the writer thread, before its loop.
    pub fn register_writer(&self) {
        let _ = self.thread.set(thread_native_id());
    }

    /// The writer, after each drain: idle again once caught up.
    pub fn caught_up(&self, backlog: usize) {
        if backlog <= self.calm_at && self.adaptive.load(Ordering::Relaxed) && !self.idle.load(Ordering::Relaxed) {
            self.idle.store(self.apply(NormalThreadSchedulePolicy::Idle), Ordering::Relaxed);
        }
    }

    /// The request path, after queuing a record: back to normal priority when far behind.
    pub fn falling_behind(&self, backlog: usize) {
        if backlog > self.busy_over {
            self.awaited();
        }
    }

    /// Someone waits for the writer (a shutdown flush, a lookup, an export): normal priority
    /// now, since an idle writer gets next to no time while other work fills the cores.
    pub fn awaited(&self) {
        if self.idle.swap(false, Ordering::Relaxed) && !self.apply(NormalThreadSchedulePolicy::Other) {
            self.idle.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the writer's policy is now the one asked for.
    fn apply(&self, policy: NormalThreadSchedulePolicy) -> bool {
        let Some(&thread) = self.thread.get() else { return false };
        match set_thread_priority_and_policy(thread, ThreadPriority::Min, ThreadSchedulePolicy::Normal(policy)) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("analytics: the writer's priority cannot be set to {policy:?} ({e:?}); it stays as it is");
                self.adaptive.store(false, Ordering::Relaxed);
                false
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn can_return_from_idle() -> bool {
    use rustix::process::{geteuid, getrlimit, Resource};
    // RLIMIT_NICE is 20 minus the lowest nice value allowed: 20 or more allows nice 0.
    geteuid().is_root() || getrlimit(Resource::Nice).current.is_some_and(|n| n >= 20)
}

#[cfg(not(target_os = "linux"))]
fn can_return_from_idle() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use thread_priority::thread_schedule_policy;

    #[test]
    fn the_writer_idles_when_caught_up_and_a_request_thread_wakes_it_when_behind() {
        let priority = Arc::new(WriterPriority::new(64 * 1024));
        if !priority.adaptive.load(Ordering::Relaxed) {
            return; // Unprivileged here: the writer keeps normal priority, nothing to check.
        }
        let policy_of_writer = |p: Arc<WriterPriority>, step: Box<dyn Fn(&WriterPriority) + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let writer = std::thread::spawn(move || {
                p.register_writer();
                step(&p);
                tx.send(thread_schedule_policy().unwrap()).unwrap();
                go_rx.recv().unwrap();
                thread_schedule_policy().unwrap()
            });
            (rx.recv().unwrap(), go_tx, writer)
        };
        let (after_caught_up, go, writer) = policy_of_writer(priority.clone(), Box::new(|p| p.caught_up(10)));
        assert_eq!(after_caught_up, ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle));
        priority.falling_behind(1_000); // not far enough behind
        assert!(priority.idle.load(Ordering::Relaxed));
        priority.falling_behind(20_000); // from this (request) thread
        go.send(()).unwrap();
        assert_eq!(writer.join().unwrap(), ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other));

        // Waited for (a flush at shutdown): normal priority however short the backlog.
        let priority = Arc::new(WriterPriority::new(64 * 1024));
        let (after_caught_up, go, writer) = policy_of_writer(priority.clone(), Box::new(|p| p.caught_up(0)));
        assert_eq!(after_caught_up, ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle));
        priority.awaited();
        go.send(()).unwrap();
        assert_eq!(writer.join().unwrap(), ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other));
    }
}
