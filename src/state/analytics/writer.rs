//! The one thread that writes the analytics file. Records arrive over a bounded channel, wait in
//! memory, and go to DuckDB in batches through its Appender: at least once a second, when a
//! batch is large, before a rating or lookup that must see them, and on shutdown.

use super::columns;
use super::priority::WriterPriority;
use super::query;
use super::record::{micros_or_now, BackendRecord, ComparisonRecord, FeedbackRecord, JobRecord};
use super::Event;
use crate::state::learn::rating_quality;
use duckdb::types::{TimeUnit, Value};
use duckdb::{params, Connection};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A kill -9 loses at most this much.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long a rating, lookup or shutdown flush may wait for the writer to look.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// A batch this large is written without waiting for the clock.
const BATCH_ROWS: usize = 5_000;

pub struct Writer {
    conn: Connection,
    jobs: Vec<JobRecord>,
    /// Ratings and corrections, written with the next batch: one UPDATE for all of them rather
    /// than a scan of `backend_performance` per rating.
    ratings: Vec<FeedbackRecord>,
    /// Stored responses of the Responses API, written with the next batch: one auto-committed
    /// INSERT each cost the writer about 2 ms of a core per response, on the cores the requests use.
    responses: Vec<Arc<crate::state::responses::Stored>>,
    backend_ids: HashMap<String, i32>,
    next_attempt_id: i64,
    next_selection_id: i64,
    queued: Arc<AtomicUsize>,
    lost: Arc<AtomicU64>,
    priority: Arc<WriterPriority>,
}

impl Writer {
    pub fn new(conn: Connection, queued: Arc<AtomicUsize>, lost: Arc<AtomicU64>, priority: Arc<WriterPriority>) -> duckdb::Result<Writer> {
        let next = |table: &str| -> duckdb::Result<i64> { conn.query_row(&format!("SELECT coalesce(max(id), 0) + 1 FROM {table}"), [], |r| r.get(0)) };
        let next_attempt_id = next("backend_performance")?;
        let next_selection_id = next("backend_selection_history")?;
        let mut w = Writer {
            conn,
            jobs: Vec::new(),
            ratings: Vec::new(),
            responses: Vec::new(),
            backend_ids: HashMap::new(),
            next_attempt_id,
            next_selection_id,
            queued,
            lost,
            priority,
        };
        w.load_backend_ids()?;
        Ok(w)
    }

    /// Wakes on a clock, not per record: a writer parked in `recv` would cost every request a
    /// futex wake and a context switch; parked in `sleep`, senders wake nobody.
    pub fn run(mut self, rx: Receiver<Event>) {
        self.priority.register_writer();
        let mut last_flush = Instant::now();
        loop {
            let mut handled = 0usize;
            let stopped = loop {
                match rx.try_recv() {
                    Ok(event) => {
                        handled += 1;
                        self.handle(event);
                        if self.batch_full() {
                            break false;
                        }
                    }
                    Err(TryRecvError::Empty) => break false,
                    Err(TryRecvError::Disconnected) => break true,
                }
            };
            // The queue-depth gauge is read from this count when /metrics is scraped.
            let backlog = self.queued.fetch_sub(handled, Ordering::Relaxed).saturating_sub(handled);
            self.priority.caught_up(backlog);
            if stopped {
                self.flush();
                return;
            }
            if last_flush.elapsed() >= FLUSH_EVERY || self.batch_full() {
                self.flush();
                last_flush = Instant::now();
            }
            if self.jobs.len() < BATCH_ROWS {
                std::thread::sleep(POLL_EVERY);
            }
        }
    }

