//! `hermes stats`, `hermes compare`, `hermes migrate` and `hermes classifier`. The first three ask the running gateway when there is
//! one (DuckDB lets one process write the file), otherwise do the work here on the file itself.

use crate::decide::classify::model::{Example, Fit, Model};
use crate::decide::classify::report::Report;
use crate::decide::classify::{corpus, Classifier, JobType, Weights};
pub use crate::ops::remote::Method;
use crate::ops::remote::{runtime, Asked, Remote};
use crate::state::analytics::record::ComparisonRecord;
use crate::state::analytics::stats_from_files;
use crate::state::analytics::Event;
use crate::state::config::{Config, EnvSource, Sources};
use crate::state::gateway::{Gateway, Shared};
use crate::state::learn::StatRow;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

/// The gateway and the analytics file, as `.env` and the environment say; `url` overrides.
struct Where {
    remote: Remote,
    db_path: PathBuf,
}

fn locate(sources: &Sources, url: Option<String>) -> Result<Where, String> {
    let env = EnvSource::load(sources.env_file.as_deref()).map_err(|e| e.to_string())?;
    let ca = env.get("HERMES_TLS_CERT").map(PathBuf::from);
    let scheme = if ca.is_some() { "https" } else { "http" };
    let url = url.unwrap_or_else(|| format!("{scheme}://{}", env.get("HERMES_LISTEN").unwrap_or("127.0.0.1:8080")));
    Ok(Where {
        remote: Remote { url, admin_key: env.get("HERMES_ADMIN_KEY").map(str::to_string), ca },
        db_path: PathBuf::from(env.get("HERMES_DB_PATH").unwrap_or("./hermes.duckdb")),
    })
}

pub fn stats(db: Vec<PathBuf>, url: Option<String>, json: bool, sources: &Sources) -> Result<String, String> {
    let asked_for = url.is_some();
    let place = locate(sources, url)?;
    let rows = if !db.is_empty() {
        stats_from_files(&db)?
    } else {
        match place.remote.ask("/admin/stats", None)? {
            Asked::Answer(v) => rows_of(&v)?,
            Asked::NoGateway(why) if asked_for => return Err(why),
            Asked::NoGateway(_) => stats_from_files(&[&place.db_path])?,
        }
    };
    if json {
        return serde_json::to_string_pretty(&rows).map(|s| s + "\n").map_err(|e| e.to_string());
    }
    Ok(render_stats(&rows))
}

fn rows_of(v: &serde_json::Value) -> Result<Vec<StatRow>, String> {
    serde_json::from_value(v["rows"].clone()).map_err(|e| format!("unexpected /admin/stats answer: {e}"))
}

pub fn render_stats(rows: &[StatRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<17} {:<14} {:<26} {:>6} {:>8} {:>9} {:>9} {:>11} {:>10} {:>6}",
        "job_type", "backend", "model", "jobs", "success", "p50_ms", "p95_ms", "cents/job", "rating", "share"
    );
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |x| format!("{x:.digits$}"));
    for r in rows {
        let rating = r.rating.map_or("-".to_string(), |x| format!("{x:.2} ({})", r.ratings));
        let _ = writeln!(
            out,
            "{:<17} {:<14} {:<26} {:>6} {:>8} {:>9} {:>9} {:>11} {:>10} {:>5.0}%",
            r.job_type,
            r.backend,
            r.model,
            r.jobs,
            r.success_rate.map_or("-".to_string(), |s| format!("{:.1}%", s * 100.0)),
            opt(r.p50_ms, 1),
            opt(r.p95_ms, 1),
            opt(r.cost_cents_per_job, 5),
            rating,
            r.share * 100.0
        );
    }
    if rows.is_empty() {
        out.push_str("(nothing learned yet: no job has been recorded)\n");
    }
    out
}

pub fn compare(prompt: &str, backends: &[String], url: Option<String>, sources: &Sources) -> Result<String, String> {
    let asked_for = url.is_some();
    let place = locate(sources, url)?;
    let body = serde_json::json!({"prompt": prompt, "backends": backends});
    match place.remote.ask("/admin/compare", Some(body))? {
        Asked::Answer(v) => {
            let rows: Vec<ComparisonRecord> = serde_json::from_value(v["comparison"].clone()).map_err(|e| format!("unexpected /admin/compare answer: {e}"))?;
            Ok(crate::ops::compare::render(&rows))
        }
        Asked::NoGateway(why) if asked_for => Err(why),
        Asked::NoGateway(_) => compare_here(prompt, backends, sources),
    }
}

