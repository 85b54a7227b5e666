//! The routing brain end to end: criteria, job-type routing, budgets, privacy, retry-after,
//! broken streams, the cache, shadow traffic, client limits and load balancing, through the
//! `openai` SDK and curl against the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::{MockUpstream, Mode};
use common::*;
use std::process::Command;
use std::time::Duration;

fn ok_mode() -> Mode {
    Mode::Ok { gap: Duration::from_millis(1) }
}

#[test]
fn routing_decisions_as_a_client_sees_them() {
    let python = python_with_openai();
    let home = MockUpstream::start("home", ok_mode());
    let cheap = MockUpstream::start("cheap", ok_mode());
    let premium = MockUpstream::start("premium", ok_mode());
    let busy = MockUpstream::start("busy", Mode::Status(429));
    let cutter = MockUpstream::start("cutter", Mode::CutAfterFirstByte);
    let hang = MockUpstream::start("hang", Mode::Hang);
    let early = MockUpstream::start("early", Mode::CutBeforeFirstByte);
    let dead_port = free_port();
    let policies = scratch_dir("policies");
    let routing = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/routing.toml"))
        .unwrap()
        .replace("enabled = false", "enabled = true")
        .replace("# [shadow]\n# backend = \"candidate_backend\"\n# share = 0.1", "[shadow]\nbackend = \"premium\"\nshare = 1.0");
    assert!(routing.contains("[shadow]\nbackend = \"premium\""));
    std::fs::write(policies.join("routing.toml"), routing).unwrap();
    let url = |m: &MockUpstream| m.base_url();
    let hermes = Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "home,busy,cheap,premium,cutter,hang,dead,early".into()),
            ("HERMES_MAX_FAILOVER_ATTEMPTS", "4".into()),
            ("HERMES_FAILOVER_DELAY_SECONDS", "0.05".into()),
            ("BACKEND_HANG_TYPE", "custom".into()),
            ("BACKEND_HANG_BASE_URL", url(&hang)),
            ("BACKEND_HANG_MODELS", "flaky-model".into()),
            ("BACKEND_HANG_PRICE_INPUT_PER_MTOK", "0.01".into()),
            ("BACKEND_HANG_TIMEOUT", "1".into()),
            ("BACKEND_DEAD_TYPE", "custom".into()),
            ("BACKEND_DEAD_HOST", "127.0.0.1".into()),
            ("BACKEND_DEAD_PORT", dead_port.to_string()),
            ("BACKEND_DEAD_MODELS", "flaky-model".into()),
            ("BACKEND_DEAD_PRICE_INPUT_PER_MTOK", "0.01".into()),
            ("BACKEND_EARLY_TYPE", "custom".into()),
            ("BACKEND_EARLY_BASE_URL", url(&early)),
            ("BACKEND_EARLY_MODELS", "flaky-model".into()),
            ("BACKEND_EARLY_PRICE_INPUT_PER_MTOK", "0.01".into()),
            ("HERMES_HEALTH_CHECK_ENABLED", "false".into()),
            ("HERMES_JOB_TYPE_ROUTING", "true".into()),
            ("HERMES_CODE_JOBS_BACKEND", "premium".into()),
            ("BACKEND_HOME_TYPE", "local".into()),
            ("BACKEND_HOME_BASE_URL", url(&home)),
            ("BACKEND_HOME_MODELS", "llama".into()),
            ("BACKEND_BUSY_TYPE", "custom".into()),
            ("BACKEND_BUSY_BASE_URL", url(&busy)),
            ("BACKEND_BUSY_MODELS", "shared".into()),
            ("BACKEND_BUSY_PRICE_INPUT_PER_MTOK", "0.01".into()),
            ("BACKEND_BUSY_PRICE_OUTPUT_PER_MTOK", "0.01".into()),
            ("BACKEND_CHEAP_TYPE", "custom".into()),
            ("BACKEND_CHEAP_BASE_URL", url(&cheap)),
            ("BACKEND_CHEAP_MODELS", "mini,llama,shared,flaky-model".into()),
            ("BACKEND_CHEAP_PRICE_INPUT_PER_MTOK", "0.15".into()),
            ("BACKEND_CHEAP_PRICE_OUTPUT_PER_MTOK", "0.60".into()),
            ("BACKEND_CHEAP_QUALITY_SCORE", "0.85".into()),
            ("BACKEND_CHEAP_SPEED_SCORE", "0.95".into()),
            ("BACKEND_PREMIUM_TYPE", "custom".into()),
            ("BACKEND_PREMIUM_BASE_URL", url(&premium)),
            ("BACKEND_PREMIUM_MODELS", "big,llama".into()),
            ("BACKEND_PREMIUM_PRICE_INPUT_PER_MTOK", "2.5".into()),
            ("BACKEND_PREMIUM_PRICE_OUTPUT_PER_MTOK", "10".into()),
            ("BACKEND_PREMIUM_QUALITY_SCORE", "0.97".into()),
            ("BACKEND_PREMIUM_SPEED_SCORE", "0.7".into()),
            ("BACKEND_CUTTER_TYPE", "custom".into()),
            ("BACKEND_CUTTER_BASE_URL", url(&cutter)),
            ("BACKEND_CUTTER_MODELS", "cut-model".into()),
            ("BACKEND_CUTTER_PRICE_INPUT_PER_MTOK", "0.01".into()),
            ("BACKEND_CUTTER_PRICE_OUTPUT_PER_MTOK", "0.01".into()),
        ],
        &["--policies", policies.to_str().unwrap()],
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/sdk_routing.py");
    let out = Command::new(&python).arg(script).arg(hermes.url()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}\n--- hermes ---\n{}", String::from_utf8_lossy(&out.stderr), hermes.log());
    for s in ["criteria", "job_type_routing", "budget", "privacy", "reason", "retry_after", "cut_stream", "cache", "every_failure_kind"] {
        assert!(stdout.lines().any(|l| l == format!("ok {s}")), "{s}: {stdout}");
    }
    // Personal data never left for a remote backend, not even as shadow traffic.
    for m in [&cheap, &premium, &busy, &cutter] {
        for c in m.calls() {
            let body = String::from_utf8_lossy(&c.body).to_string();
            assert!(!body.contains("bob.smith@example.com") && !body.contains("4111 1111"), "private data reached {}", c.path);
        }
    }
    assert_eq!(busy.calls().len(), 1, "a 429 with retry-after rests the backend");
    assert_eq!(hang.calls().len(), 2, "the hanging backend was tried for both flaky-model requests");
    assert!(early.calls().iter().any(|c| c.json()["stream"] == true), "the stream was cut by early before cheap answered");
    assert_eq!(cheap.calls().iter().filter(|c| String::from_utf8_lossy(&c.body).contains("deterministic please")).count(), 1, "second answer from the cache");
    // Shadow: premium also received requests answered by others, and the comparison was logged.
    assert!(eventually(Duration::from_secs(3), || hermes.log().contains("shadow req_")).is_some(), "{}", hermes.log());
    assert!(premium.calls().iter().any(|c| c.json()["messages"][0]["content"] == "hello there, how are you?" && c.json()["stream"] == false));
    let metrics = curl(&[&format!("{}/metrics", hermes.url())]).body;
    assert!(metrics.contains(r#"job_type="code_generation""#), "{metrics}");
    assert!(metrics.contains("hermes_budget_rejections_total 1"), "{metrics}");
    assert!(metrics.contains(r#"hermes_shadow_requests_total{backend="premium",outcome="ok"}"#), "{metrics}");
}

#[test]
fn client_limits_answer_429_with_headers_and_equals_share_the_load() {
    let a = MockUpstream::start("a", ok_mode());
    let b = MockUpstream::start("b", ok_mode());
    let hermes = Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "a,b".into()),
            ("HERMES_API_KEYS", "k1,k2".into()),
            ("HERMES_CLIENT_RATE_LIMIT", "3".into()),
            ("HERMES_LOAD_BALANCING_ENABLED", "true".into()),
            ("HERMES_LOAD_BALANCING_STRATEGY", "round_robin".into()),
            ("BACKEND_A_TYPE", "custom".into()),
            ("BACKEND_A_BASE_URL", a.base_url()),
            ("BACKEND_A_MODELS", "m".into()),
            ("BACKEND_B_TYPE", "custom".into()),
            ("BACKEND_B_BASE_URL", b.base_url()),
            ("BACKEND_B_MODELS", "m".into()),
        ],
        &[],
    );
    let chat = format!("{}/v1/chat/completions", hermes.url());
    let answered: Vec<String> = (0..3)
        .map(|_| {
            let r = post_json(&chat, Some("k1"), &chat_body("m", "hi"));
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.header("x-ratelimit-limit-requests"), Some("3"));
            r.header("x-hermes-backend").unwrap().to_string()
        })
        .collect();
    assert!(answered.contains(&"a".to_string()) && answered.contains(&"b".to_string()), "round robin: {answered:?}");
    let r = post_json(&chat, Some("k1"), &chat_body("m", "hi"));
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")));
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert!(r.header("x-ratelimit-reset-requests").is_some());
    // Another key has its own allowance.
    assert_eq!(post_json(&chat, Some("k2"), &chat_body("m", "hi")).status, 200);
    assert!(curl(&[&format!("{}/metrics", hermes.url())]).body.contains(r#"hermes_rate_limited_total{scope="client"} 1"#));
}

#[test]
fn a_backend_over_its_rate_limit_is_skipped_and_alone_it_means_429() {
    let only = MockUpstream::start("only", ok_mode());
    let hermes = Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "only".into()),
            ("BACKEND_ONLY_TYPE", "custom".into()),
            ("BACKEND_ONLY_BASE_URL", only.base_url()),
            ("BACKEND_ONLY_MODELS", "m".into()),
            ("BACKEND_ONLY_RATE_LIMIT", "2".into()),
        ],
        &[],
    );
    let chat = format!("{}/v1/chat/completions", hermes.url());
    assert_eq!(post_json(&chat, None, &chat_body("m", "1")).status, 200);
    assert_eq!(post_json(&chat, None, &chat_body("m", "2")).status, 200);
    let r = post_json(&chat, None, &chat_body("m", "3"));
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("BACKEND_ONLY_RATE_LIMIT"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(only.calls().len(), 2, "the third request never reached the backend");
}

