//! Reading the analytics file back: what the learner starts from, where an old request ran,
//! and (through a seeded learner) the table `hermes stats` prints from a file.

use crate::decide::classify::JobType;
use crate::state::learn::{Learner, Seed, Served, StatRow};
use duckdb::Connection;
use std::collections::HashMap;
use std::path::Path;

/// Latencies per key read back for p50/p95 (as many as the learner keeps).
const RECENT_LATENCIES: i64 = 256;
/// Jobs per job type read back for "current share".
const RECENT_CHOICES: i64 = 100;

/// Per (job type, backend, model): the learner's statistics as the file remembers them.
pub fn seeds(conn: &Connection) -> duckdb::Result<Vec<Seed>> {
    let mut stmt = conn.prepare(
        "SELECT job_type, backend, model_used,
                count(success), count(*) FILTER (WHERE success),
                coalesce(sum(response_time_ms) FILTER (WHERE success), 0)::DOUBLE, count(response_time_ms) FILTER (WHERE success),
                coalesce(sum(time_to_first_token_ms) FILTER (WHERE success), 0)::DOUBLE, count(time_to_first_token_ms) FILTER (WHERE success),
                coalesce(sum(cost_cents) FILTER (WHERE success), 0)::DOUBLE,
                count(user_satisfaction), coalesce(sum(user_satisfaction), 0)::DOUBLE
         FROM backend_performance
         WHERE job_type IS NOT NULL AND backend IS NOT NULL AND model_used IS NOT NULL
         GROUP BY ALL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Seed {
            job_type: r.get(0)?,
            backend: r.get(1)?,
            model: r.get(2)?,
            attempts: r.get::<_, i64>(3)? as u64,
            successes: r.get::<_, i64>(4)? as u64,
            latency_ms_sum: r.get(5)?,
            latency_count: r.get::<_, i64>(6)? as u64,
            recent_latencies_ms: Vec::new(),
            ttft_ms_sum: r.get(7)?,
            ttft_count: r.get::<_, i64>(8)? as u64,
            cost_cents_sum: r.get(9)?,
            ratings: r.get::<_, i64>(10)? as u64,
            rating_sum: r.get::<_, f64>(11)?,
        })
    })?;
    let mut seeds: Vec<Seed> = rows.collect::<duckdb::Result<_>>()?;
    let mut recent: HashMap<(String, String, String), Vec<f64>> = HashMap::new();
    let mut stmt = conn.prepare(&format!(
        "SELECT job_type, backend, model_used, response_time_ms FROM (
            SELECT *, row_number() OVER (PARTITION BY job_type, backend, model_used ORDER BY executed_date DESC, id DESC) AS recency
            FROM backend_performance WHERE success AND response_time_ms IS NOT NULL AND job_type IS NOT NULL AND model_used IS NOT NULL)
         WHERE recency <= {RECENT_LATENCIES} ORDER BY recency DESC"
    ))?;
    let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get::<_, f64>(3)?)))?;
    for row in rows {
        let (key, ms) = row?;
        recent.entry(key).or_default().push(ms);
    }
    for s in &mut seeds {
        if let Some(v) = recent.remove(&(s.job_type.clone(), s.backend.clone(), s.model.clone())) {
            s.recent_latencies_ms = v;
        }
    }
    Ok(seeds)
}

/// The last backends that answered each job type, oldest first.
pub fn recent_choices(conn: &Connection) -> duckdb::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT job_type, backend FROM (
            SELECT job_type, backend, created_date, row_number() OVER (PARTITION BY job_type ORDER BY created_date DESC) AS recency
            FROM jobs WHERE backend IS NOT NULL AND job_type IS NOT NULL AND status BETWEEN 200 AND 299)
         WHERE recency <= {RECENT_CHOICES} ORDER BY created_date"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The stored responses of the Responses API, newest first (as many as memory holds).
