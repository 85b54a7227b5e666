//! The analytics file as an operator reads it: the real gateway takes a few hundred requests
//! across mock backends of known behaviour, stops, and the file is opened with the official
//! `duckdb` Python package.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::{MockUpstream, Mode};
use common::{chat_body, curl, duck, duck_number, post_json, scratch_dir, Hermes};
use std::collections::HashMap;
use std::time::Duration;

const UPSTREAM_KEY: &str = "sk-upstream-NEVER-IN-THE-FILE-4242";

fn feedback(h: &Hermes, id: &str, rating: serde_json::Value) -> common::CurlReply {
    post_json(&format!("{}/feedback", h.url()), None, &serde_json::json!({"request_id": id, "rating": rating, "comment": "test verdict"}).to_string())
}

#[test]
fn every_job_attempt_decision_and_rating_is_in_the_file() {
    let broken = MockUpstream::start("broken", Mode::Status(500));
    let mut pairs = vec![
        ("HERMES_BACKENDS_ENABLED".to_string(), "broken,steady".to_string()),
        ("HERMES_PRIMARY_BACKEND".into(), "broken".into()),
        ("HERMES_UNHEALTHY_THRESHOLD".into(), "100000".into()),
        ("HERMES_HEALTH_CHECK_ENABLED".into(), "false".into()),
        ("HERMES_FAILOVER_DELAY_SECONDS".into(), "0".into()),
        ("BACKEND_BROKEN_TYPE".into(), "custom".into()),
        ("BACKEND_BROKEN_BASE_URL".into(), broken.base_url()),
        ("BACKEND_BROKEN_MODELS".into(), "broken-model".into()),
        ("BACKEND_BROKEN_API_KEY".into(), UPSTREAM_KEY.into()),
    ];
    pairs.extend(common::sim_backend("steady", "steady-model", "0.5", "1.5"));
    let mut h = Hermes::start(&common::env_of(pairs), &[]);
    let url = format!("{}/v1/chat/completions", h.url());

    // 150 plain answers, 30 streams, 10 bad bodies and 10 unknown models, from 6 clients at once.
    let replies: Vec<(String, common::CurlReply)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|w| {
                let url = url.clone();
                s.spawn(move || {
                    let mut out = Vec::new();
                    for i in (w..200).step_by(6) {
                        let (kind, body) = match i {
                            0..=149 => ("plain", chat_body("auto", &format!("Summarise point {i} of the plan"))),
                            150..=179 => (
                                "stream",
                                serde_json::json!({"model": "auto", "stream": true, "stream_options": {"include_usage": true},
                                                   "messages": [{"role": "user", "content": format!("Tell me a story {i}")}]})
                                .to_string(),
                            ),
                            180..=189 => ("bad", "{not json".to_string()),
                            _ => ("unknown", chat_body("no-such-model", "hello")),
                        };
                        out.push((kind.to_string(), post_json(&url, None, &body)));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let count = |kind: &str, status: u16| replies.iter().filter(|(k, r)| k == kind && r.status == status).count();
    assert_eq!((count("plain", 200), count("stream", 200), count("bad", 400), count("unknown", 404)), (150, 30, 10, 10));
    let answered: Vec<&str> = replies.iter().filter(|(_, r)| r.status == 200).map(|(_, r)| r.header("x-hermes-request-id").unwrap()).collect();
    assert!(replies.iter().filter(|(_, r)| r.status == 200).all(|(_, r)| r.header("x-hermes-attempts") == Some("2")));

    // Ratings: 25 answers rated, one of them twice (the second replaces the first).
    let mut ratings: HashMap<String, i64> = HashMap::new();
    for (n, id) in answered.iter().take(25).enumerate() {
        let rating = (n % 5 + 1) as i64;
        let r = feedback(&h, id, rating.into());
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["backend"], "steady");
        ratings.insert(id.to_string(), rating);
    }
    assert_eq!(feedback(&h, answered[0], 4.into()).status, 200);
    ratings.insert(answered[0].to_string(), 4);
    // Bad ratings are refused in OpenAI's shape and change nothing.
    for (id, rating, status, param) in [
        (answered[1], serde_json::json!(7), 400, "rating"),
        (answered[1], serde_json::json!(2.5), 400, "rating"),
        ("req_nope", serde_json::json!(3), 404, "request_id"),
    ] {
        let r = feedback(&h, id, rating);
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.json()["error"]["param"], param);
    }

    h.stop();
    let db = h.db();
    let q = duck(
        &db,
        &[
            "SELECT count(*), count(*) FILTER (WHERE status = 200), count(*) FILTER (WHERE status = 400), count(*) FILTER (WHERE status = 404), count(*) FILTER (WHERE stream) FROM jobs",
            "SELECT id FROM jobs WHERE status = 200",
            "SELECT backend, success, count(*) FROM backend_performance GROUP BY ALL ORDER BY ALL",
            "SELECT count(*) FROM jobs j WHERE j.status = 200 AND j.attempts <> (SELECT count(*) FROM backend_performance p WHERE p.job_id = j.id)",
            "SELECT count(*), count(*) FILTER (WHERE selected_backend = 'broken' AND final_backend = 'steady' AND fallback_used AND NOT selection_successful), min(length(selection_reasoning)), count(DISTINCT selection_criteria) FROM backend_selection_history",
            "SELECT job_id, user_satisfaction, quality_score FROM backend_performance WHERE user_satisfaction IS NOT NULL",
            "SELECT count(*) FROM feedback",
            "SELECT count(*) FROM jobs WHERE prompt IS NOT NULL OR response IS NOT NULL",
            "SELECT count(*) FROM jobs WHERE status = 200 AND (job_type IS NULL OR backend <> 'steady' OR model_used <> 'steady-model' OR cost_cents IS NULL OR prompt_tokens IS NULL)",
            "SELECT name, backend_type, total_jobs, successful_jobs, failed_jobs FROM backends ORDER BY name",
            "SELECT max(version) FROM schema_migrations",
            &format!("@varchar_columns_containing {UPSTREAM_KEY}"),
        ],
    );
    assert_eq!(q[0][0], serde_json::json!([200, 180, 10, 10, 30]), "every request has its job row");
    let mut ids: Vec<String> = q[1].iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
    let mut expected: Vec<String> = answered.iter().map(|s| s.to_string()).collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected, "job ids are the x-hermes-request-id clients saw");
    assert_eq!(q[2], vec![serde_json::json!(["broken", false, 180]), serde_json::json!(["steady", true, 180])], "one row per attempt");
    assert_eq!(q[3][0][0], 0, "attempt rows match each job's attempt count");
    assert_eq!(q[4][0][0], 180);
    assert_eq!(q[4][0][1], 180, "each selection names the first choice, the fallback and the final backend");
    assert!(q[4][0][2].as_i64().unwrap() > 20, "every selection has its reasoning");
    let stored: HashMap<String, i64> = q[5].iter().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap())).collect();
    assert_eq!(stored, ratings, "user_satisfaction holds each answer's latest rating");
    assert!(q[5].iter().all(|r| (r[2].as_f64().unwrap() - (r[1].as_f64().unwrap() - 1.0) / 4.0).abs() < 1e-9));
    assert_eq!(q[6][0][0], 26, "every rating is kept in feedback");
    assert_eq!(q[7][0][0], 0, "prompts and answers are not stored by default");
    assert_eq!(q[8][0][0], 0, "answered jobs carry type, backend, model, tokens and cost");
    assert_eq!(q[9], vec![serde_json::json!(["broken", "custom", 180, 0, 180]), serde_json::json!(["steady", "sim", 180, 180, 0])]);
    assert_eq!(q[10][0][0], 6, "the schema is at its latest version");
    assert!(q[11].is_empty(), "the upstream key is in no column: {:?}", q[11]);
    let raw = std::fs::read(&db).unwrap();
    assert!(!raw.windows(UPSTREAM_KEY.len()).any(|w| w == UPSTREAM_KEY.as_bytes()), "the upstream key is not in the file's bytes");
    assert!(!h.log().contains(UPSTREAM_KEY));
}