    /// Something waiting has reached a batch's size: it is written without waiting for the clock.
    fn batch_full(&self) -> bool {
        [self.jobs.len(), self.ratings.len(), self.responses.len()].iter().any(|&n| n >= BATCH_ROWS)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Job(job) => self.jobs.push(*job),
            Event::Feedback(f) => self.ratings.push(*f),
            Event::Comparison(rows) => {
                if let Err(e) = self.comparisons(&rows) {
                    log::error!("analytics: a comparison was not written: {e}");
                }
            }
            Event::Backends(rows) => {
                if let Err(e) = self.backends(&rows) {
                    log::error!("analytics: the backends table was not updated: {e}");
                }
            }
            Event::MigrationStep(m) => {
                let at = timestamp(Some(SystemTime::now()));
                let written = self.conn.execute(
                    "INSERT INTO migration_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![m.migration_id, m.strategy, m.from, m.to, m.step, m.action, m.description, m.outcome, m.detail, m.steering, at],
                );
                if let Err(e) = written {
                    log::error!("analytics: migration step {} of {} was not written: {e}", m.step, m.migration_id);
                }
            }
            Event::Lookup(request_id, reply) => {
                // A job still waiting here is answered from memory: no flush, so that lookups
                // (of ids that may not exist at all) cannot force small batches.
                let waiting = self.jobs.iter().rev().find(|j| j.request_id == request_id).map(served_of);
                let found = match waiting {
                    Some(s) => s,
                    None => query::served(&self.conn, &request_id).unwrap_or(None),
                };
                let _ = reply.send(found);
            }
            Event::Response(s) => self.responses.push(s),
            Event::ResponseDeleted(id) => {
                self.responses.retain(|s| s.id != id);
                if let Err(e) = self.conn.execute("DELETE FROM responses WHERE id = ?", [&id]) {
                    log::error!("analytics: stored response {id} was not deleted: {e}");
                }
            }
            Event::ForgetResponsesBefore(secs) => {
                self.responses.retain(|s| s.created_at >= secs);
                let before = at_second(secs);
                if let Err(e) = self.conn.execute("DELETE FROM responses WHERE created_date < ?", params![before]) {
                    log::warn!("analytics: stored responses past retention not deleted: {e}");
                }
            }
            Event::Key(k) => {
                let settings = serde_json::to_string(&k.spec).unwrap_or_default();
                let written = self.conn.execute(
                    "INSERT OR REPLACE INTO virtual_keys VALUES (?, ?, ?, ?, ?, ?)",
                    params![k.spec.name, k.spec.team, k.digest, settings, at_second(k.created_at), k.revoked_at.map(at_second)],
                );
                if let Err(e) = written {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    log::error!("analytics: key {} was not written: {e}", k.spec.name);
                }
            }
            Event::Team(t) => {
                let written = self.conn.execute(
                    "INSERT OR REPLACE INTO teams VALUES (?, ?, ?, ?)",
                    params![t.name, t.budget.map(|b| b.cents), t.budget.map(|b| b.window.as_str()), at_second(t.created_at)],
                );
                if let Err(e) = written {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    log::error!("analytics: team {} was not written: {e}", t.name);
                }
            }
            Event::Flush(done) => {
                self.flush();
                self.update_backend_totals();
                let _ = done.send(());
            }
            Event::Export(dir, reply) => {
                self.flush();
                self.update_backend_totals();
                let _ = reply.send(super::export::to_parquet(&self.conn, &dir));
            }
        }
    }

    /// Write the waiting jobs in one transaction (on failure they are counted as dropped), then
    /// the ratings that came meanwhile.
    pub fn flush(&mut self) {
        self.flush_jobs();
        self.flush_responses();
        if !self.ratings.is_empty() {
            let ratings = std::mem::take(&mut self.ratings);
            if let Err(e) = self.feedback(&ratings) {
                log::error!("analytics: {} rating(s) were not written: {e}", ratings.len());
            }
        }
    }

    fn flush_jobs(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.jobs);
        let started = Instant::now();
        match self.append_all(&batch) {
            Ok(rows) => {
                metrics::counter!("hermes_analytics_rows_written_total").increment(rows);
                metrics::histogram!("hermes_analytics_flush_seconds").record(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                // One bad row must not cost its batch: write them one by one, and lose only
                // the rows DuckDB refuses.
                log::warn!("analytics: a batch of {} job(s) was refused ({e}); writing them one by one", batch.len());
                for job in &batch {
                    match self.append_all(std::slice::from_ref(job)) {
                        Ok(rows) => metrics::counter!("hermes_analytics_rows_written_total").increment(rows),
                        Err(e) => self.lost(&job.request_id, &e.to_string()),
                    }
                }
            }
        }
        // The buffer is kept for the next batch: grown anew each second, it faulted its pages in
        // again (the writer's page faults per request went from 0.69 to 0.47 with this).
        batch.clear();
        self.jobs = batch;
    }

    /// The waiting stored responses in one transaction; if DuckDB refuses it (an id already in
    /// the file), one by one, each replacing the row of its id.
    fn flush_responses(&mut self) {
        if self.responses.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.responses);
        let appended = self.in_transaction(|w| {
            let mut app = w.conn.appender("responses")?;
            for s in &batch {
                app.append_row(response_row(s))?;
            }
            app.flush()
        });
        if appended.is_ok() {
            return;
        }
        for s in &batch {
            if let Err(e) = self.conn.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", response_row(s)) {
                self.lost.fetch_add(1, Ordering::Relaxed);
                log::error!("analytics: stored response {} was not written: {e}", s.id);
            }
        }
    }

    /// `write` in one transaction: all of it or none.
    fn in_transaction<T>(&mut self, write: impl FnOnce(&mut Self) -> duckdb::Result<T>) -> duckdb::Result<T> {
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        match write(self).and_then(|done| self.conn.execute_batch("COMMIT").map(|()| done)) {
            Ok(done) => Ok(done),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The jobs in one transaction: all of them or none.
    fn append_all(&mut self, batch: &[JobRecord]) -> duckdb::Result<u64> {
        self.in_transaction(|w| w.append(batch))
    }

    fn lost(&self, request_id: &str, why: &str) {
        log::error!("analytics: job {request_id} could not be written and is lost: {why}");
        metrics::counter!("hermes_analytics_dropped_total", "reason" => "write_error").increment(1);
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Each table's rows as one record batch of columns (see `columns`).
    fn append(&mut self, batch: &[JobRecord]) -> duckdb::Result<u64> {
        let ids = &self.backend_ids;
        let backend_id = |name: Option<&str>| name.and_then(|n| ids.get(n).copied());
        let jobs = columns::jobs(batch, &backend_id).map_err(arrow_failed)?;
        let attempts = columns::attempts(batch, self.next_attempt_id, &backend_id).map_err(arrow_failed)?;
        let selections = columns::selections(batch, self.next_selection_id, &backend_id).map_err(arrow_failed)?;
        let jobs = self.append_columns("jobs", Some(jobs))?;
        let attempts = self.append_columns("backend_performance", attempts)?;
        let decisions = self.append_columns("backend_selection_history", selections)?;
        self.next_attempt_id += attempts as i64;
        self.next_selection_id += decisions as i64;
        Ok((jobs + attempts + decisions) as u64)
    }

    /// One table's rows, if any; returns how many.
    fn append_columns(&self, table: &str, columns: Option<duckdb::arrow::record_batch::RecordBatch>) -> duckdb::Result<usize> {
        let Some(columns) = columns else { return Ok(0) };
        let count = columns.num_rows();
        let mut app = self.conn.appender(table)?;
        app.append_record_batch(columns)?;
        app.flush()?;
        Ok(count)
    }

    fn feedback(&mut self, ratings: &[FeedbackRecord]) -> duckdb::Result<()> {
        self.in_transaction(|w| {
            w.conn.execute_batch("CREATE OR REPLACE TEMP TABLE rated (job_id VARCHAR, rating INTEGER, quality DOUBLE)")?;
            let mut rated = w.conn.appender("rated")?;
            let mut feedback = w.conn.appender("feedback")?;
            let mut corrections = w.conn.appender("classifier_corrections")?;
            for f in ratings {
                if let Some(rating) = f.rating {
                    rated.append_row(params![f.request_id, rating, rating_quality(rating)])?;
                    feedback.append_row(params![f.request_id, rating, f.comment, timestamp(f.at)])?;
                }
                if let Some(job_type) = f.job_type {
                    corrections.append_row(params![f.request_id, job_type, f.features, timestamp(f.at)])?;
                }
            }
            rated.flush()?;
            feedback.flush()?;
            corrections.flush()?;
            // The last rating of a job wins, as it would one UPDATE at a time.
            w.conn.execute_batch(
                "UPDATE backend_performance SET user_satisfaction = r.rating, quality_score = r.quality
                 FROM (SELECT job_id, arg_max(rating, rowid) AS rating, arg_max(quality, rowid) AS quality FROM rated GROUP BY job_id) r
                 WHERE backend_performance.job_id = r.job_id AND backend_performance.success;
                 DROP TABLE rated;",
            )
        })
    }

    fn comparisons(&self, rows: &[ComparisonRecord]) -> duckdb::Result<()> {
        let mut app = self.conn.appender("comparisons")?;
        let now = timestamp(Some(SystemTime::now()));
        for c in rows {
            app.append_row(params![
                c.comparison_id,
                c.source,
                c.request_id,
                c.prompt,
                c.backend,
                c.model,
                c.status,
                c.seconds,
                c.cost_cents,
                c.answer_chars as i64,
                c.similarity,
                c.error,
                now.clone(),
            ])?;
        }
        app.flush()
    }

    fn backends(&mut self, rows: &[BackendRecord]) -> duckdb::Result<()> {
        for b in rows {
            self.conn.execute(
                "INSERT INTO backends (name, backend_type, enabled, is_primary, config, capabilities, quality_score, speed_score, cost_score, reliability_score, health_status)
                 VALUES (?, ?, TRUE, ?, ?, ?, ?, ?, ?, 1.0, ?)
                 ON CONFLICT (name) DO UPDATE SET backend_type = excluded.backend_type, enabled = TRUE, is_primary = excluded.is_primary,
                    config = excluded.config, capabilities = excluded.capabilities, quality_score = excluded.quality_score,
                    speed_score = excluded.speed_score, cost_score = excluded.cost_score, health_status = excluded.health_status,
                    updated_date = now()",
                params![b.name, b.kind, b.is_primary, b.config, b.capabilities, b.quality, b.speed, b.cost_score, b.health_status],
            )?;
        }
        // Backends no longer configured stay (their history refers to them) but are marked off.
        let names: Vec<String> = rows.iter().map(|b| b.name.replace('\'', "''")).collect();
        if !names.is_empty() {
            let list = names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
            self.conn.execute_batch(&format!("UPDATE backends SET enabled = FALSE WHERE name NOT IN ({list})"))?;
        }
        self.load_backend_ids()?;
        self.update_backend_totals();
        Ok(())
    }

    fn load_backend_ids(&mut self) -> duckdb::Result<()> {
        let mut stmt = self.conn.prepare("SELECT name, id FROM backends")?;
        let ids = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i32>(1)?)))?;
        self.backend_ids = ids.collect::<duckdb::Result<_>>()?;
        Ok(())
    }

    /// The spec's running totals on `backends`, from the attempts.
    fn update_backend_totals(&self) {
        let sql = "UPDATE backends SET total_jobs = s.total, successful_jobs = s.ok, failed_jobs = s.failed, reliability_score = s.reliability
                   FROM (SELECT backend, count(*) AS total, count(*) FILTER (WHERE success) AS ok, count(*) FILTER (WHERE NOT success) AS failed,
                                CASE WHEN count(success) > 0 THEN count(*) FILTER (WHERE success) / count(success) ELSE 1.0 END AS reliability
                         FROM backend_performance GROUP BY backend) s
                   WHERE backends.name = s.backend";
        if let Err(e) = self.conn.execute_batch(sql) {
            log::warn!("analytics: backend totals not updated: {e}");
        }
    }
}