pub fn stored_responses(conn: &Connection) -> duckdb::Result<Vec<crate::state::responses::Stored>> {
    let mut stmt =
        conn.prepare("SELECT id, owner, epoch(created_date)::BIGINT, response, conversation FROM responses ORDER BY created_date DESC LIMIT 100000")?;
    let rows = stmt.query_map([], |r| {
        let (response, conversation): (String, String) = (r.get(3)?, r.get(4)?);
        Ok(crate::state::responses::Stored {
            id: r.get(0)?,
            owner: r.get(1)?,
            created_at: r.get::<_, i64>(2)?.max(0) as u64,
            response: serde_json::from_str(&response).unwrap_or_default(),
            conversation: serde_json::from_str(&conversation).unwrap_or_default(),
        })
    })?;
    rows.collect()
}

/// The virtual keys and teams, and each budget's spend in its current window (the jobs rows are
/// the ledger: a restart loses no spend that was written).
pub fn key_book(conn: &Connection) -> duckdb::Result<crate::state::keys::KeyBook> {
    use crate::state::keys::{Budget, KeyBook, KeyRecord, Scope, TeamRecord, Window};
    let secs = |v: Option<i64>| v.map(|s| s.max(0) as u64);
    let mut stmt = conn.prepare("SELECT digest, settings, epoch(created_date)::BIGINT, epoch(revoked_date)::BIGINT FROM virtual_keys")?;
    let keys: Vec<KeyRecord> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, Option<i64>>(3)?)))?
        .filter_map(|row| {
            let (digest, settings, created, revoked) = row.ok()?;
            let spec = serde_json::from_str(&settings).ok()?;
            Some(KeyRecord { spec, digest, created_at: secs(created).unwrap_or(0), revoked_at: secs(revoked) })
        })
        .collect();
    let mut stmt = conn.prepare("SELECT name, budget_cents, budget_window, epoch(created_date)::BIGINT FROM teams")?;
    let teams: Vec<TeamRecord> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<f64>>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, Option<i64>>(3)?)))?
        .filter_map(Result::ok)
        .map(|(name, cents, window, created)| TeamRecord {
            name,
            budget: cents.map(|cents| Budget { cents, window: window.as_deref().and_then(Window::parse).unwrap_or_default() }),
            created_at: secs(created).unwrap_or(0),
        })
        .collect();
    let now = chrono::Utc::now();
    let scopes = keys.iter().filter_map(|k| k.spec.budget.map(|b| (Scope::Key(k.spec.name.clone()), "key_name", b)));
    let scopes: Vec<_> = scopes.chain(teams.iter().filter_map(|t| t.budget.map(|b| (Scope::Team(t.name.clone()), "team", b)))).collect();
    // Daily sums since the earliest window's start, one scan per column (not one per scope);
    // windows start at UTC midnight, so each scope adds up the days of its own window.
    let mut daily: HashMap<(&str, String), Vec<(i64, f64)>> = HashMap::new();
    if let Some(since) = scopes.iter().map(|(_, _, b)| b.window.around(now).0).min() {
        for column in ["key_name", "team"] {
            let mut stmt = conn.prepare(&format!(
                "SELECT {column}, epoch(date_trunc('day', created_date))::BIGINT, coalesce(sum(cost_cents), 0) FROM jobs
                 WHERE {column} IS NOT NULL AND created_date >= make_timestamp(?) GROUP BY ALL"
            ))?;
            let rows = stmt.query_map([since.timestamp_micros()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?)))?;
            for row in rows {
                let (name, day, cents) = row?;
                daily.entry((column, name)).or_default().push((day, cents));
            }
        }
    }
    let spent = scopes
        .into_iter()
        .map(|(scope, column, budget)| {
            let start = budget.window.around(now).0.timestamp();
            let days = daily.get(&(column, scope.name().to_string()));
            let cents = days.map_or(0.0, |d| d.iter().filter(|(day, _)| *day >= start).map(|(_, c)| c).sum());
            (scope, cents)
        })
        .collect();
    Ok(KeyBook::restored(keys, teams, spent))
}