#[test]
fn kill_9_loses_at_most_the_last_second_and_content_is_kept_when_asked() {
    let dir = scratch_dir("kill9");
    let db = dir.join("analytics/hermes.duckdb");
    let mut pairs = vec![
        ("HERMES_BACKENDS_ENABLED".to_string(), "steady".to_string()),
        ("HERMES_LOG_CONTENT".into(), "true".into()),
        ("HERMES_DB_PATH".into(), db.display().to_string()),
    ];
    pairs.extend(common::sim_backend("steady", "steady-model", "0", "0"));
    let env = common::env_of(pairs);
    let mut h = Hermes::start(&env, &[]);
    let url = format!("{}/v1/chat/completions", h.url());
    for i in 0..40 {
        let body = if i % 4 == 0 {
            serde_json::json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": format!("the quick zebra {i}")}]}).to_string()
        } else {
            chat_body("auto", &format!("the quick zebra {i}"))
        };
        assert_eq!(post_json(&url, None, &body).status, 200);
    }
    // More than one flush interval later, kill -9: nothing may be lost.
    std::thread::sleep(Duration::from_millis(1600));
    h.child.kill().unwrap();
    h.child.wait().unwrap();
    let q = duck(
        &db,
        &[
            "SELECT count(*), count(*) FILTER (WHERE prompt LIKE '%quick zebra%'), count(*) FILTER (WHERE response LIKE '%simulated%') FROM jobs",
            "SELECT count(*) FROM backend_performance",
        ],
    );
    assert_eq!(q[0][0], serde_json::json!([40, 40, 40]), "every job survived kill -9, with its prompt and answer");
    assert_eq!(q[1][0][0], 40);

    // The next start replays the file and remembers what was learned.
    let h = Hermes::start(&env, &[]);
    let stats = curl(&[&format!("{}/admin/stats", h.url())]).json();
    let jobs: u64 = stats["rows"].as_array().unwrap().iter().map(|r| r["jobs"].as_u64().unwrap()).sum();
    assert_eq!(jobs, 40, "{stats}");
}

