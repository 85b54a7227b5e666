//! What replicas share through Redis (HERMES_REDIS_URL): virtual keys and revocations
//! ([`book`]), spend and reservations ([`budgets`]), client, key and backend rate limits
//! ([`rates`]), and ratings and the learned statistics ([`learning`]).
//!
//! Redis is never on an answer's path for longer than HERMES_REDIS_TIMEOUT_MS. A call that
//! fails or times out marks Redis down; while it is down no request calls it (each would pay the
//! timeout), and a probe every 250 ms brings it back. Meanwhile every caller falls back to its
//! local counterpart, which always keeps counting, so that what one replica did while Redis
//! was away is added back when it returns (HERMES_REDIS_FAIL_MODE=open), or virtual keys are
//! refused (closed).

pub mod book;
pub mod budgets;
pub mod learning;
pub mod rates;

use crate::state::config::RedisConfig;
use redis::aio::ConnectionManager;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The connection to the shared Redis, and whether it answers.
pub struct Replicas {
    conn: ConnectionManager,
    /// The runtime the connection's own tasks and the sync loops run on.
    runtime: tokio::runtime::Handle,
    /// This replica's name in Redis: stable across restarts (it names this replica's share of
    /// each spend, restored from its own analytics file).
    pub me: String,
    timeout: Duration,
    fail_closed: bool,
    up: AtomicBool,
    /// Learned results and served requests waiting to be published.
    outbox: tokio::sync::mpsc::Sender<learning::Note>,
}

/// Why a shared answer is not there: Redis did not answer in time (or at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Down;

impl Replicas {
    /// Connects lazily (a gateway starts while Redis is away, and catches up when it comes).
    pub fn connect(config: &RedisConfig, me: String) -> Result<Arc<Replicas>, String> {
        let client = redis::Client::open(config.url.expose()).map_err(|_| "HERMES_REDIS_URL is not a Redis URL".to_string())?;
        // Its own small runtime: the connection lives beyond any one server thread's runtime.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hermes-redis")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the Redis runtime: {e}"))?;
        let handle = runtime.handle().clone();
        // The runtime lives as long as the process (its thread is parked when idle).
        std::thread::Builder::new()
            .name("hermes-redis-rt".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start the Redis runtime: {e}"))?;
        let settings = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(250));
        let conn = {
            let _inside = handle.enter();
            ConnectionManager::new_lazy_with_config(client, settings).map_err(|_| "cannot set up the Redis connection".to_string())?
        };
        let (outbox, rx) = tokio::sync::mpsc::channel(learning::OUTBOX);
        let replicas =
            Arc::new(Replicas { conn, runtime: handle, me, timeout: config.timeout, fail_closed: config.fail_closed, up: AtomicBool::new(true), outbox });
        replicas.runtime.spawn(learning::publish(replicas.clone(), rx));
        Ok(replicas)
    }

    /// Whether Redis answered lately.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn fail_closed(&self) -> bool {
        self.fail_closed
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// One call, bounded by the timeout; skipped while Redis is down.
    async fn call<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Result<T, Down>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if !self.up() {
            return Err(Down);
        }
        self.attempt(call).await
    }

    /// One call even while Redis is down (the probe and the loops that bring it back).
    async fn attempt<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Result<T, Down>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, call(self.conn())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.went_down(&e.to_string());
                Err(Down)
            }
            Err(_) => {
                self.went_down("no answer within HERMES_REDIS_TIMEOUT_MS");
                Err(Down)
            }
        }
    }

    fn went_down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            // The error text names the address at most, never the URL's password.
            log::warn!(
                "redis: cannot reach the shared state ({why}); {}",
                if self.fail_closed { "refusing virtual keys until it is back" } else { "counting locally until it is back" }
            );
            metrics::gauge!("hermes_redis_up").set(0.0);
        }
    }

    /// The probe: PING every 250 ms while down (and, while up, as a heartbeat).
    async fn probe(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let pong: Result<String, Down> = self.attempt(|mut c| async move { redis::cmd("PING").query_async(&mut c).await }).await;
            if pong.is_ok() && !self.up.swap(true, Ordering::Relaxed) {
                log::info!("redis: the shared state is reachable again");
                metrics::gauge!("hermes_redis_up").set(1.0);
            }
        }
    }

    /// Starts the probe and the loops that keep this replica and the others in step.
    pub fn start(self: &Arc<Self>, shared: &crate::state::gateway::Shared) {
        metrics::gauge!("hermes_redis_up").set(1.0);
        self.runtime.spawn(self.clone().probe());
        self.runtime.spawn(book::follow(self.clone(), shared.keys.clone(), shared.analytics.clone()));
        self.runtime.spawn(budgets::reconcile(self.clone(), shared.keys.clone()));
        self.runtime.spawn(learning::follow(self.clone(), shared.learner.clone()));
    }

    /// Runs `f` on the Redis runtime, off any answer's path.
    pub fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(f);
    }
}

/// This replica's stable name: its host and analytics file (one writer per file, so no two
/// running replicas share both).
pub fn replica_name(db_path: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").or_else(|_| std::fs::read_to_string("/etc/hostname")).unwrap_or_default();
    // The folder, which exists before the file does: the name is the same on the first start.
    let folder = db_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let path = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf()).join(db_path.file_name().unwrap_or_default());
    let digest = crate::state::keys::digest(&format!("{}\n{}", host.trim(), path.display()));
    format!("{}-{}", host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(24).collect::<String>(), &digest[..12])
}