/// Where a request was answered, and its current rating, if the file has it.
pub fn served(conn: &Connection, request_id: &str) -> duckdb::Result<Option<Served>> {
    let mut stmt = conn.prepare(
        "SELECT p.job_type, p.backend, p.model_used, p.user_satisfaction, p.job_complexity,
                (SELECT j.client FROM jobs j WHERE j.id = p.job_id LIMIT 1)
         FROM backend_performance p WHERE p.job_id = ? AND p.success ORDER BY p.attempt DESC LIMIT 1",
    )?;
    let mut rows = stmt.query_map([request_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<i32>>(3)?,
            r.get::<_, Option<f64>>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    Ok(match rows.next().transpose()? {
        Some((job, backend, model, rating, complexity, client)) => JobType::parse(&job).map(|job_type| Served {
            job_type,
            band: complexity.map(crate::state::learn::Band::of),
            backend,
            model,
            rating: rating.map(|r| r.clamp(1, 5) as u8),
            client,
        }),
        None => None,
    })
}

/// The learned table straight from files (no gateway running on them): one replica's, or
/// several replicas' added together.
pub fn stats_from_files(paths: &[impl AsRef<Path>]) -> Result<Vec<StatRow>, String> {
    let mut merged: HashMap<(String, String, String), Seed> = HashMap::new();
    let mut choices = Vec::new();
    for path in paths {
        let path = path.as_ref();
        if !path.exists() {
            return Err(format!("{}: no such analytics file", path.display()));
        }
        let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).map_err(|e| e.to_string())?;
        let conn = Connection::open_with_flags(path, config).map_err(|e| format!("{}: {e}", path.display()))?;
        for s in seeds(&conn).map_err(|e| e.to_string())? {
            let m = merged.entry((s.job_type.clone(), s.backend.clone(), s.model.clone())).or_insert_with(|| Seed {
                job_type: s.job_type.clone(),
                backend: s.backend.clone(),
                model: s.model.clone(),
                ..Seed::default()
            });
            m.attempts += s.attempts;
            m.successes += s.successes;
            m.latency_ms_sum += s.latency_ms_sum;
            m.latency_count += s.latency_count;
            m.recent_latencies_ms.extend(s.recent_latencies_ms);
            m.ttft_ms_sum += s.ttft_ms_sum;
            m.ttft_count += s.ttft_count;
            m.cost_cents_sum += s.cost_cents_sum;
            m.ratings += s.ratings;
            m.rating_sum += s.rating_sum;
        }
        choices.extend(recent_choices(&conn).map_err(|e| e.to_string())?);
    }
    Ok(Learner::seeded(None, merged.into_values().collect(), choices).table())
}

/// A job type a person gave, and the features the classifier read of that request.
pub type Correction = (String, Vec<(u32, f32)>);

/// The job-type corrections people posted (`classifier_corrections`), latest per request, as
/// (job type, features); corrections whose features were no longer known are counted apart.
pub fn corrections_from_file(path: &Path) -> Result<(Vec<Correction>, usize), String> {
    if !path.exists() {
        return Err(format!("{}: no such analytics file", path.display()));
    }
    let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).map_err(|e| e.to_string())?;
    let conn = Connection::open_with_flags(path, config)
        .map_err(|e| format!("{}: {e} (a running gateway holds the file: stop it, or give a copy)", path.display()))?;
    let mut stmt = conn
        .prepare(
            "SELECT job_type, features FROM classifier_corrections
             QUALIFY row_number() OVER (PARTITION BY job_id ORDER BY created_date DESC) = 1",
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))).map_err(|e| e.to_string())?;
    let (mut out, mut unknown) = (Vec::new(), 0);
    for row in rows {
        let (job, features) = row.map_err(|e| e.to_string())?;
        match features.and_then(|f| serde_json::from_str::<Vec<(u32, f32)>>(&f).ok()) {
            Some(f) => out.push((job, f)),
            None => unknown += 1,
        }
    }
    Ok((out, unknown))
}