fn arrow_failed(e: duckdb::arrow::error::ArrowError) -> duckdb::Error {
    duckdb::Error::ToSqlConversionFailure(Box::new(e))
}

fn timestamp(at: Option<SystemTime>) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros_or_now(at))
}

/// A stored response as the `responses` table's row.
fn response_row(s: &crate::state::responses::Stored) -> [Value; 5] {
    let conversation = serde_json::to_string(&s.conversation).unwrap_or_default();
    [Value::Text(s.id.clone()), Value::Text(s.owner.clone()), at_second(s.created_at), Value::Text(s.response.to_string()), Value::Text(conversation)]
}

/// A time kept in whole seconds since the epoch, as a TIMESTAMP.
fn at_second(secs: u64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, (secs as i64).saturating_mul(1_000_000))
}

/// Where a job that is still waiting to be written ran (as `query::served` reads it from the file).
fn served_of(j: &JobRecord) -> Option<crate::state::learn::Served> {
    let job_type = crate::decide::classify::JobType::parse(j.job_type?)?;
    let answered = j.attempts.iter().rev().find(|a| a.success == Some(true))?;
    Some(crate::state::learn::Served {
        job_type,
        band: j.complexity.map(crate::state::learn::Band::of),
        backend: answered.backend.clone(),
        model: answered.model.clone(),
        rating: None,
        client: j.client.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::analytics::record::{AttemptRecord, SelectionRecord};

    fn at(micros: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_micros(micros))
    }

    fn in_memory_writer(lost: Arc<AtomicU64>) -> Writer {
        let conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate_to(&conn, super::super::schema::latest()).unwrap();
        conn.execute_batch("INSERT INTO backends (name, backend_type, config) VALUES ('home', 'local', '{}'), ('cloud', 'openai', '{}')").unwrap();
        Writer::new(conn, Arc::default(), lost, Arc::new(WriterPriority::new(64))).unwrap()
    }

    /// Every column of one table's rows as text (NULL as None), sorted by `order`.
    fn rows(conn: &Connection, table: &str, order: &str) -> Vec<Vec<Option<String>>> {
        let mut stmt = conn.prepare(&format!("SELECT COLUMNS(*)::VARCHAR FROM {table} ORDER BY {order}")).unwrap();
        let mut out = Vec::new();
        let mut found = stmt.query([]).unwrap();
        while let Some(row) = found.next().unwrap() {
            let width = row.as_ref().column_count();
            out.push((0..width).map(|i| row.get::<_, Option<String>>(i).unwrap()).collect());
        }
        out
    }

    fn texts(values: &[Option<&str>]) -> Vec<Option<String>> {
        values.iter().map(|v| v.map(str::to_string)).collect()
    }

    #[test]
    fn every_column_of_the_per_request_tables_lands_where_the_schema_says() {
        let mut w = in_memory_writer(Arc::default());
        let full = JobRecord {
            request_id: "req_full".into(),
            at: at(1_700_000_000_123_456),
            endpoint: "/chat/completions",
            model_requested: Some("auto".into()),
            job_type: Some("code_generation"),
            complexity: Some(0.25),
            criteria: Some("cost_first"),
            stream: true,
            status: 200,
            backend: Some("cloud".into()),
            model_used: Some("gpt-4o-mini".into()),
            total: Duration::from_micros(42_500),
            ttft: Some(Duration::from_micros(7_250)),
            overhead: Duration::from_micros(125),
            prompt_tokens: Some(12),
            completion_tokens: Some(34),
            cached_tokens: Some(5),
            reasoning_tokens: Some(6),
            cost_cents: Some(0.5),
            cache_hit: false,
            error: Some("first try failed".into()),
            prompt: Some("hi".into()),
            response: Some("hello".into()),
            attempts: vec![
                AttemptRecord {
                    backend: "home".into(),
                    model: "llama3".into(),
                    elapsed: Duration::from_millis(10),
                    ttft: None,
                    status: Some(502),
                    success: Some(false),
                    error: Some("bad gateway".into()),
                    tokens: None,
                    cost_cents: None,
                },
                AttemptRecord {
                    backend: "cloud".into(),
                    model: "gpt-4o-mini".into(),
                    elapsed: Duration::from_millis(30),
                    ttft: Some(Duration::from_millis(4)),
                    status: Some(200),
                    success: Some(true),
                    error: None,
                    tokens: Some(46),
                    cost_cents: Some(0.5),
                },
            ],
            selection: Some(SelectionRecord {
                criteria: "cost_first",
                candidates: vec![("home".into(), "llama3".into(), 0.0), ("cloud".into(), "gpt-4o-mini".into(), 0.5)],
                reasoning: "home is free".into(),
                confidence: 0.75,
                rejected: vec![("gone".into(), "unhealthy".into())],
            }),
            key_name: Some("ci".into()),
            team: Some("platform".into()),
            client: Some("abc123".into()),
        };
        // The least a job can be: refused before routing, no attempt, no decision.
        let bare = JobRecord { request_id: "req_bare".into(), at: at(1_700_000_001_000_000), endpoint: "/embeddings", status: 400, ..JobRecord::default() };
        w.jobs = vec![full, bare];
        w.flush();
        let home = w.backend_ids["home"].to_string();
        let cloud = w.backend_ids["cloud"].to_string();
        let (home, cloud) = (Some(home.as_str()), Some(cloud.as_str()));

        let jobs = rows(&w.conn, "jobs", "id");
        #[rustfmt::skip]
        assert_eq!(jobs[0], texts(&[
            Some("req_bare"), Some("2023-11-14 22:13:21"), Some("/embeddings"), None, None, None, None, Some("false"), Some("400"),
            None, None, None, Some("0"), Some("0.0"), None, Some("0.0"), None, None, None, Some("false"), None, None, None,
            None, None, None, None, None,
        ]));
        #[rustfmt::skip]
        assert_eq!(jobs[1], texts(&[
            Some("req_full"), Some("2023-11-14 22:13:20.123456"), Some("/chat/completions"), Some("auto"), Some("code_generation"),
            Some("0.25"), Some("cost_first"), Some("true"), Some("200"), cloud, Some("cloud"), Some("gpt-4o-mini"), Some("2"),
            Some("42.5"), Some("7.25"), Some("0.125"), Some("12"), Some("34"), Some("0.5"), Some("false"), Some("first try failed"),
            Some("hi"), Some("hello"), Some("5"), Some("6"), Some("ci"), Some("platform"), Some("abc123"),
        ]));

        let attempts = rows(&w.conn, "backend_performance", "id");
        #[rustfmt::skip]
        assert_eq!(attempts, vec![
            texts(&[Some("1"), home, Some("home"), Some("req_full"), Some("1"), Some("10.0"), None, None, None, None,
                    Some("code_generation"), Some("0.25"), Some("llama3"), Some("502"), Some("false"), Some("bad gateway"), None,
                    Some("2023-11-14 22:13:20.123456")]),
            texts(&[Some("2"), cloud, Some("cloud"), Some("req_full"), Some("2"), Some("30.0"), Some("4.0"), None, Some("0.5"),
                    Some("46"), Some("code_generation"), Some("0.25"), Some("gpt-4o-mini"), Some("200"), Some("true"), None, None,
                    Some("2023-11-14 22:13:20.123456")]),
        ]);

        let decisions = rows(&w.conn, "backend_selection_history", "id");
        #[rustfmt::skip]
        assert_eq!(decisions, vec![texts(&[
            Some("1"), Some("req_full"), Some("cost_first"),
            Some(r#"[{"backend":"home","model":"llama3","estimated_cost_cents":0.0},{"backend":"cloud","model":"gpt-4o-mini","estimated_cost_cents":0.5}]"#),
            Some("home is free"), home, Some("home"), Some("0.75"), Some(r#"[{"backend":"gone","reason":"unhealthy"}]"#),
            Some("gone: unhealthy"), Some("false"), Some("true"), cloud, Some("cloud"), Some("2023-11-14 22:13:20.123456"),
        ])]);

        // The ids go on from where the batch left them.
        assert_eq!((w.next_attempt_id, w.next_selection_id), (3, 2));
    }

    #[test]
    fn a_count_past_bigint_loses_only_its_own_job() {
        let lost = Arc::new(AtomicU64::new(0));
        let mut w = in_memory_writer(lost.clone());
        let job = |id: &str, tokens: u64| JobRecord { request_id: id.into(), at: at(1), prompt_tokens: Some(tokens), ..JobRecord::default() };
        w.jobs = vec![job("fits", 12), job("huge", u64::MAX), job("fits too", i64::MAX as u64)];
        w.flush();
        let kept = rows(&w.conn, "jobs", "id").into_iter().map(|r| (r[0].clone().unwrap(), r[16].clone().unwrap())).collect::<Vec<_>>();
        assert_eq!(kept, vec![("fits".to_string(), "12".to_string()), ("fits too".to_string(), i64::MAX.to_string())]);
        assert_eq!(lost.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn stored_responses_wait_for_the_batch_and_a_later_one_replaces_its_id() {
        let lost = Arc::new(AtomicU64::new(0));
        let mut w = in_memory_writer(lost.clone());
        let stored = |id: &str, created_at: u64, text: &str| {
            Arc::new(crate::state::responses::Stored {
                id: id.into(),
                owner: "o".into(),
                created_at,
                response: serde_json::json!({ "text": text }),
                conversation: vec![serde_json::json!({"role": "user", "content": text})],
            })
        };
        let ids = |w: &Writer| rows(&w.conn, "responses", "id").into_iter().map(|r| (r[0].clone().unwrap(), r[3].clone().unwrap())).collect::<Vec<_>>();
        w.handle(Event::Response(stored("resp_a", 2_000, "a")));
        w.handle(Event::Response(stored("resp_gone", 2_000, "g")));
        w.handle(Event::Response(stored("resp_old", 1_000, "o")));
        assert!(ids(&w).is_empty(), "nothing is written before the batch");
        w.handle(Event::ResponseDeleted("resp_gone".into()));
        w.handle(Event::ForgetResponsesBefore(1_500));
        w.flush();
        assert_eq!(ids(&w), vec![("resp_a".to_string(), r#"{"text":"a"}"#.to_string())]);
        // The same id again (a batch DuckDB refuses whole): written one by one, replacing.
        w.handle(Event::Response(stored("resp_a", 2_001, "a2")));
        w.handle(Event::Response(stored("resp_b", 2_001, "b")));
        w.flush();
        assert_eq!(ids(&w), vec![("resp_a".to_string(), r#"{"text":"a2"}"#.to_string()), ("resp_b".to_string(), r#"{"text":"b"}"#.to_string())]);
        let conversation = rows(&w.conn, "responses", "id")[1][4].clone().unwrap();
        assert_eq!(conversation, r#"[{"role":"user","content":"b"}]"#);
        assert_eq!(lost.load(Ordering::Relaxed), 0);
    }
}
