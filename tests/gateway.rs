//! The gateway core end to end: the real binary, mock upstreams in OpenAI's wire format, and
//! real clients (the `openai` Python SDK, curl, reqwest).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::{stream_events, MockUpstream, Mode};
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const CLIENT_KEY: &str = "hermes-client-key-1";
const ALPHA_KEY: &str = "sk-upstream-alpha-SECRET";
const BETA_KEY: &str = "sk-upstream-beta-SECRET";

fn ok_mode() -> Mode {
    Mode::Ok { gap: Duration::from_millis(2) }
}

/// alpha (primary) and beta are healthy; broken answers 500 and is listed first for shared-model.
fn three_backends(alpha: &MockUpstream, beta: &MockUpstream, broken: &MockUpstream) -> Vec<(&'static str, String)> {
    vec![
        ("HERMES_API_KEYS", format!("other-key,{CLIENT_KEY}")),
        ("HERMES_BACKENDS_ENABLED", "broken,alpha,beta".into()),
        ("HERMES_PRIMARY_BACKEND", "alpha".into()),
        ("BACKEND_ALPHA_TYPE", "custom".into()),
        ("BACKEND_ALPHA_BASE_URL", alpha.base_url()),
        ("BACKEND_ALPHA_API_KEY", ALPHA_KEY.into()),
        ("BACKEND_ALPHA_MODELS", "gpt-4o-mini".into()),
        ("BACKEND_BETA_TYPE", "custom".into()),
        ("BACKEND_BETA_HOST", "127.0.0.1".into()),
        ("BACKEND_BETA_PORT", beta.port.to_string()),
        ("BACKEND_BETA_API_KEY", BETA_KEY.into()),
        ("BACKEND_BETA_MODELS", "beta-model,shared-model".into()),
        ("BACKEND_BROKEN_TYPE", "custom".into()),
        ("BACKEND_BROKEN_BASE_URL", broken.base_url()),
        ("BACKEND_BROKEN_MODELS", "shared-model".into()),
        ("HERMES_UNHEALTHY_THRESHOLD", "100".into()),
    ]
}

