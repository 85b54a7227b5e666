//! Log lines leave the request threads at once and reach stderr in batches: a line is appended to
//! a shared buffer (one short lock and a copy), and a writer thread wakes on a clock, every
//! [`EVERY`], to write what has gathered in one write(2). Nothing wakes it per line: with
//! tracing-appender's writer (the design before this one) every line woke its thread, which
//! flushed whenever its channel was empty, so at one connection each request cost a futex wake
//! on the request thread and about 14 µs of the writer's CPU on the other core
//! (`benches/load/tail.sh`). If stderr stops draining, lines past [`HELD_BYTES`] are dropped
//! rather than held or waited for. Call [`flush`] before the process ends. [`init`] installs the
//! logger that formats the lines.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long a line may wait before it is written.
const EVERY: Duration = Duration::from_millis(20);
/// The most that waits to be written; lines beyond it are lost.
const HELD_BYTES: usize = 8 << 20;

static BATCH: OnceLock<Arc<Batch>> = OnceLock::new();

struct Batch {
    /// Lines not yet written.
    pending: Mutex<Vec<u8>>,
    /// The output, and the buffer `pending` is swapped with (keeping both allocations).
    /// Held while writing, so batches reach the output in order.
    out: Mutex<(Box<dyn Write + Send>, Vec<u8>)>,
}

impl Batch {
    fn new(out: Box<dyn Write + Send>) -> Batch {
        Batch { pending: Mutex::new(Vec::with_capacity(64 * 1024)), out: Mutex::new((out, Vec::with_capacity(64 * 1024))) }
    }

    fn push(&self, line: &[u8]) {
        let mut pending = crate::state::lock(&self.pending);
        if pending.len() + line.len() <= HELD_BYTES {
            pending.extend_from_slice(line);
        }
    }

    /// Writes out everything pushed so far.
    fn drain(&self) {
        let mut out = crate::state::lock(&self.out);
        let (sink, spare) = &mut *out;
        std::mem::swap(&mut *crate::state::lock(&self.pending), spare);
        if !spare.is_empty() {
            let _ = sink.write_all(spare);
            let _ = sink.flush();
            spare.clear();
        }
    }
}

/// The process's logger: `RUST_LOG`'s directives (env_logger's syntax, through its own
/// `env_filter`), each line formatted into a buffer of the logging thread and appended to the
/// batch. env_logger's own formatting (styles stripped through an adapter, the timestamp
/// formatted anew per line) was most of the access log's cost per request (perf, one connection).
struct Logger {
    filter: env_filter::Filter,
    batch: Arc<Batch>,
}

thread_local! {
    /// The line being formatted, and the second its timestamp was last formatted for.
    static LINE: std::cell::RefCell<(Vec<u8>, u64, [u8; 20])> = const { std::cell::RefCell::new((Vec::new(), u64::MAX, [0; 20])) };
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.filter.matches(record) {
            return;
        }
        // A line whose own formatting logs (a pathological Display) is dropped, not a panic.
        LINE.with(|cell| {
            let Ok(mut held) = cell.try_borrow_mut() else { return };
            let (line, second, stamp) = &mut *held;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if now != *second {
                *second = now;
                let text = chrono::DateTime::from_timestamp(now as i64, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string();
                stamp.copy_from_slice(&text.as_bytes()[..20]);
            }
            line.clear();
            line.push(b'[');
            line.extend_from_slice(stamp);
            // env_logger's default layout: `[time LEVEL target] message`.
            let _ = writeln!(line, " {:<5} {}] {}", record.level(), record.target(), record.args());
            self.batch.push(line);
            // A rare long line does not stay with the thread.
            line.clear();
            line.shrink_to(4096);
        });
    }

    fn flush(&self) {}
}

/// Installs the logger (its writer thread started): `RUST_LOG`, else `default_filter`.
pub fn init(default_filter: &str) {
    let batch = BATCH.get_or_init(|| {
        let batch = Arc::new(Batch::new(Box::new(std::io::stderr())));
        let writer = batch.clone();
        let _ = std::thread::Builder::new().name("log-writer".into()).spawn(move || loop {
            std::thread::sleep(EVERY);
            writer.drain();
        });
        batch
    });
    let directives = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let filter = env_filter::Builder::new().parse(directives.as_deref().unwrap_or(default_filter)).build();
    log::set_max_level(filter.filter());
    let _ = log::set_boxed_logger(Box::new(Logger { filter, batch: batch.clone() }));
}

/// Write out every line logged so far.
pub fn flush() {
    if let Some(batch) = BATCH.get() {
        batch.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn lines_arrive_whole_and_in_order_by_the_last_drain() {
        let out = Shared::default();
        let batch = Arc::new(Batch::new(Box::new(out.clone())));
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let batch = batch.clone();
                std::thread::spawn(move || (0..500).for_each(|i| batch.push(format!("thread {t} line {i}\n").as_bytes())))
            })
            .collect();
        for _ in 0..20 {
            batch.drain();
        }
        writers.into_iter().for_each(|w| w.join().unwrap());
        batch.drain();
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        for t in 0..4 {
            let mine: Vec<&str> = written.lines().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
            let expected: Vec<String> = (0..500).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines, whole and in order");
        }
    }

    #[test]
    fn a_stuck_output_drops_lines_past_the_bound_instead_of_growing() {
        let batch = Batch::new(Box::new(Shared::default()));
        let line = [b'x'; 1024];
        for _ in 0..(HELD_BYTES / 1024 + 100) {
            batch.push(&line);
        }
        assert_eq!(crate::state::lock(&batch.pending).len(), HELD_BYTES);
    }

    #[test]
    fn a_line_has_env_loggers_layout_and_the_filter_applies() {
        use log::Log;
        let out = Shared::default();
        let batch = Arc::new(Batch::new(Box::new(out.clone())));
        let logger = Logger { filter: env_filter::Builder::new().parse("info,noisy=warn").build(), batch: batch.clone() };
        let line = |level, target: &str| logger.log(&log::Record::builder().level(level).target(target).args(format_args!("request done")).build());
        line(log::Level::Info, "hermes::pipeline::record");
        line(log::Level::Info, "noisy");
        line(log::Level::Debug, "hermes");
        batch.drain();
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 1, "only the info line of an info target passes: {written}");
        let (stamp, rest) = lines[0].strip_prefix('[').unwrap().split_at(20);
        assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{stamp}");
        assert_eq!(rest, " INFO  hermes::pipeline::record] request done");
    }
}