fn custom_backend(name: &str, upstream: &MockUpstream, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let var = |suffix: &str| format!("BACKEND_{}_{suffix}", name.to_ascii_uppercase());
    let mut env = vec![(var("TYPE"), "custom".to_string()), (var("BASE_URL"), upstream.base_url()), (var("MODELS"), "m".to_string())];
    env.extend(extra.iter().map(|(k, v)| (var(k), v.to_string())));
    env
}

fn start_with(pairs: &[(String, String)]) -> Hermes {
    let env: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    Hermes::start(&env, &[])
}

#[test]
fn max_response_time_bounds_the_wait_and_sends_slow_backends_last() {
    // A backend that never answers: without the limit the client would wait its 30 s timeout.
    let hang = MockUpstream::start("hang", Mode::Hang);
    let spare = MockUpstream::start("spare", ok_mode());
    let mut env = vec![
        ("HERMES_BACKENDS_ENABLED".to_string(), "hang,spare".to_string()),
        ("HERMES_PRIMARY_BACKEND".into(), "hang".into()),
        ("HERMES_HEALTH_CHECK_ENABLED".into(), "false".into()),
        ("HERMES_FAILOVER_DELAY_SECONDS".into(), "0.05".into()),
        ("HERMES_MAX_RESPONSE_TIME_SECONDS".into(), "1".into()),
    ];
    env.extend(custom_backend("hang", &hang, &[("TIMEOUT", "30")]));
    env.extend(custom_backend("spare", &spare, &[]));
    let hermes = start_with(&env);
    let began = std::time::Instant::now();
    let r = post_json(&format!("{}/v1/chat/completions", hermes.url()), None, &chat_body("m", "hi"));
    let waited = began.elapsed();
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (502, Some("backend_unavailable")), "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("within HERMES_MAX_RESPONSE_TIME_SECONDS (1s)") && message.contains("hang (cut off at the response time limit"), "{message}");
    assert!(waited < Duration::from_secs(5), "the limit, not hang's 30 s timeout, ended the wait: {waited:?}");
    assert!(spare.calls().is_empty(), "no time was left to fail over");
    drop(hermes);

    // Learned: a free backend whose streams take ~1.5 s is used until it has shown that, then
    // the paid one that answers in time goes first.
    let slow = MockUpstream::start("slow", Mode::Ok { gap: Duration::from_millis(300) });
    let quick = MockUpstream::start("quick", ok_mode());
    let mut env = vec![
        ("HERMES_BACKENDS_ENABLED".to_string(), "slow,quick".to_string()),
        ("HERMES_HEALTH_CHECK_ENABLED".into(), "false".into()),
        ("HERMES_MAX_RESPONSE_TIME_SECONDS".into(), "1".into()),
    ];
    env.extend(custom_backend("slow", &slow, &[]));
    env.extend(custom_backend("quick", &quick, &[("PRICE_INPUT_PER_MTOK", "0.5"), ("PRICE_OUTPUT_PER_MTOK", "1")]));
    let hermes = start_with(&env);
    let chat = format!("{}/v1/chat/completions", hermes.url());
    let stream = r#"{"model": "auto", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    let r = post_json(&chat, None, stream);
    assert_eq!((r.status, r.header("x-hermes-backend")), (200, Some("slow")), "free goes first while nothing is known");
    assert!(r.body.ends_with("data: [DONE]\n\n"), "a stream whose first token came in time is relayed whole");
    let r = curl(&[&chat, "-H", "content-type: application/json", "-H", "x-hermes-debug: 1", "--data-binary", stream]);
    assert_eq!((r.status, r.header("x-hermes-backend")), (200, Some("quick")), "{:?}", r.header("x-hermes-route-reason"));
    let reason = r.header("x-hermes-route-reason").unwrap_or_default();
    assert!(reason.contains("typically slower than 1s, so last: slow"), "{reason}");
    assert_eq!(slow.calls().len(), 1);
}

#[test]
fn failover_strategy_any_available_reaches_backends_routing_left_out() {
    let broken = MockUpstream::start("broken", Mode::Status(500));
    let coder = MockUpstream::start("coder", ok_mode());
    let mut env = vec![
        ("HERMES_BACKENDS_ENABLED".to_string(), "broken,coder".to_string()),
        ("HERMES_HEALTH_CHECK_ENABLED".into(), "false".into()),
        ("HERMES_FAILOVER_DELAY_SECONDS".into(), "0.05".into()),
    ];
    env.extend(custom_backend("broken", &broken, &[]));
    env.extend(custom_backend("coder", &coder, &[("CAPABILITIES", "code_generation")]));
    let question = chat_body("m", "What is the capital of France?");

    // next_best (the default): the code-only backend is not a candidate for a general question.
    let hermes = start_with(&env);
    let r = post_json(&format!("{}/v1/chat/completions", hermes.url()), None, &question);
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("broken (HTTP 500"), "{}", r.body);
    assert!(coder.calls().is_empty());
    drop(hermes);

    env.push(("HERMES_FAILOVER_STRATEGY".into(), "next_best,any_available".into()));
    let hermes = start_with(&env);
    let r = post_json(&format!("{}/v1/chat/completions", hermes.url()), None, &question);
    assert_eq!((r.status, r.header("x-hermes-backend"), r.header("x-hermes-attempts")), (200, Some("coder"), Some("2")), "{}", r.body);
    assert_eq!(r.header("x-hermes-job-type"), Some("general"));
    let metrics = curl(&[&format!("{}/metrics", hermes.url())]).body;
    assert!(metrics.contains(r#"hermes_failovers_total{from="broken",to="coder",reason="status_5xx"} 1"#), "{metrics}");
}
