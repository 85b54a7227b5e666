//! The three tables every request writes (`jobs`, `backend_performance`,
//! `backend_selection_history`) as Arrow record batches: a batch of jobs becomes one array per
//! column, which DuckDB's Arrow appender copies into its vectors a column at a time. Row by row,
//! each value went through duckdb-rs's `ToSql`, a `Value` and three vectors of its own per row.
//!
//! The arrays are in the tables' column order (`schema.rs`), with the tables' types:
//! VARCHAR = Utf8, TIMESTAMP = Timestamp(µs), DOUBLE = Float64, INTEGER = Int32, BIGINT = Int64.

use super::record::{micros_or_now, ms, JobRecord, SelectionRecord};
use duckdb::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::RecordBatch;
use std::sync::Arc;
use std::time::SystemTime;

/// A backend's id in the `backends` table, by name.
pub type BackendId<'a> = &'a dyn Fn(Option<&str>) -> Option<i32>;

fn text<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}
fn double(values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(values.collect::<Float64Array>())
}
fn int(values: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(values.collect::<Int32Array>())
}
/// A count past BIGINT's range (an upstream can report anything) fails the batch, as the
/// row-by-row appender did, so the writer retries row by row and loses only that row.
fn bigint(values: impl Iterator<Item = Option<u64>>) -> Result<ArrayRef, ArrowError> {
    let values: Option<Vec<Option<i64>>> = values
        .map(|v| match v {
            None => Some(None),
            Some(v) => i64::try_from(v).ok().map(Some),
        })
        .collect();
    let values = values.ok_or_else(|| ArrowError::InvalidArgumentError("a count does not fit a BIGINT".into()))?;
    Ok(Arc::new(values.into_iter().collect::<Int64Array>()))
}
fn flag(values: impl Iterator<Item = Option<bool>>) -> ArrayRef {
    Arc::new(values.collect::<BooleanArray>())
}
/// A moment not recorded is written as now, as the row-by-row appender did.
fn time(values: impl Iterator<Item = Option<SystemTime>>) -> ArrayRef {
    Arc::new(values.map(|at| Some(micros_or_now(at))).collect::<TimestampMicrosecondArray>())
}
/// Sequential ids from `first`.
fn ids(first: i64, count: usize) -> ArrayRef {
    Arc::new((first..first + count as i64).collect::<Int64Array>())
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_from_iter(columns)
}

/// One `jobs` row per job.
pub fn jobs(batch_of: &[JobRecord], backend_id: BackendId) -> Result<RecordBatch, ArrowError> {
    let j = || batch_of.iter();
    batch(vec![
        ("id", text(j().map(|j| Some(j.request_id.as_str())))),
        ("created_date", time(j().map(|j| j.at))),
        ("endpoint", text(j().map(|j| Some(j.endpoint)))),
        ("model_requested", text(j().map(|j| j.model_requested.as_deref()))),
        ("job_type", text(j().map(|j| j.job_type))),
        ("job_complexity", double(j().map(|j| j.complexity))),
        ("selection_criteria", text(j().map(|j| j.criteria))),
        ("stream", flag(j().map(|j| Some(j.stream)))),
        ("status", int(j().map(|j| Some(i32::from(j.status))))),
        ("backend_id", int(j().map(|j| backend_id(j.backend.as_deref())))),
        ("backend", text(j().map(|j| j.backend.as_deref()))),
        ("model_used", text(j().map(|j| j.model_used.as_deref()))),
        ("attempts", int(j().map(|j| Some(j.attempts.len() as i32)))),
        ("response_time_ms", double(j().map(|j| Some(ms(j.total))))),
        ("time_to_first_token_ms", double(j().map(|j| j.ttft.map(ms)))),
        ("overhead_ms", double(j().map(|j| Some(ms(j.overhead))))),
        ("prompt_tokens", bigint(j().map(|j| j.prompt_tokens))?),
        ("completion_tokens", bigint(j().map(|j| j.completion_tokens))?),
        ("cost_cents", double(j().map(|j| j.cost_cents))),
        ("cache_hit", flag(j().map(|j| Some(j.cache_hit)))),
        ("error_message", text(j().map(|j| j.error.as_deref()))),
        ("prompt", text(j().map(|j| j.prompt.as_deref()))),
        ("response", text(j().map(|j| j.response.as_deref()))),
        ("cached_tokens", bigint(j().map(|j| j.cached_tokens))?),
        ("reasoning_tokens", bigint(j().map(|j| j.reasoning_tokens))?),
        ("key_name", text(j().map(|j| j.key_name.as_deref()))),
        ("team", text(j().map(|j| j.team.as_deref()))),
        ("client", text(j().map(|j| j.client.as_deref()))),
    ])
}

