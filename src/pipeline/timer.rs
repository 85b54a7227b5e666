//! The request path's timeouts, on pingora's shared timer (`pingora-timeout`'s fast timeout): a
//! deadline is rounded up to the next 10 ms tick and waits in a tree of the thread's own, which
//! one clock thread fires. A tokio timeout registered while the runtime's timer had nothing
//! pending unparked the worker parked in `epoll_wait` (an eventfd write, a wake-up and a context
//! switch): at one connection that was once per request (perf, `syscalls:sys_enter_write`).
//! These deadlines are seconds long, so firing up to 10 ms late costs nothing.
//!
//! Plain functions rather than `async fn`s: an `async fn` that only awaits a future made from
//! its arguments keeps room for both, so each wrapper doubled the size of what it wrapped (a
//! held stream keeps its futures for as long as it is open).

use pingora_timeout::fast_timeout::FastOrTokioTimeout;
use pingora_timeout::Timeout;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

pub use pingora_timeout::Elapsed;

/// `f`, unless `within` passes first.
pub fn within<F: Future>(within: Duration, f: F) -> Timeout<F, FastOrTokioTimeout> {
    pingora_timeout::fast_timeout::fast_timeout(within, f)
}

/// `f`, unless `deadline` passes first (counted from now).
pub fn until<F: Future>(deadline: Instant, f: F) -> Timeout<F, FastOrTokioTimeout> {
    within(deadline.saturating_duration_since(Instant::now()), f)
}
