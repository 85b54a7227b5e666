//! Log lines leave the request threads at once and reach stderr in batches: each line goes over
//! a channel to tracing-appender's writer thread, which writes through a 64 KiB buffer and
//! flushes whenever the channel is empty. With one access line per request, a write(2) per line
//! under the stderr lock cost about a tenth of the gateway's throughput. If stderr stops draining,
//! lines past the queue's 128,000 are dropped rather than stalling requests.
//! Call [`flush`] before the process ends.

use std::io::{BufWriter, Write};
use std::sync::Mutex;
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};

/// Dropping the guard writes out what is queued and stops the writer thread.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// The `env_logger` target.
pub fn target() -> env_logger::Target {
    let (lines, guard) = batched(std::io::stderr());
    *WRITER.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    env_logger::Target::Pipe(Box::new(lines))
}

fn batched(out: impl Write + Send + 'static) -> (NonBlocking, WorkerGuard) {
    tracing_appender::non_blocking(BufWriter::with_capacity(64 * 1024, out))
}

/// Write out every line logged so far; later lines are not written.
pub fn flush() {
    drop(WRITER.lock().unwrap_or_else(|p| p.into_inner()).take());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_and_in_order_by_the_time_the_writer_stops() {
        let out = Shared::default();
        let (mut lines, guard) = batched(out.clone());
        for i in 0..1000 {
            lines.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        drop(guard);
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(written, expected);
    }
}