/// One `backend_performance` row per attempt, ids from `first_id`; None when no job made one.
pub fn attempts(batch_of: &[JobRecord], first_id: i64, backend_id: BackendId) -> Result<Option<RecordBatch>, ArrowError> {
    let rows: Vec<_> = batch_of.iter().flat_map(|j| j.attempts.iter().enumerate().map(move |(n, a)| (j, n, a))).collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let r = || rows.iter();
    batch(vec![
        ("id", ids(first_id, rows.len())),
        ("backend_id", int(r().map(|(_, _, a)| backend_id(Some(&a.backend))))),
        ("backend", text(r().map(|(_, _, a)| Some(a.backend.as_str())))),
        ("job_id", text(r().map(|(j, _, _)| Some(j.request_id.as_str())))),
        ("attempt", int(r().map(|(_, n, _)| Some(*n as i32 + 1)))),
        ("response_time_ms", double(r().map(|(_, _, a)| Some(ms(a.elapsed))))),
        ("time_to_first_token_ms", double(r().map(|(_, _, a)| a.ttft.map(ms)))),
        ("quality_score", double(r().map(|_| None))),
        ("cost_cents", double(r().map(|(_, _, a)| a.cost_cents))),
        ("token_count", bigint(r().map(|(_, _, a)| a.tokens))?),
        ("job_type", text(r().map(|(j, _, _)| j.job_type))),
        ("job_complexity", double(r().map(|(j, _, _)| j.complexity))),
        ("model_used", text(r().map(|(_, _, a)| Some(a.model.as_str())))),
        ("status", int(r().map(|(_, _, a)| a.status.map(i32::from)))),
        ("success", flag(r().map(|(_, _, a)| a.success))),
        ("error_message", text(r().map(|(_, _, a)| a.error.as_deref()))),
        ("user_satisfaction", int(r().map(|_| None))),
        ("executed_date", time(r().map(|(j, _, _)| j.at))),
    ])
    .map(Some)
}

/// What a decision row holds beyond the job's own fields: its JSON and joined reasons.
struct Decision<'a> {
    job: &'a JobRecord,
    made: &'a SelectionRecord,
    selected: Option<&'a str>,
    candidates: String,
    rejected: String,
    reasons: String,
}

/// A ranked candidate in `available_backends`, in the order of its keys.
#[derive(serde::Serialize)]
struct Candidate<'a> {
    backend: &'a str,
    model: &'a str,
    estimated_cost_cents: f64,
}

/// A refused backend in `rejected_backends`.
#[derive(serde::Serialize)]
struct Rejection<'a> {
    backend: &'a str,
    reason: &'a str,
}

/// A JSON array of `items`, serialized straight into its text. A `serde_json::Value` per
/// candidate built a map and its keys first; `selections` as a whole (these texts and its Arrow
/// arrays) was 9% of the writer's CPU in a perf profile at 64 connections, and
/// `cargo bench --bench analytics` showed no change from this beyond its noise.
fn json_list<T: serde::Serialize>(items: impl IntoIterator<Item = T>) -> String {
    let mut out = Vec::with_capacity(128);
    // Writing to a Vec cannot fail, nor can these plain structs (a non-finite cost is `null`).
    let _ = serde::Serializer::collect_seq(&mut serde_json::Serializer::new(&mut out), items);
    String::from_utf8(out).unwrap_or_default()
}