/// No gateway running: build one here (without serving), compare, and write the file ourselves.
fn compare_here(prompt: &str, backends: &[String], sources: &Sources) -> Result<String, String> {
    let config = Config::load(sources).map_err(|e| format!("configuration error: {e}"))?;
    let shared = Shared::open(&config)?;
    let gateway = Gateway::new(config, shared.clone())?;
    let rows = runtime()?.block_on(crate::ops::compare::run(&gateway, prompt, backends)).map_err(|e| e.message().to_string())?;
    shared.analytics.offer(Event::Comparison(rows.clone()));
    if !shared.analytics.flush(Duration::from_secs(30)) {
        return Err("the comparison could not be written to the analytics file".into());
    }
    Ok(crate::ops::compare::render(&rows))
}

pub fn migrate_plan(from: &str, to: &str, strategy: &str, sources: &Sources) -> Result<String, String> {
    let config = Config::load(sources).map_err(|e| format!("configuration error: {e}"))?;
    crate::ops::migrate::render_plan(&config, from, to, crate::ops::migrate::Strategy::parse(strategy)?)
}

pub fn migrate_apply(from: &str, to: &str, strategy: &str, url: Option<String>, stage: Duration, margin: f64, sources: &Sources) -> Result<String, String> {
    let strategy = crate::ops::migrate::Strategy::parse(strategy)?;
    if from == to {
        return Err("--from and --to name the same backend".into());
    }
    let target = locate(sources, url)?.remote;
    // Each step is printed as it happens: a migration takes minutes.
    crate::ops::migrate::apply(&target, from, to, strategy, stage, margin, |line| println!("{line}"))?;
    Ok(format!("migration complete: {to} serves the traffic {from} served\n"))
}

pub fn migrate_rollback(url: Option<String>, sources: &Sources) -> Result<String, String> {
    let target = locate(sources, url)?.remote;
    let undone = crate::ops::migrate::rollback(&target, None)?;
    Ok(format!("rolled back: routing is as configured again (undone: {})\n", serde_json::to_string(&undone).unwrap_or_default()))
}

/// The policies folder the gateway would read, and what it holds.
fn policies_of(sources: &Sources) -> Result<(PathBuf, crate::state::config::Policies), String> {
    let dir = sources.policies_dir.clone().unwrap_or_else(|| PathBuf::from("policies"));
    let policies = crate::state::config::Policies::load(&dir, sources.policies_dir.is_some()).map_err(|e| format!("configuration error: {e}"))?;
    Ok((dir, policies))
}

fn classifier_of(policies: &crate::state::config::Policies, weights: Weights) -> Result<Classifier, String> {
    Classifier::new(&policies.vocabulary, weights).map_err(|e| format!("policies/classify.toml: {e}"))
}

fn labelled_file(path: &std::path::Path) -> Result<Vec<corpus::Labelled>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    corpus::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `hermes classifier eval --data FILE`: the classifier the gateway would load, measured on FILE.
pub fn classifier_eval(data: &std::path::Path, misses: bool, sources: &Sources) -> Result<String, String> {
    let (_, policies) = policies_of(sources)?;
    let weights = policies.classifier.clone().map_or(Weights::Shipped, Weights::Fitted);
    let classifier = classifier_of(&policies, weights)?;
    let report = Report::measure(&classifier, &labelled_file(data)?);
    let mut out = report.table();
    if misses {
        for m in &report.misses {
            let _ = writeln!(out, "miss: {m}");
        }
    }
    Ok(out)
}

/// How much more a user's own labelled prompt counts than one of the shipped corpus: enough for
/// 60 of them to move their domain, not so much that they drown the rest.
pub const USER_EXAMPLE_WEIGHT: f32 = 3.0;

