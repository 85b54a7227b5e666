//! The analytics writer's ceiling: jobs per second from `record` (the request path's
//! `try_send`) to committed rows in DuckDB. Each job is three rows: the job, one attempt and the
//! routing decision. `cargo bench --bench analytics` prints it as throughput (elements = jobs).

#![allow(clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hermes::state::analytics::record::{AttemptRecord, JobRecord, SelectionRecord};
use hermes::state::analytics::Analytics;
use std::time::{Duration, Instant, SystemTime};

fn job(n: u64) -> JobRecord {
    JobRecord {
        request_id: format!("req_{n:016x}"),
        at: Some(SystemTime::now()),
        endpoint: "/chat/completions",
        model_requested: Some("auto".into()),
        job_type: Some("code_generation"),
        complexity: Some(0.4),
        criteria: Some("cost_first"),
        stream: n.is_multiple_of(2),
        status: 200,
        backend: Some("cheap".into()),
        model_used: Some("gpt-4o-mini".into()),
        total: Duration::from_millis(420),
        ttft: Some(Duration::from_millis(80)),
        overhead: Duration::from_micros(150),
        prompt_tokens: Some(320),
        completion_tokens: Some(210),
        cost_cents: Some(0.0174),
        attempts: vec![AttemptRecord {
            backend: "cheap".into(),
            model: "gpt-4o-mini".into(),
            elapsed: Duration::from_millis(419),
            ttft: Some(Duration::from_millis(80)),
            status: Some(200),
            success: Some(true),
            error: None,
            tokens: Some(530),
            cost_cents: Some(0.0174),
        }],
        selection: Some(SelectionRecord {
            criteria: "cost_first",
            candidates: vec![("cheap".into(), "gpt-4o-mini".into(), 0.02), ("premium".into(), "gpt-4o".into(), 0.3)],
            reasoning: "code_generation job, cost_first: cheap (~0.0200¢, quality 0.85) > premium (~0.3000¢, quality 0.97)".into(),
            confidence: 0.4,
            rejected: vec![("home".into(), "lacks the code_generation capability".into())],
        }),
        ..JobRecord::default()
    }
}

fn writer(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("hermes-bench-analytics-{}", std::process::id()));
    let (analytics, _) = Analytics::open(&dir.join("bench.duckdb"), 1 << 20, 64).expect("open analytics");
    const BATCH: u64 = 20_000;
    let mut group = c.benchmark_group("analytics");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let mut n = 0u64;
    group.bench_function("writer_jobs_to_duckdb", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let jobs: Vec<JobRecord> = (0..BATCH).map(|i| job(n + i)).collect();
                n += BATCH;
                let start = Instant::now();
                for j in jobs {
                    analytics.record(j);
                }
                assert!(analytics.flush(Duration::from_secs(120)), "flush");
                spent += start.elapsed();
            }
            spent
        })
    });
    group.finish();
    drop(analytics);
    std::fs::remove_dir_all(dir).ok();
}

criterion_group!(benches, writer);
criterion_main!(benches);