/// Two identical backends; people rate one 1 and the other 5 on code jobs. Within a few dozen
/// jobs nearly all code goes to the second, and a restart keeps it there. Each seed makes the
/// run repeatable; several seeds show it does not hang on which twin the dice favour first.
#[test]
fn ratings_teach_the_router_and_the_lesson_survives_a_restart() {
    let code = |n: usize| chat_body("auto", &format!("Write a Python function that parses log line {n} and returns the timestamp"));
    let run = |h: &Hermes, from: usize, jobs: usize| -> Vec<String> {
        (from..from + jobs)
            .map(|n| {
                let r = post_json(&format!("{}/v1/chat/completions", h.url()), None, &code(n));
                assert_eq!(r.status, 200, "{}", r.body);
                assert_eq!(r.header("x-hermes-job-type"), Some("code_generation"));
                let backend = r.header("x-hermes-backend").unwrap().to_string();
                let rating = if backend == "twin_a" { 1 } else { 5 };
                assert_eq!(feedback(h, r.header("x-hermes-request-id").unwrap(), rating.into()).status, 200);
                backend
            })
            .collect()
    };
    let on_b = |v: &[String]| v.iter().filter(|b| *b == "twin_b").count();
    let env_for = |seed: u64, db: &std::path::Path| {
        let mut pairs = vec![
            ("HERMES_BACKENDS_ENABLED".to_string(), "twin_a,twin_b".to_string()),
            ("HERMES_RANDOM_SEED".into(), seed.to_string()),
            ("HERMES_DB_PATH".into(), db.display().to_string()),
        ];
        pairs.extend(common::sim_backend("twin_a", "twin-model", "0.5", "1.5"));
        pairs.extend(common::sim_backend("twin_b", "twin-model", "0.5", "1.5"));
        common::env_of(pairs)
    };
    let mut a_tried = 0;
    let mut replicas = Vec::new();
    for seed in 1..=3 {
        let db = scratch_dir("learn").join("hermes.duckdb");
        let mut h = Hermes::start(&env_for(seed, &db), &[]);
        let first = run(&h, 0, 40);
        assert!(on_b(&first[20..]) >= 19, "seed {seed}: jobs 21-40 went to the well-rated twin: {first:?}");
        a_tried += usize::from(first.iter().any(|b| b == "twin_a"));
        h.stop();
        replicas.push(db);
    }
    assert!(a_tried >= 1, "close candidates share traffic: the badly rated twin was tried under some seed");

    let db = scratch_dir("learn").join("hermes.duckdb");
    let env = env_for(7, &db);
    let mut h = Hermes::start(&env, &[]);
    let first = run(&h, 0, 40);
    assert!(on_b(&first[20..]) >= 19, "jobs 21-40 went to the well-rated twin: {first:?}");

    // The learned table, from the running gateway.
    let table = common::hermes_once(&[("HERMES_LISTEN", &format!("127.0.0.1:{}", h.port))], &["stats"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{text} {}", String::from_utf8_lossy(&table.stderr));
    let line = |b: &str| text.lines().find(|l| l.starts_with("code_generation") && l.contains(b)).map(str::to_string);
    assert!(line("twin_b").unwrap_or_else(|| panic!("{text}")).contains("5.00 ("), "{text}");
    assert!(line("twin_a").is_none_or(|l| l.contains("1.00 (")), "{text}");

    // The same prompt to both, through the running gateway.
    let compared = common::hermes_once(&[("HERMES_LISTEN", &format!("127.0.0.1:{}", h.port))], &["compare", "Say hello", "--backends", "twin_a,twin_b"]);
    let text = String::from_utf8_lossy(&compared.stdout);
    assert!(compared.status.success() && text.lines().filter(|l| l.contains(" 200 ")).count() == 2, "{text}");

    h.stop();
    let mut h = Hermes::start(&env, &[]);
    let after = run(&h, 40, 20);
    assert!(on_b(&after) >= 19, "after a restart the lesson holds: {after:?}");
    h.stop();

    // Read from the file alone, the table says the same.
    let from_file = common::hermes_once(&[], &["stats", "--db", db.to_str().unwrap(), "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&from_file.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&from_file.stderr)));
    let b = rows.as_array().unwrap().iter().find(|r| r["backend"] == "twin_b").unwrap();
    assert_eq!(b["rating"], 5.0);
    assert!(b["share"].as_f64().unwrap() > 0.8, "{b}");
    assert_eq!(duck_number(&db, "SELECT count(*) FROM comparisons WHERE source = 'compare' AND status = 200"), 2.0);

    // Three replicas' files added up: 120 code jobs, each rated.
    let mut args = vec!["stats", "--json"];
    for r in &replicas {
        args.extend(["--db", r.to_str().unwrap()]);
    }
    let merged = common::hermes_once(&[], &args);
    let rows: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&merged.stderr)));
    let total = |key: &str| rows.as_array().unwrap().iter().map(|r| r[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!((total("jobs"), total("ratings")), (120, 120), "{rows}");
}