/// `hermes classifier train`: the shipped training split plus the user's files and, with
/// `from_db`, the corrections posted to /feedback; written where the gateway loads it.
pub fn classifier_train(data: &[PathBuf], from_db: Option<PathBuf>, out: Option<PathBuf>, weight: f32, sources: &Sources) -> Result<String, String> {
    if data.is_empty() && from_db.is_none() {
        return Err("give --data FILE (labelled prompts) and/or --from-db".into());
    }
    // The folder it writes into may be new.
    if let Some(dir) = sources.policies_dir.as_ref().filter(|_| out.is_none()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let (dir, policies) = policies_of(sources)?;
    let base = classifier_of(&policies, Weights::Shipped)?;
    let mut examples = base.examples(&corpus::training(), 1.0);
    let shipped = examples.len();
    let mut report = String::new();
    let mut own = Vec::new();
    for path in data {
        own.extend(labelled_file(path)?);
    }
    examples.extend(base.examples(&own, weight));
    if let Some(db) = from_db {
        let (rows, unknown) = crate::state::analytics::corrections_from_file(&db)?;
        let _ = writeln!(
            report,
            "{} correction(s) from {}{}",
            rows.len(),
            db.display(),
            if unknown > 0 { format!(" ({unknown} too old to train on: their features were no longer known)") } else { String::new() }
        );
        for (job, features) in rows {
            let Some(label) = JobType::parse(&job) else { continue };
            examples.push(Example { features, label, weight });
        }
    }
    let added = examples.len() - shipped;
    let fitted = Model::fit(&examples, Fit::default());
    let path = out.unwrap_or_else(|| dir.join(crate::state::config::CLASSIFIER_FILE));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&path, fitted.to_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let trained = classifier_of(&policies, Weights::Fitted(std::sync::Arc::new(fitted)))?;
    let held_out = corpus::test_split();
    let _ = writeln!(report, "fitted on {shipped} shipped and {added} of your examples; wrote {}", path.display());
    let _ = writeln!(
        report,
        "shipped held-out split ({} prompts): accuracy {:.1}% before, {:.1}% after",
        held_out.len(),
        Report::measure(&base, &held_out).accuracy() * 100.0,
        Report::measure(&trained, &held_out).accuracy() * 100.0
    );
    if !own.is_empty() {
        let _ = writeln!(
            report,
            "your data (seen in training): {:.1}% before, {:.1}% after",
            Report::measure(&base, &own).accuracy() * 100.0,
            Report::measure(&trained, &own).accuracy() * 100.0
        );
    }
    let _ = writeln!(report, "the gateway loads it from {} at start-up and on reload", path.parent().map_or(".".into(), |p| p.display().to_string()));
    Ok(report)
}

/// HERMES_DB_PATH as `.env` and the environment say.
pub fn db_path(sources: &Sources) -> PathBuf {
    locate(sources, None).map_or_else(|_| PathBuf::from("./hermes.duckdb"), |w| w.db_path)
}

/// An admin call the key and team commands make: only a running gateway can answer it (it holds
/// the keys, and DuckDB lets one process write the file).
/// `hermes export`: the running gateway writes the Parquet files (it has the file open), else
/// they are written here from the file.
pub fn export(dir: &std::path::Path, db: Option<PathBuf>, url: Option<String>, sources: &Sources) -> Result<String, String> {
    let asked_for = url.is_some();
    let place = locate(sources, url)?;
    let rows: Vec<(String, u64)> = match db {
        Some(db) => crate::state::analytics::file_to_parquet(&db, dir)?,
        None => {
            let absolute = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            match place.remote.request(Method::Post, "/admin/export", Some(serde_json::json!({"dir": absolute})))? {
                Asked::Answer(v) => v["rows"].as_object().map(|m| m.iter().map(|(t, n)| (t.clone(), n.as_u64().unwrap_or(0))).collect()).unwrap_or_default(),
                Asked::NoGateway(why) if asked_for => return Err(why),
                Asked::NoGateway(_) => crate::state::analytics::file_to_parquet(&place.db_path, dir)?,
            }
        }
    };
    let mut out = String::new();
    for (table, n) in rows {
        let _ = writeln!(out, "{:<28} {n:>10} rows  {}", format!("{table}.parquet"), dir.join(format!("{table}.parquet")).display());
    }
    Ok(out)
}

pub fn admin_call(method: Method, path: &str, body: Option<serde_json::Value>, url: Option<String>, sources: &Sources) -> Result<serde_json::Value, String> {
    match locate(sources, url)?.remote.request(method, path, body)? {
        Asked::Answer(v) => Ok(v),
        Asked::NoGateway(why) => Err(format!("{why}: keys and teams live in the running gateway (start `hermes serve`, or give --url)")),
    }
}

fn dollars(v: &serde_json::Value) -> String {
    v.as_f64().map_or("-".to_string(), |d| format!("${d:.2}"))
}

fn or_dash(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `hermes keys create`: the key, once, and what it may do.
pub fn render_new_key(v: &serde_json::Value) -> String {
    format!(
        "{}\n\nkey {} created; the line above is the only time it is shown (Hermes keeps a digest of it).\n{}",
        v["key"].as_str().unwrap_or(""),
        v["name"].as_str().unwrap_or(""),
        render_key(v)
    )
}

/// `hermes keys show`: one key's limits and its spend in the window.
pub fn render_key(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let spend = &v["spend"];
    let models = v["models"].as_array().filter(|m| !m.is_empty()).map_or("any".to_string(), |m| m.iter().map(or_dash).collect::<Vec<_>>().join(","));
    let _ = writeln!(out, "name:      {}", or_dash(&v["name"]));
    let _ = writeln!(out, "team:      {}", or_dash(&v["team"]));
    let _ = writeln!(out, "status:    {}", if v["revoked_at"].is_null() { "active" } else { "revoked" });
    let _ = writeln!(out, "budget:    {} per {} (on budget: {})", dollars(&v["budget_usd"]), or_dash(&v["budget_window"]), or_dash(&v["on_budget"]));
    if !spend.is_null() {
        let _ = writeln!(
            out,
            "spent:     {} of {} since {}, {} left; resets {}",
            dollars(&spend["spent_usd"]),
            dollars(&spend["budget_usd"]),
            or_dash(&spend["window_start"]),
            dollars(&spend["remaining_usd"]),
            or_dash(&spend["resets_at"])
        );
    }
    let _ = writeln!(out, "limits:    {} requests/min, {} tokens/min", or_dash(&v["rpm"]), or_dash(&v["tpm"]));
    let _ = writeln!(out, "models:    {models}");
    let _ = writeln!(out, "privacy:   {}", if v["privacy"] == "local" { "local backends only" } else { "by request" });
    out
}

/// `hermes keys list`.
pub fn render_keys(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<20} {:<12} {:<8} {:>10} {:>10} {:<6} {:>6} {:>8}", "name", "team", "status", "budget", "spent", "window", "rpm", "tpm");
    let keys = v["keys"].as_array().cloned().unwrap_or_default();
    for k in &keys {
        let _ = writeln!(
            out,
            "{:<20} {:<12} {:<8} {:>10} {:>10} {:<6} {:>6} {:>8}",
            or_dash(&k["name"]),
            or_dash(&k["team"]),
            if k["revoked_at"].is_null() { "active" } else { "revoked" },
            dollars(&k["budget_usd"]),
            dollars(&k["spend"]["spent_usd"]),
            or_dash(&k["budget_window"]),
            or_dash(&k["rpm"]),
            or_dash(&k["tpm"])
        );
    }
    if keys.is_empty() {
        out.push_str("(no keys yet: `hermes keys create --name NAME`)\n");
    }
    out
}

/// `hermes teams list` (and `create`).
pub fn render_teams(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {:>10} {:>10} {:<6} keys", "team", "budget", "spent", "window");
    for t in v["teams"].as_array().into_iter().flatten() {
        let keys: Vec<String> = t["keys"].as_array().into_iter().flatten().map(or_dash).collect();
        let _ = writeln!(
            out,
            "{:<16} {:>10} {:>10} {:<6} {}",
            or_dash(&t["name"]),
            dollars(&t["budget_usd"]),
            dollars(&t["spend"]["spent_usd"]),
            or_dash(&t["budget_window"]),
            if keys.is_empty() { "-".to_string() } else { keys.join(",") }
        );
    }
    out
}