/// The decision's three texts: its candidates and its rejections as JSON, and the rejections
/// joined as `backend: reason; ...`.
fn decision_texts(made: &SelectionRecord) -> (String, String, String) {
    let candidates = json_list(made.candidates.iter().map(|(backend, model, cost)| Candidate { backend, model, estimated_cost_cents: *cost }));
    let rejected = json_list(made.rejected.iter().map(|(backend, reason)| Rejection { backend, reason }));
    let mut reasons = String::new();
    for (n, (backend, why)) in made.rejected.iter().enumerate() {
        if n > 0 {
            reasons.push_str("; ");
        }
        reasons.push_str(backend);
        reasons.push_str(": ");
        reasons.push_str(why);
    }
    (candidates, rejected, reasons)
}

/// One `backend_selection_history` row per job that was routed, ids from `first_id`.
pub fn selections(batch_of: &[JobRecord], first_id: i64, backend_id: BackendId) -> Result<Option<RecordBatch>, ArrowError> {
    let rows: Vec<Decision> = batch_of
        .iter()
        .filter_map(|job| {
            let made = job.selection.as_ref()?;
            let (candidates, rejected, reasons) = decision_texts(made);
            Some(Decision { job, made, selected: made.candidates.first().map(|c| c.0.as_str()), candidates, rejected, reasons })
        })
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let r = || rows.iter();
    batch(vec![
        ("id", ids(first_id, rows.len())),
        ("job_id", text(r().map(|d| Some(d.job.request_id.as_str())))),
        ("selection_criteria", text(r().map(|d| Some(d.made.criteria)))),
        ("available_backends", text(r().map(|d| Some(d.candidates.as_str())))),
        ("selection_reasoning", text(r().map(|d| Some(d.made.reasoning.as_str())))),
        ("selected_backend_id", int(r().map(|d| backend_id(d.selected)))),
        ("selected_backend", text(r().map(|d| d.selected))),
        ("confidence_score", double(r().map(|d| Some(d.made.confidence)))),
        ("rejected_backends", text(r().map(|d| Some(d.rejected.as_str())))),
        ("rejection_reasons", text(r().map(|d| Some(d.reasons.as_str())))),
        ("selection_successful", flag(r().map(|d| Some((200..300).contains(&d.job.status) && d.job.attempts.len() == 1)))),
        ("fallback_used", flag(r().map(|d| Some(d.job.attempts.len() > 1)))),
        ("final_backend_id", int(r().map(|d| backend_id(d.job.backend.as_deref())))),
        ("final_backend", text(r().map(|d| d.job.backend.as_deref()))),
        ("executed_date", time(r().map(|d| d.job.at))),
    ])
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts as the writer built them before, through `serde_json::Value`: the file's
    /// readers see the same JSON, byte for byte.
    fn through_values(made: &SelectionRecord) -> (String, String, String) {
        let candidates: Vec<_> = made.candidates.iter().map(|(b, m, c)| serde_json::json!({"backend": b, "model": m, "estimated_cost_cents": c})).collect();
        let rejected: Vec<_> = made.rejected.iter().map(|(b, why)| serde_json::json!({"backend": b, "reason": why})).collect();
        let reasons: Vec<String> = made.rejected.iter().map(|(b, why)| format!("{b}: {why}")).collect();
        (serde_json::Value::Array(candidates).to_string(), serde_json::Value::Array(rejected).to_string(), reasons.join("; "))
    }

    #[test]
    fn a_decisions_json_is_what_a_json_value_would_have_written() {
        let decision = |candidates: Vec<(&str, &str, f64)>, rejected: Vec<(&str, &str)>| SelectionRecord {
            criteria: "balanced",
            candidates: candidates.into_iter().map(|(b, m, c)| (b.into(), m.into(), c)).collect(),
            reasoning: "r".into(),
            confidence: 0.5,
            rejected: rejected.into_iter().map(|(b, r)| (b.into(), r.into())).collect(),
        };
        for made in [
            decision(vec![], vec![]),
            decision(vec![("home", "llama3", 0.0)], vec![]),
            decision(vec![("home", "llama3", 0.0), ("cloud", "gpt-4o-mini", 0.012_5), ("big", "m", 1e21)], vec![("gone", "unhealthy")]),
            decision(vec![("q\"uote", "tab\there", f64::NAN), ("ünï", "\u{1}", f64::INFINITY)], vec![("a", "b: c"), ("x\ny", "private data")]),
        ] {
            assert_eq!(decision_texts(&made), through_values(&made));
        }
    }
}
