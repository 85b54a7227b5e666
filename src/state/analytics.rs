//! The analytics file (DuckDB at HERMES_DB_PATH): every request, attempt, routing decision,
//! rating and comparison, written off the request path by one writer thread.
//!
//! The request path only ever `try_send`s into a bounded channel: when it is full the record is
//! counted in `hermes_analytics_dropped_total` and the request goes on unharmed.

// Without the `analytics` cargo feature (on by default) DuckDB is not compiled in: records go
// nowhere. The fuzz targets build that way, so they need not compile DuckDB's C++.
#[cfg(feature = "analytics")]
mod columns;
#[cfg(feature = "analytics")]
pub mod export;
mod priority;
#[cfg(feature = "analytics")]
pub mod query;
pub mod record;
#[cfg(feature = "analytics")]
pub mod schema;
#[cfg(feature = "analytics")]
pub mod writer;

use crate::state::learn::{Seed, Served};
use record::{BackendRecord, ComparisonRecord, FeedbackRecord, JobRecord, MigrationStepRecord};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What goes to the writer thread.
pub enum Event {
    Job(Box<JobRecord>),
    // Boxed so every event is small: the queue's slots are allocated up front.
    Feedback(Box<FeedbackRecord>),
    Comparison(Vec<ComparisonRecord>),
    Backends(Vec<BackendRecord>),
    MigrationStep(Box<MigrationStepRecord>),
    /// Where an older request ran, for a rating that arrives after a restart.
    Lookup(String, tokio::sync::oneshot::Sender<Option<Served>>),
    /// A stored response of the Responses API, written or replaced.
    Response(Arc<crate::state::responses::Stored>),
    ResponseDeleted(String),
    /// Stored responses created before this many seconds since the epoch are past retention.
    ForgetResponsesBefore(u64),
    /// A virtual key made, changed or revoked; a team made or changed.
    Key(Arc<crate::state::keys::KeyRecord>),
    Team(Arc<crate::state::keys::TeamRecord>),
    /// Write everything received so far, then answer.
    Flush(Sender<()>),
    /// Write everything, then every table as Parquet into this folder.
    Export(PathBuf, tokio::sync::oneshot::Sender<Exported>),
}

/// The rows written of each table, or why the export failed.
pub type Exported = Result<Vec<(String, u64)>, String>;

/// What `hermes export` writes from a file, when DuckDB is not compiled in.
#[cfg(not(feature = "analytics"))]
pub fn file_to_parquet(_: &Path, _: &Path) -> Result<Vec<(String, u64)>, String> {
    Err(NOT_BUILT_IN.to_string())
}
#[cfg(feature = "analytics")]
pub use export::file_to_parquet;

/// What `hermes stats --db` prints from, when DuckDB is not compiled in.
#[cfg(not(feature = "analytics"))]
pub fn stats_from_files(_: &[impl AsRef<Path>]) -> Result<Vec<crate::state::learn::StatRow>, String> {
    Err(NOT_BUILT_IN.to_string())
}
#[cfg(feature = "analytics")]
pub use query::stats_from_files;

/// What `hermes classifier train --from-db` reads, when DuckDB is not compiled in.
#[cfg(not(feature = "analytics"))]
#[allow(clippy::type_complexity)]
pub fn corrections_from_file(_: &Path) -> Result<(Vec<(String, Vec<(u32, f32)>)>, usize), String> {
    Err(NOT_BUILT_IN.to_string())
}
#[cfg(feature = "analytics")]
pub use query::corrections_from_file;

#[cfg(not(feature = "analytics"))]
const NOT_BUILT_IN: &str = "this hermes was built without the `analytics` feature (DuckDB)";

/// The sending side, cheap to clone; the writer thread ends when the last clone is gone.
#[derive(Clone)]
pub struct Analytics {
    tx: Option<SyncSender<Event>>,
    queued: Arc<AtomicUsize>,
    priority: Arc<priority::WriterPriority>,
    /// Lookups of requests the learner no longer remembers: each is a scan on the writer thread.
    lookups: Arc<governor::DefaultDirectRateLimiter>,
    /// Records accepted and then not written (queue full, writer stopped, a row DuckDB refused).
    lost: Arc<std::sync::atomic::AtomicU64>,
}

/// How many lookups in the file per second (a burst of as many).
const LOOKUPS_PER_SECOND: u32 = 50;

fn lookup_limiter() -> Arc<governor::DefaultDirectRateLimiter> {
    let rate = std::num::NonZeroU32::new(LOOKUPS_PER_SECOND).unwrap_or(std::num::NonZeroU32::MIN);
    Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(rate)))
}

