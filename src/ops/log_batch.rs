//! Log lines leave in batches: each is appended to a buffer, and a background thread writes the
//! buffer to stderr every 50 ms (or at once past 64 KiB). With one access line per request, a
//! write(2) per line under the stderr lock cost about a tenth of the gateway's throughput.
//! Call [`flush`] before the process ends; a crash loses at most the last 50 ms of lines.

use std::io::Write;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
const WRITE_EVERY: Duration = Duration::from_millis(50);
const WRITE_AT_ONCE_BYTES: usize = 64 * 1024;

fn pending() -> MutexGuard<'static, Vec<u8>> {
    PENDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `env_logger` target; the first one made starts the writing thread.
pub fn target() -> env_logger::Target {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new().name("log-writer".into()).spawn(|| loop {
            std::thread::sleep(WRITE_EVERY);
            flush();
        });
    });
    env_logger::Target::Pipe(Box::new(Batched))
}

/// Write out every line logged so far.
pub fn flush() {
    // stderr first, then the buffer: two flushes can never write their batches out of order.
    let mut err = std::io::stderr().lock();
    let batch = std::mem::take(&mut *pending());
    if !batch.is_empty() {
        let _ = err.write_all(&batch);
    }
}

struct Batched;

impl Write for Batched {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut p = pending();
            p.extend_from_slice(line);
            p.len() >= WRITE_AT_ONCE_BYTES
        };
        if full {
            flush();
        }
        Ok(line.len())
    }

    /// env_logger flushes after every line; the batch waits for the clock instead.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_in_order_until_flushed() {
        let mut out = Batched;
        out.write_all(b"one\n").unwrap();
        out.write_all(b"two\n").unwrap();
        assert!(pending().ends_with(b"one\ntwo\n"));
        flush();
        assert!(pending().is_empty());
    }
}