#[test]
fn openai_sdk_uses_hermes_as_its_base_url() {
    let python = python_with_openai();
    let alpha = MockUpstream::start("alpha", ok_mode());
    let beta = MockUpstream::start("beta", ok_mode());
    let broken = MockUpstream::start("broken", Mode::Status(500));
    let hermes = Hermes::start(&three_backends(&alpha, &beta, &broken), &[]);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/sdk_scenarios.py");
    let out = Command::new(&python).arg(script).arg(hermes.url()).arg(CLIENT_KEY).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "SDK scenarios failed:\n{stdout}\n{}\n--- hermes log ---\n{}", String::from_utf8_lossy(&out.stderr), hermes.log());
    for scenario in ["models", "chat", "stream", "auto", "failover", "stream_failover", "embeddings", "wrong_key", "unknown_model", "bad_field"] {
        assert!(stdout.lines().any(|l| l == format!("ok {scenario}")), "scenario {scenario} did not pass:\n{stdout}");
    }

    // What the upstream received: every field untouched, the backend's key, never the client's.
    let calls = alpha.calls();
    let first = calls.iter().find(|c| c.path == "/v1/chat/completions").unwrap();
    let body = first.json();
    assert_eq!(body["seed"], 7);
    assert_eq!(body["tools"][0]["function"]["name"], "lookup");
    assert_eq!(body["response_format"]["type"], "text");
    assert_eq!(body["hermes_test_marker"], "kept");
    assert_eq!(body["messages"].as_array().unwrap().len(), 4);
    for c in &calls {
        assert_eq!(c.header("authorization").as_deref(), Some(format!("Bearer {ALPHA_KEY}").as_str()));
    }
    let auto = calls.iter().find(|c| c.json()["messages"][0]["content"] == "hi").unwrap();
    assert_eq!(auto.json()["model"], "gpt-4o-mini", "auto is replaced by the backend's model");
    assert!(beta.calls().iter().all(|c| c.header("authorization").as_deref() == Some(&format!("Bearer {BETA_KEY}"))));
    // broken failed once; after that its lower reliability ranks beta first for the stream.
    assert_eq!(broken.calls().len(), 1);
    assert_eq!(beta.calls().len(), 2);
    assert!(broken.calls()[0].header("authorization").is_none(), "a backend without a key gets no key");

    // The stream's usage was read for accounting.
    let metrics = curl(&[&format!("{}/metrics", hermes.url())]).body;
    assert!(metrics.contains(r#"hermes_tokens_total{backend="alpha",model="gpt-4o-mini",direction="output"}"#), "{metrics}");
    assert!(metrics.contains(r#"hermes_failovers_total{from="broken",to="beta",reason="status_5xx"} 1"#), "{metrics}");
    assert!(!metrics.contains("gpt-9-ultra"), "client-chosen model names never become label values");

    // Keys never reach the logs.
    let log = hermes.log();
    for secret in [ALPHA_KEY, BETA_KEY, CLIENT_KEY] {
        assert!(!log.contains(secret), "{secret} leaked into the log:\n{log}");
    }
}

#[test]
fn bad_requests_get_openai_shaped_errors_and_the_gateway_stays_up() {
    let alpha = MockUpstream::start("alpha", ok_mode());
    let beta = MockUpstream::start("beta", ok_mode());
    let broken = MockUpstream::start("broken", Mode::Status(500));
    let mut env = three_backends(&alpha, &beta, &broken);
    env.push(("HERMES_MAX_BODY_BYTES", "2000000".into()));
    let hermes = Hermes::start(&env, &[]);
    let chat = format!("{}/v1/chat/completions", hermes.url());

    let r = post_json(&chat, Some(CLIENT_KEY), "{not json");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(r.header("x-hermes-request-id").is_some() && r.header("x-hermes-attempts") == Some("0"));

    let r = post_json(&chat, Some(CLIENT_KEY), r#"{"model": 42, "messages": []}"#);
    assert_eq!((r.status, r.json()["error"]["param"].as_str()), (400, Some("model")));
    let r = post_json(&chat, Some(CLIENT_KEY), r#"{"model": "gpt-4o-mini"}"#);
    assert_eq!((r.status, r.json()["error"]["param"].as_str()), (400, Some("messages")));
    let r = post_json(&chat, Some(CLIENT_KEY), r#"{"model": "gpt-4o-mini", "messages": "hi"}"#);
    assert_eq!((r.status, r.json()["error"]["param"].as_str()), (400, Some("messages")));
    let r = post_json(&chat, Some(CLIENT_KEY), r#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}"#);
    assert_eq!((r.status, r.json()["error"]["param"].as_str()), (400, Some("stream")));

    // No key, wrong key.
    let r = post_json(&chat, None, &chat_body("gpt-4o-mini", "hi"));
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    let r = post_json(&chat, Some(ALPHA_KEY), &chat_body("gpt-4o-mini", "hi"));
    assert_eq!(r.status, 401, "an upstream key is not a client key");

    // Unknown path and wrong method.
    let r = curl(&[&format!("{}/v1/nothing-here", hermes.url())]);
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (404, Some("unknown_url")));
    let r = curl(&[&chat]);
    assert_eq!(r.status, 405);

    // Over the limit: refused from Content-Length, before the body is read.
    let big = scratch_dir("big").join("big.json");
    let filler = "x".repeat(2_100_000);
    std::fs::write(&big, chat_body("gpt-4o-mini", &filler)).unwrap();
    let r = curl(&[
        &chat,
        "-H",
        &format!("Authorization: Bearer {CLIENT_KEY}"),
        "-H",
        "content-type: application/json",
        "--data-binary",
        &format!("@{}", big.display()),
    ]);
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (413, Some("request_too_large")));

    // A 1 MiB request (far past pingora's 64 KiB retry buffer) arrives whole, also after a failover.
    let filler = "y".repeat(1 << 20);
    let body = chat_body("shared-model", &filler);
    std::fs::write(&big, &body).unwrap();
    let r = curl(&[
        &chat,
        "-H",
        &format!("Authorization: Bearer {CLIENT_KEY}"),
        "-H",
        "content-type: application/json",
        "--data-binary",
        &format!("@{}", big.display()),
    ]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-hermes-attempts"), Some("2"));
    assert_eq!(broken.calls().last().unwrap().body.len(), body.len());
    assert_eq!(beta.calls().last().unwrap().body.len(), body.len());
    assert_eq!(beta.calls().last().unwrap().body, body.as_bytes());

    // Still up and answering.
    let r = post_json(&chat, Some(CLIENT_KEY), &chat_body("gpt-4o-mini", "still there?"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello from alpha");
    assert!(r.header("x-hermes-cost-cents").is_some());
}

/// A gateway whose one backend is `upstream`, serving model `m`.
fn serving_model_m(upstream: &MockUpstream) -> Hermes {
    Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "only".into()),
            ("BACKEND_ONLY_TYPE", "custom".into()),
            ("BACKEND_ONLY_BASE_URL", upstream.base_url()),
            ("BACKEND_ONLY_MODELS", "m".into()),
        ],
        &[],
    )
}

#[test]
fn streams_are_relayed_byte_for_byte_as_they_arrive() {
    let slow = MockUpstream::start("slow", Mode::Ok { gap: Duration::from_millis(300) });
    let hermes = serving_model_m(&slow);
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": {"include_usage": true}});
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (received, first_at, total) = runtime.block_on(async {
        let started = Instant::now();
        let mut resp = reqwest::Client::new().post(format!("{}/v1/chat/completions", hermes.url())).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream; charset=utf-8");
        let mut received = Vec::new();
        let mut first_at = None;
        while let Some(chunk) = resp.chunk().await.unwrap() {
            first_at.get_or_insert(started.elapsed());
            received.extend_from_slice(&chunk);
        }
        (received, first_at, started.elapsed())
    });
    let expected = stream_events("slow", "m", true).concat();
    assert_eq!(String::from_utf8(received).unwrap(), expected, "the stream reaches the client byte for byte");
    // Six gaps of 300 ms upstream: the first event must arrive long before the last.
    let first_at = first_at.unwrap();
    assert!(total - first_at >= Duration::from_millis(1200), "first chunk at {first_at:?}, end at {total:?}: the stream was buffered");
}

/// A stream's head is written with the events that had arrived (patches/pingora-core): the
/// client's first read holds the head and the first event, not the head alone. (Written apart,
/// the two were often read together anyway, so ten streams are asked for.)
#[test]
fn a_streams_head_and_first_event_arrive_in_one_read() {
    use std::io::{Read, Write};
    let quick = MockUpstream::start("quick", Mode::Ok { gap: Duration::from_millis(10) });
    let hermes = serving_model_m(&quick);
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let request =
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: hermes\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let mut conn = std::net::TcpStream::connect(hermes.url().trim_start_matches("http://")).unwrap();
    conn.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 65536];
    for i in 0..10 {
        conn.write_all(request.as_bytes()).unwrap();
        let n = conn.read(&mut buf).unwrap();
        let mut seen = buf[..n].to_vec();
        let first = String::from_utf8_lossy(&seen).to_string();
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        let events = first.split_once("\r\n\r\n").map(|(_, rest)| rest.to_string()).unwrap_or_default();
        assert!(events.contains("data: {") && events.contains("chatcmpl-quick"), "stream {i}: the first read ended after the head: {first:?}");
        // The rest of this answer, to the chunked body's end, before the next request.
        while !seen.ends_with(b"0\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended early");
            seen.extend_from_slice(&buf[..n]);
        }
    }
}

#[test]
fn a_stream_cut_after_its_first_byte_ends_with_an_error_event_and_before_it_fails_over() {
    let cut_late = MockUpstream::start("late", Mode::CutAfterFirstByte);
    let cut_early = MockUpstream::start("early", Mode::CutBeforeFirstByte);
    let good = MockUpstream::start("good", ok_mode());
    let hermes = Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "late,early,good".into()),
            ("BACKEND_LATE_TYPE", "custom".into()),
            ("BACKEND_LATE_BASE_URL", cut_late.base_url()),
            ("BACKEND_LATE_MODELS", "late-model".into()),
            ("BACKEND_EARLY_TYPE", "custom".into()),
            ("BACKEND_EARLY_BASE_URL", cut_early.base_url()),
            ("BACKEND_EARLY_MODELS", "m".into()),
            ("BACKEND_GOOD_TYPE", "custom".into()),
            ("BACKEND_GOOD_BASE_URL", good.base_url()),
            ("BACKEND_GOOD_MODELS", "m".into()),
        ],
        &[],
    );
    let chat = format!("{}/v1/chat/completions", hermes.url());
    let stream = |model: &str| serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": true}).to_string();

    let r = post_json(&chat, None, &stream("late-model"));
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("data: {"), "{}", r.body);
    assert!(r.body.contains("event: error\ndata: {\"error\""), "{}", r.body);
    assert!(r.body.contains("stream_interrupted"));
    assert!(!r.body.contains("[DONE]"), "a cut stream must not look complete: {}", r.body);

    let r = post_json(&chat, None, &stream("m"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hermes-backend"), Some("good"));
    assert_eq!(r.header("x-hermes-attempts"), Some("2"));
    assert!(r.body.ends_with("data: [DONE]\n\n"));
    assert_eq!(cut_early.calls().len(), 1);
}

#[test]
fn refused_connections_and_timeouts_fail_over_and_exhaustion_names_what_was_tried() {
    let hang = MockUpstream::start("hang", Mode::Hang);
    let good = MockUpstream::start("good", ok_mode());
    let dead_port = free_port();
    let env = vec![
        ("HERMES_BACKENDS_ENABLED", "dead,hang,good".into()),
        ("HERMES_FAILOVER_DELAY_SECONDS", "0.05".into()),
        // Active checks would take `dead` out before the first request: this tests failover.
        ("HERMES_HEALTH_CHECK_ENABLED", "false".into()),
        ("BACKEND_DEAD_TYPE", "custom".into()),
        ("BACKEND_DEAD_HOST", "127.0.0.1".into()),
        ("BACKEND_DEAD_PORT", dead_port.to_string()),
        ("BACKEND_DEAD_MODELS", "m".into()),
        ("BACKEND_HANG_TYPE", "custom".into()),
        ("BACKEND_HANG_BASE_URL", hang.base_url()),
        ("BACKEND_HANG_MODELS", "m".into()),
        ("BACKEND_HANG_TIMEOUT", "1".into()),
        ("BACKEND_GOOD_TYPE", "custom".into()),
        ("BACKEND_GOOD_BASE_URL", good.base_url()),
        ("BACKEND_GOOD_MODELS", "m,only-dead".into()),
    ];
    let hermes = Hermes::start(&env, &[]);
    let chat = format!("{}/v1/chat/completions", hermes.url());
    let r = post_json(&chat, None, &chat_body("m", "hi"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-hermes-attempts"), Some("3"));
    assert_eq!(r.header("x-hermes-backend"), Some("good"));
    assert_eq!(hang.calls().len(), 1);

    // Nothing left: 502 naming every backend tried and why.
    good.set_mode(Mode::Status(503));
    let r = post_json(&chat, None, &chat_body("m", "hi"));
    assert_eq!(r.status, 502, "{}", r.body);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    for part in ["dead (connection failed)", "hang (timed out after 1s)", "good (HTTP 503: mock good answers 503)"] {
        assert!(msg.contains(part), "{part} missing from: {msg}");
    }
    assert_eq!(r.json()["error"]["code"], "backend_unavailable");

    // With failover off, one try only.
    drop(hermes);
    good.set_mode(ok_mode());
    let mut env = env;
    env.push(("HERMES_FAILOVER_ENABLED", "false".into()));
    let hermes = Hermes::start(&env, &[]);
    let r = post_json(&format!("{}/v1/chat/completions", hermes.url()), None, &chat_body("m", "hi"));
    assert_eq!((r.status, r.header("x-hermes-attempts")), (502, Some("1")));
}

#[test]
fn demo_mode_routes_streams_and_fails_over_with_no_model_at_all() {
    // Demo defaults tuned by the environment: local always fails, budget never does.
    let hermes = Hermes::start(&[("BACKEND_LOCAL_SIM_FAILURE_RATE", "1".into()), ("BACKEND_BUDGET_SIM_FAILURE_RATE", "0".into())], &["--demo"]);
    let chat = format!("{}/v1/chat/completions", hermes.url());
    let models = curl(&[&format!("{}/v1/models", hermes.url())]).json();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["auto", "sim-local", "sim-budget", "sim-premium"]);

    // auto: local_sim comes first and fails (its failure rate is set to 1 here), budget_sim answers.
    let r = post_json(&chat, None, &chat_body("auto", "hello"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.header("x-hermes-backend"), r.header("x-hermes-attempts")), (Some("budget_sim"), Some("2")));
    assert_eq!(r.header("x-hermes-model"), Some("sim-budget"));

    let r = post_json(&chat, None, &chat_body("sim-premium", "what does the demo show"));
    assert_eq!(r.status, 200, "{}", r.body);
    let content = r.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(content.starts_with("[simulated]"), "{content}");
    assert!(content.contains("premium_sim"));
    assert!(r.json()["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let cost: f64 = r.header("x-hermes-cost-cents").unwrap().parse().unwrap();
    assert!(cost > 0.0, "premium costs money");

    let body = serde_json::json!({"model": "sim-budget", "messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 5});
    let r = post_json(&chat, None, &body.to_string());
    assert_eq!(r.status, 200);
    let events: Vec<&str> = r.body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 1 + 5 + 1 + 1 + 1, "role, 5 tokens, finish, usage, done: {}", r.body);
    assert!(r.body.contains(r#""completion_tokens":5"#));
}

#[test]
fn configuration_mistakes_stop_start_up_with_one_line_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("HERMES_BACKENDS_ENABLED", "x"), ("BACKEND_X_TYPE", "banana")], "BACKEND_X_TYPE"),
        (&[("HERMES_BACKENDS_ENABLED", "x"), ("BACKEND_X_TYPE", "custom")], "BACKEND_X_HOST"),
        (&[("HERMES_BACKENDS_ENABLED", "x"), ("BACKEND_X_TYPE", "custom"), ("BACKEND_X_HOST", "h"), ("BACKEND_X_TIMEOUT", "soon")], "BACKEND_X_TIMEOUT"),
        (&[("HERMES_BACKENDS_ENABLED", "x"), ("BACKEND_X_TYPE", "custom"), ("BACKEND_X_HOST", "h"), ("BACKEND_X_PORT", "99999")], "BACKEND_X_PORT"),
        (&[("HERMES_BACKENDS_ENABLED", "x"), ("BACKEND_X_TYPE", "sim"), ("HERMES_PRIMARY_BACKEND", "y")], "HERMES_PRIMARY_BACKEND"),
        (&[], "HERMES_BACKENDS_ENABLED"),
    ];
    for (env, var) in cases {
        for cmd in [&["serve"][..], &["check-config"][..]] {
            let out = hermes_once(env, cmd);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd:?} {env:?}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line: {stderr}");
            assert!(lines[0].contains(var), "{var} not named: {stderr}");
        }
    }
    // A good configuration is printed without its keys.
    let out = hermes_once(
        &[("HERMES_BACKENDS_ENABLED", "x"), ("BACKEND_X_TYPE", "openai"), ("BACKEND_X_API_KEY", "sk-very-secret"), ("BACKEND_X_MODELS", "gpt-4o")],
        &["check-config"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("https://api.openai.com/v1") && stdout.contains("key=set") && stdout.contains("$2.5/M in"), "{stdout}");
    assert!(!stdout.contains("sk-very-secret"));
}

#[test]
fn env_file_is_read_and_real_environment_wins() {
    let dir = scratch_dir("envfile");
    let file = dir.join("hermes.env");
    std::fs::write(
        &file,
        "# spec format\nHERMES_BACKENDS_ENABLED=\"talos,remote_api\"\nBACKEND_TALOS_TYPE=local\nBACKEND_TALOS_HOST=100.64.0.2\nBACKEND_TALOS_PORT=8001\nBACKEND_TALOS_MODELS=\"llama3.1:8b,qwen2.5-coder:7b\"\nBACKEND_REMOTE_API_TYPE=openrouter\nBACKEND_REMOTE_API_KEY=your_api_key\nBACKEND_REMOTE_API_MODELS=\"anthropic/claude-3.5-sonnet\"\nBACKEND_REMOTE_API_TIMEOUT=120\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let out = hermes_once(&[("BACKEND_REMOTE_API_TIMEOUT", "7")], &["check-config", "--env-file", &path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("http://100.64.0.2:8001/v1"), "{stdout}");
    assert!(stdout.contains("https://openrouter.ai/api/v1") && stdout.contains("timeout=7s"), "{stdout}");
    assert!(stdout.contains("llama3.1:8b") && stdout.contains("$0/M in"), "local is free: {stdout}");
    assert!(!stdout.contains("your_api_key"));
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let mut hermes = Hermes::start(&[("BACKEND_PREMIUM_SIM_LATENCY_MS", "800".into())], &["--demo"]);
    let chat = format!("{}/v1/chat/completions", hermes.url());
    let body = chat_body("sim-premium", "slow one");
    let pending = std::thread::spawn(move || post_json(&chat, None, &body));
    std::thread::sleep(Duration::from_millis(300));
    hermes.sigterm();
    let r = pending.join().unwrap();
    assert_eq!(r.status, 200, "the in-flight request completes: {}", r.body);
    let status = hermes.wait_exit(Duration::from_secs(5)).expect("exits once idle, long before the grace period");
    assert!(status.success(), "{status}");
}

#[test]
fn on_sigterm_with_every_core_busy_the_queued_records_are_still_written() {
    // The analytics writer idles (SCHED_IDLE, where it may) once caught up; an idle thread gets
    // next to no time while other work fills the cores, and the shutdown flush must not wait on it.
    let env: Vec<(&str, String)> = [
        ("HERMES_BACKENDS_ENABLED", "quick"),
        ("BACKEND_QUICK_TYPE", "sim"),
        ("BACKEND_QUICK_MODELS", "quick-model"),
        ("BACKEND_QUICK_LATENCY_MS", "1"),
        ("BACKEND_QUICK_TOKENS_PER_SECOND", "0"),
        ("HERMES_SHUTDOWN_GRACE_SECONDS", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    let mut hermes = Hermes::start(&env, &[]);
    let chat = format!("{}/v1/chat/completions", hermes.url());
    assert_eq!(post_json(&chat, None, &chat_body("quick-model", "first")).status, 200);
    std::thread::sleep(Duration::from_millis(1500)); // written: the writer is caught up, idle
    let burst = 120;
    std::thread::scope(|s| {
        for t in 0..4 {
            let chat = chat.as_str();
            s.spawn(move || {
                for i in 0..burst / 4 {
                    assert_eq!(post_json(chat, None, &chat_body("quick-model", &format!("burst {t} {i}"))).status, 200);
                }
            });
        }
    });
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners: Vec<_> = (0..cores * 2)
        .map(|_| {
            let busy = busy.clone();
            std::thread::spawn(move || {
                while busy.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    hermes.sigterm();
    let status = hermes.wait_exit(Duration::from_secs(30));
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    spinners.into_iter().for_each(|t| t.join().unwrap());
    let status = status.unwrap_or_else(|| panic!("hermes did not stop: {}", hermes.log()));
    assert!(status.success(), "exit {status}: {}", hermes.log());
    assert_eq!(duck_number(&hermes.db(), "SELECT count(*) FROM jobs"), f64::from(burst + 1), "{}", hermes.log());
}

#[test]
fn reload_swaps_backends_without_dropping_a_request_and_refuses_bad_configuration() {
    let a = MockUpstream::start("a", ok_mode());
    let b = MockUpstream::start("b", ok_mode());
    let dir = scratch_dir("reload");
    let env_file = dir.join("hermes.env");
    let write = |backend: &MockUpstream, name: &str, extra: &str| {
        let upper = name.to_ascii_uppercase();
        std::fs::write(
            &env_file,
            format!(
                "HERMES_BACKENDS_ENABLED={name},slow\nBACKEND_{upper}_TYPE=custom\nBACKEND_{upper}_BASE_URL={}\nBACKEND_{upper}_MODELS=m\n\
                 BACKEND_SLOW_TYPE=sim\nBACKEND_SLOW_MODELS=slow-model\nBACKEND_SLOW_LATENCY_MS=1500\n{extra}",
                backend.base_url()
            ),
        )
        .unwrap();
    };
    write(&a, "a", "");
    let hermes = Hermes::start(&[], &["--env-file", env_file.to_str().unwrap()]);
    let chat = format!("{}/v1/chat/completions", hermes.url());
    let reload = format!("{}/admin/reload", hermes.url());
    assert_eq!(post_json(&chat, None, &chat_body("m", "hi")).header("x-hermes-backend"), Some("a"));

    // A slow request is in flight while the configuration changes under it.
    let slow_chat = chat.clone();
    let slow = std::thread::spawn(move || post_json(&slow_chat, None, &chat_body("slow-model", "take your time")));
    std::thread::sleep(Duration::from_millis(300));
    write(&b, "b", "");
    let r = curl(&["-X", "POST", &reload]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["backends"], serde_json::json!(["b", "slow"]));
    assert_eq!(post_json(&chat, None, &chat_body("m", "hi")).header("x-hermes-backend"), Some("b"));
    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 200, "the in-flight request finished on the old configuration: {}", slow.body);

    // A broken file is refused with the reason; the running configuration keeps serving.
    write(&a, "a", "BACKEND_A_TIMEOUT=soon\n");
    let r = curl(&["-X", "POST", &reload]);
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid_configuration")));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("BACKEND_A_TIMEOUT"));
    assert_eq!(post_json(&chat, None, &chat_body("m", "hi")).header("x-hermes-backend"), Some("b"));

    // SIGHUP reloads too.
    write(&a, "a", "");
    Command::new("kill").arg("-HUP").arg(hermes.child.id().to_string()).status().unwrap();
    let back_to_a = eventually(Duration::from_secs(3), || post_json(&chat, None, &chat_body("m", "hi")).header("x-hermes-backend") == Some("a"));
    assert!(back_to_a.is_some(), "{}", hermes.log());
}

/// An upstream that answers the first request on each connection and closes it 50 ms later (its
/// idle timeout), before any next request: a pooled connection that is dead when reused. Returns
/// its port and how many connections it has accepted.
fn one_answer_per_connection() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let read_request = |reader: &mut BufReader<std::net::TcpStream>| -> bool {
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return false;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        reader.read_exact(&mut vec![0; length]).is_ok()
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if !read_request(&mut reader) {
                    return;
                }
                let body = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1732000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"fresh"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
                let mut out = &stream;
                let _ = write!(out, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                // An idle timeout: the connection is closed before any second request is read.
                std::thread::sleep(std::time::Duration::from_millis(50));
            });
        }
    });
    (port, accepted)
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_retried_on_a_fresh_one() {
    let (port, accepted) = one_answer_per_connection();
    let hermes = Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "idle".into()),
            ("HERMES_HEALTH_CHECK_ENABLED", "false".into()),
            ("HERMES_FAILOVER_ENABLED", "false".into()),
            ("BACKEND_IDLE_TYPE", "custom".into()),
            ("BACKEND_IDLE_HOST", "127.0.0.1".into()),
            ("BACKEND_IDLE_PORT", port.to_string()),
        ],
        &[],
    );
    let chat = format!("{}/v1/chat/completions", hermes.url());
    for n in 1..=3 {
        // After the upstream's idle timeout: the pooled connection is already closed.
        std::thread::sleep(std::time::Duration::from_millis(150));
        let r = post_json(&chat, None, &chat_body("m", "hi"));
        assert_eq!((r.status, r.header("x-hermes-attempts")), (200, Some("1")), "request {n}: {}", r.body);
        assert_eq!(r.json()["choices"][0]["message"]["content"], "fresh");
    }
    // Requests 2 and 3 each found their pooled connection closed before it was used, and went on
    // a new one (a request the upstream read and then dropped is not sent again: tests/hardening.rs).
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}