/// What the file remembered at start-up, for the learner.
pub struct Memory {
    pub seeds: Vec<Seed>,
    pub recent_choices: Vec<(String, String)>,
    /// Stored responses, newest first.
    pub responses: Vec<crate::state::responses::Stored>,
    /// The virtual keys and teams, and what each spent in its budget's current window.
    pub keys: crate::state::keys::KeyBook,
}

impl Analytics {
    /// Open (or create) the file, bring its schema up to date, read what the learner needs and
    /// start the writer. Fails when the file cannot be opened, e.g. another process holds it.
    #[cfg(feature = "analytics")]
    pub fn open(path: &Path, queue: usize, memory_mb: u64) -> Result<(Analytics, Memory), String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("HERMES_DB_PATH: cannot create {}: {e}", dir.display()))?;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let path = path.to_path_buf();
        let writer_queued = queued.clone();
        let lost: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let writer_lost = lost.clone();
        let priority = Arc::new(priority::WriterPriority::new(queue));
        let writer_priority = priority.clone();
        std::thread::Builder::new()
            .name("analytics".into())
            .stack_size(16 << 20)
            .spawn(move || {
                let opened = open_file(&path, memory_mb).and_then(|conn| {
                    let memory = Memory {
                        seeds: query::seeds(&conn).map_err(|e| e.to_string())?,
                        recent_choices: query::recent_choices(&conn).map_err(|e| e.to_string())?,
                        responses: query::stored_responses(&conn).map_err(|e| e.to_string())?,
                        keys: query::key_book(&conn).map_err(|e| e.to_string())?,
                    };
                    let writer = writer::Writer::new(conn, writer_queued, writer_lost, writer_priority).map_err(|e| e.to_string())?;
                    Ok((writer, memory))
                });
                match opened {
                    Ok((writer, memory)) => {
                        let _ = ready_tx.send(Ok(memory));
                        writer.run(rx);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("HERMES_DB_PATH: cannot use {}: {e}", path.display())));
                    }
                }
            })
            .map_err(|e| format!("cannot start the analytics writer: {e}"))?;
        let memory = ready_rx.recv().map_err(|_| "the analytics writer stopped while opening the file".to_string())??;
        Ok((Analytics { tx: Some(tx), queued, priority, lookups: lookup_limiter(), lost }, memory))
    }

    /// Without DuckDB compiled in, the gateway runs and remembers nothing.
    #[cfg(not(feature = "analytics"))]
    pub fn open(path: &Path, _queue: usize, _memory_mb: u64) -> Result<(Analytics, Memory), String> {
        log::warn!("{NOT_BUILT_IN}: nothing is written to {}", path.display());
        Ok((Analytics::disabled(), Memory { seeds: Vec::new(), recent_choices: Vec::new(), responses: Vec::new(), keys: Default::default() }))
    }

    /// Records go nowhere (tests of other parts, `check-config`).
    pub fn disabled() -> Analytics {
        Analytics {
            tx: None,
            queued: Arc::new(AtomicUsize::new(0)),
            priority: Arc::new(priority::WriterPriority::new(0)),
            lookups: lookup_limiter(),
            lost: Arc::default(),
        }
    }

    /// Hand over a finished request; never waits.
    pub fn record(&self, job: JobRecord) {
        self.offer(Event::Job(Box::new(job)));
    }

    /// Any event, without waiting; false when it was dropped (queue full or writer gone).
    pub fn offer(&self, event: Event) -> bool {
        let Some(tx) = &self.tx else { return false };
        let backlog = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        match tx.try_send(event) {
            Ok(()) => {
                self.priority.falling_behind(backlog);
                true
            }
            Err(e) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                let reason = if matches!(e, TrySendError::Full(_)) { "queue_full" } else { "writer_stopped" };
                metrics::counter!("hermes_analytics_dropped_total", "reason" => reason).increment(1);
                self.lost.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Records accepted so far and not written.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Records waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Where an older request ran, from the file; `Err` when lookups are over their rate.
    pub async fn lookup(&self, request_id: &str) -> Result<Option<Served>, ()> {
        if self.lookups.check().is_err() {
            return Err(());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self.offer(Event::Lookup(request_id.to_string(), reply)) {
            return Ok(None);
        }
        self.priority.awaited();
        Ok(tokio::time::timeout(Duration::from_secs(5), answer).await.ok().and_then(Result::ok).flatten())
    }

    /// Every table as Parquet in `dir`, written by the writer (the one process with the file
    /// open) after what it holds; the rows of each table.
    pub async fn export(&self, dir: PathBuf) -> Exported {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self.offer(Event::Export(dir, reply)) {
            return Err("the analytics file is not open (or its queue is full)".into());
        }
        self.priority.awaited();
        tokio::time::timeout(Duration::from_secs(300), answer)
            .await
            .map_err(|_| "the export did not finish within 5 minutes".to_string())?
            .map_err(|_| "the analytics writer stopped".to_string())?
    }

    /// Block until everything sent so far is in the file, or `within` passes. Blocking: call it
    /// from a plain thread (shutdown, the CLI), never from the request path.
    pub fn flush(&self, within: Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (done, wait) = std::sync::mpsc::channel();
        self.queued.fetch_add(1, Ordering::Relaxed);
        if tx.send(Event::Flush(done)).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        // Asked again while waiting: a writer that drained just before the flush was queued may
        // have gone idle after this asked the first time.
        let until = Instant::now() + within;
        loop {
            self.priority.awaited();
            match wait.recv_timeout(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(50))) {
                Ok(()) => return true,
                Err(RecvTimeoutError::Timeout) if Instant::now() < until => continue,
                Err(_) => return false,
            }
        }
    }
}

#[cfg(feature = "analytics")]
fn open_file(path: &Path, memory_mb: u64) -> Result<duckdb::Connection, String> {
    // One thread is plenty for appends and the start-up reads, and keeps DuckDB off the cores
    // that serve requests.
    let config = duckdb::Config::default().threads(1).and_then(|c| c.max_memory(&format!("{memory_mb}MB"))).map_err(|e| e.to_string())?;
    let conn = duckdb::Connection::open_with_flags(path, config).map_err(|e| e.to_string())?;
    schema::migrate_to(&conn, schema::latest())?;
    Ok(conn)
}

#[cfg(all(test, feature = "analytics"))]
mod tests {
    use super::record::{AttemptRecord, FeedbackRecord};
    use super::*;
    use std::time::SystemTime;

    fn job(id: &str, backend: &str, ok: bool) -> JobRecord {
        JobRecord {
            request_id: id.into(),
            endpoint: "chat_completions",
            job_type: Some("code_generation"),
            status: if ok { 200 } else { 502 },
            backend: Some(backend.into()),
            model_used: Some("m".into()),
            attempts: vec![AttemptRecord {
                backend: backend.into(),
                model: "m".into(),
                elapsed: Duration::from_millis(40),
                ttft: None,
                status: Some(if ok { 200 } else { 500 }),
                success: Some(ok),
                error: None,
                tokens: Some(10),
                cost_cents: Some(0.5),
            }],
            ..JobRecord::default()
        }
    }

    #[test]
    fn records_flush_and_seed_the_next_start() {
        let dir = std::env::temp_dir().join(format!("hermes-analytics-{}", fastrand::u64(..)));
        let path = dir.join("a.duckdb");
        let (a, memory) = Analytics::open(&path, 64, 64).unwrap();
        assert!(memory.seeds.is_empty());
        for i in 0..10 {
            assert!(a.record_ok(job(&format!("r{i}"), "home", i != 0)));
        }
        a.offer(Event::Feedback(Box::new(FeedbackRecord {
            request_id: "r1".into(),
            rating: Some(5),
            at: Some(SystemTime::now()),
            ..FeedbackRecord::default()
        })));
        assert!(a.flush(Duration::from_secs(10)));
        drop(a);
        // The writer lets go of the file once the last sender is gone.
        let mut reopened = None;
        for _ in 0..100 {
            if let Ok(r) = Analytics::open(&path, 64, 64) {
                reopened = Some(r);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (_, memory) = reopened.unwrap();
        let s = &memory.seeds[0];
        assert_eq!((s.attempts, s.successes, s.ratings, s.rating_sum), (10, 9, 1, 5.0));
        assert_eq!(s.recent_latencies_ms.len(), 9);
        std::fs::remove_dir_all(dir).ok();
    }

    impl Analytics {
        fn record_ok(&self, job: JobRecord) -> bool {
            self.offer(Event::Job(Box::new(job)))
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_rather_than_waits() {
        // A writer that is not reading: the queue of two fills and the third record is refused
        // at once.
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let a = Analytics {
            tx: Some(tx),
            queued: Arc::new(AtomicUsize::new(0)),
            priority: Arc::new(priority::WriterPriority::new(1)),
            lookups: lookup_limiter(),
            lost: Arc::default(),
        };
        let started = std::time::Instant::now();
        let sent: Vec<bool> = (0..3).map(|i| a.record_ok(job(&format!("r{i}"), "home", true))).collect();
        assert_eq!(sent, vec![true, true, false]);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(a.queued(), 2);
        drop(rx);
        assert!(!a.record_ok(job("late", "home", true)), "a stopped writer drops too");
    }
}
