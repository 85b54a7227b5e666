//! The Responses and Messages doors end to end: the real binary behind the official `openai` and
//! `anthropic` Python SDKs and curl, mock upstreams in OpenAI's chat wire format (one of them a
//! tool-using model), and what the backends received, the metrics and the analytics file say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::{MockUpstream, Mode};
use common::mock_anthropic::{self, MockAnthropic};
use common::*;
use serde_json::{json, Value};
use std::process::Command;

const CLIENT_KEY: &str = "hermes-door-key-1";
const OTHER_KEY: &str = "hermes-door-key-2";
const UPSTREAM_KEY: &str = "sk-upstream-agent-SECRET";

/// `agent` answers everything (it is primary); `broken` (500) and `busy` (429) only their own models.
fn backends(agent: &MockUpstream, broken: &MockUpstream, busy: &MockUpstream) -> Vec<(&'static str, String)> {
    vec![
        ("HERMES_API_KEYS", format!("{CLIENT_KEY},{OTHER_KEY}")),
        ("HERMES_BACKENDS_ENABLED", "agent,broken,busy".into()),
        ("HERMES_PRIMARY_BACKEND", "agent".into()),
        ("BACKEND_AGENT_TYPE", "custom".into()),
        ("BACKEND_AGENT_BASE_URL", agent.base_url()),
        ("BACKEND_AGENT_API_KEY", UPSTREAM_KEY.into()),
        ("BACKEND_AGENT_MODELS", "agent-model".into()),
        ("BACKEND_BROKEN_TYPE", "custom".into()),
        ("BACKEND_BROKEN_BASE_URL", broken.base_url()),
        ("BACKEND_BROKEN_MODELS", "broken-model".into()),
        ("BACKEND_BUSY_TYPE", "custom".into()),
        ("BACKEND_BUSY_BASE_URL", busy.base_url()),
        ("BACKEND_BUSY_MODELS", "busy-model".into()),
        ("HERMES_UNHEALTHY_THRESHOLD", "100".into()),
    ]
}

/// Runs a tests/py script; returns its stdout after checking every scenario printed `ok`.
fn run_script(python: &std::path::Path, script: &str, args: &[&str], scenarios: &[&str], hermes: &Hermes) -> String {
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python).arg(path).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{}\n--- hermes log ---\n{}", String::from_utf8_lossy(&out.stderr), hermes.log());
    for s in scenarios {
        assert!(stdout.lines().any(|l| l == format!("ok {s}")), "scenario {s} did not pass:\n{stdout}");
    }
    stdout
}

fn chat_calls(mock: &MockUpstream) -> Vec<Value> {
    mock.calls().iter().filter(|c| c.path == "/v1/chat/completions").map(|c| c.json()).collect()
}

#[test]
fn the_openai_sdk_speaks_the_responses_api_through_hermes() {
    let python = python_with_openai();
    let agent = MockUpstream::start("agent", Mode::Agent);
    let broken = MockUpstream::start("broken", Mode::Status(500));
    let busy = MockUpstream::start("busy", Mode::Status(429));
    let mut hermes = Hermes::start(&backends(&agent, &broken, &busy), &[]);
    let scenarios = ["create", "stream", "stream_helper", "tool_round_trip", "tool_stream", "text_format", "store", "store_false", "bad_input"];
    let stdout = run_script(&python, "sdk_responses.py", &[&hermes.url(), CLIENT_KEY, OTHER_KEY], &scenarios, &hermes);
    let id_of = |name: &str| stdout.lines().find_map(|l| l.strip_prefix(&format!("id {name} "))).unwrap().to_string();

    // What the backend was sent: chat completions, with the conversation and tool result in place.
    let calls = chat_calls(&agent);
    let plain = &calls[0];
    assert_eq!(plain["messages"], json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]));
    assert_eq!(plain["model"], "agent-model");
    let second = calls.iter().find(|c| c["messages"].as_array().unwrap().iter().any(|m| m["role"] == "tool")).unwrap();
    let m = second["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "user", "content": "What is the weather in Paris?"}), "the stored conversation comes first: {second}");
    assert_eq!(m[1]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(m[2], json!({"role": "tool", "tool_call_id": "call_mock1", "content": "18C and sunny"}));
    assert_eq!(second["tools"][0]["function"]["strict"], true);
    let formatted = calls.iter().find(|c| c.get("response_format").is_some()).unwrap();
    assert_eq!(formatted["response_format"]["json_schema"]["name"], "city");
    assert_eq!((formatted["reasoning_effort"].clone(), formatted["max_tokens"].clone()), (json!("low"), json!(64)));
    assert!(calls.iter().filter(|c| c["stream"] == true).all(|c| c["stream_options"]["include_usage"] == true), "streams ask for usage");
    for c in agent.calls() {
        assert_eq!(c.header("authorization").as_deref(), Some(format!("Bearer {UPSTREAM_KEY}").as_str()));
    }

    // Metrics and analytics count the door like any other.
    let metrics = curl(&[&format!("{}/metrics", hermes.url())]).body;
    assert!(metrics.lines().any(|l| l.starts_with("hermes_requests_total{endpoint=\"/responses\",backend=\"agent\"")), "{metrics}");
    let plain_id = id_of("plain");
    let second_id = id_of("tool_second");
    hermes.stop();
    let db = hermes.db();
    let rows = duck(
        &db,
        &[
            "SELECT count(*), count(*) FILTER (WHERE status = 200) FROM jobs WHERE endpoint = '/responses'",
            &format!("SELECT backend, prompt_tokens, completion_tokens FROM jobs WHERE id = '{plain_id}'"),
            "SELECT count(*) FROM responses",
        ],
    );
    assert!(rows[0][0][0].as_i64().unwrap() >= 11, "every request has its job row: {rows:?}");
    assert_eq!(rows[1][0], json!(["agent", 20, 5]));
    assert!(rows[2][0][0].as_i64().unwrap() >= 5, "stored responses are in the file: {rows:?}");

    // Stored responses survive a restart, still only for their key.
    let again = Hermes::start(&[backends(&agent, &broken, &busy), vec![("HERMES_DB_PATH", db.display().to_string())]].concat(), &[]);
    let url = format!("{}/v1/responses/{second_id}", again.url());
    let got = curl(&[&url, "-H", &format!("Authorization: Bearer {CLIENT_KEY}")]);
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["output"][0]["content"][0]["text"], "Done: 18C and sunny");
    let theirs = curl(&[&url, "-H", &format!("Authorization: Bearer {OTHER_KEY}")]);
    assert_eq!((theirs.status, theirs.json()["error"]["code"].clone()), (404, json!("response_not_found")));
}

#[test]
fn the_anthropic_sdk_speaks_the_messages_api_through_hermes() {
    let python = python_with_anthropic();
    let agent = MockUpstream::start("agent", Mode::Agent);
    let broken = MockUpstream::start("broken", Mode::Status(500));
    let busy = MockUpstream::start("busy", Mode::Status(429));
    let hermes = Hermes::start(&backends(&agent, &broken, &busy), &[]);
    let scenarios = ["create", "stream", "stream_events", "count_tokens", "tool_round_trip", "tool_stream", "errors"];
    run_script(&python, "sdk_messages.py", &[&hermes.url(), CLIENT_KEY], &scenarios, &hermes);

    let calls = chat_calls(&agent);
    assert_eq!(calls[0]["messages"], json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]));
    assert_eq!(calls[0]["max_tokens"], 256);
    let result = calls.iter().find(|c| c["messages"].as_array().unwrap().iter().any(|m| m["role"] == "tool")).unwrap();
    let m = result["messages"].as_array().unwrap();
    assert_eq!(m[1]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(m[2], json!({"role": "tool", "tool_call_id": "call_mock1", "content": "18C and sunny"}));
    assert_eq!(result["tools"][0]["function"]["parameters"]["required"], json!(["city"]));
    assert_eq!(broken.calls().len(), 1, "the only backend of its model is tried once");

    let metrics = curl(&[&format!("{}/metrics", hermes.url())]).body;
    assert!(metrics.lines().any(|l| l.starts_with("hermes_requests_total{endpoint=\"/messages\",backend=\"agent\"")), "{metrics}");
}

/// Malformed bodies and broken streams: each door answers in its own shape, and stays up.
#[test]
fn each_door_answers_bad_input_and_broken_streams_in_its_own_shape() {
    let agent = MockUpstream::start("agent", Mode::Agent);
    let broken = MockUpstream::start("broken", Mode::CutAfterFirstByte);
    let busy = MockUpstream::start("busy", Mode::Status(429));
    let hermes = Hermes::start(&backends(&agent, &broken, &busy), &[]);
    let post = |path: &str, body: &str, extra: &[&str]| {
        let url = format!("{}{path}", hermes.url());
        let key = format!("x-api-key: {CLIENT_KEY}");
        let mut args = vec![url.as_str(), "-H", "content-type: application/json", "-H", key.as_str(), "--data-binary", body];
        args.extend(extra);
        curl(&args)
    };
    for (body, field) in [
        ("{", None),
        (r#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#, Some("max_tokens")),
        (r#"{"model":"auto","max_tokens":5,"messages":[{"role":"robot","content":"hi"}]}"#, Some("messages.0.role")),
        (r#"{"model":"auto","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result"}]}]}"#, Some("messages.0.content.0.tool_use_id")),
        (r#"{"model":"auto","max_tokens":5,"messages":[],"messages":[]}"#, Some("messages")),
    ] {
        let r = post("/v1/messages", body, &[]);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let v = r.json();
        assert_eq!((v["type"].clone(), v["error"]["type"].clone()), (json!("error"), json!("invalid_request_error")), "{}", r.body);
        if let Some(f) = field {
            assert!(v["error"]["message"].as_str().unwrap().contains(f), "{body}: the message names {f}: {}", r.body);
        }
    }
    let r = post("/v1/messages/nope", "{}", &[]);
    assert_eq!((r.status, r.json()["error"]["type"].clone()), (404, json!("not_found_error")));
    for (body, param) in [
        ("[1]", Value::Null),
        (r#"{"model":"auto"}"#, json!("input")),
        (r#"{"model":"auto","input":[{"role":"user","content":[{"type":"input_audio"}]}]}"#, json!("input[0].content[0].type")),
        (r#"{"model":"auto","input":"hi","tools":[{"type":"web_search"},{"type":"function"}]}"#, json!("tools[1].name")),
    ] {
        let r = post("/v1/responses", body, &[]);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["error"]["param"], param, "{}", r.body);
    }

    // After the first byte a broken stream ends with the door's own error event.
    let r = post("/v1/messages", r#"{"model":"broken-model","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#, &["-N"]);
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("event: message_start\n"), "{}", r.body);
    let last = r.body.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""), "{}", r.body);
    assert!(!r.body.contains("message_stop"), "{}", r.body);
    let r = post("/v1/responses", r#"{"model":"broken-model","stream":true,"input":"hi"}"#, &["-N"]);
    assert_eq!(r.status, 200);
    let names: Vec<&str> = r.body.split("\n\n").filter_map(|e| e.strip_prefix("event: ")).map(|e| e.lines().next().unwrap()).collect();
    assert_eq!(names.first(), Some(&"response.created"), "{}", r.body);
    assert_eq!(&names[names.len() - 2..], ["error", "response.failed"], "{}", r.body);
    assert!(!names.contains(&"response.completed"));
    assert_eq!(curl(&[&format!("{}/health", hermes.url())]).status, 200, "still up");
}

/// A Messages request to an `anthropic` backend goes as the client sent it (thinking,
/// cache_control, anthropic-beta), Anthropic's answer comes back as it is, and the cache's
/// tokens are counted and priced the same in the header, the metrics and the analytics file.
#[test]
fn messages_pass_through_to_anthropic_and_cached_tokens_are_priced() {
    let claude = MockAnthropic::start();
    let mut hermes = Hermes::start(
        &[
            ("HERMES_API_KEYS", CLIENT_KEY.into()),
            ("HERMES_BACKENDS_ENABLED", "claude".into()),
            ("BACKEND_CLAUDE_TYPE", "anthropic".into()),
            ("BACKEND_CLAUDE_BASE_URL", claude.base_url()),
            ("BACKEND_CLAUDE_API_KEY", mock_anthropic::KEY.into()),
            ("BACKEND_CLAUDE_MODELS", "claude-sonnet-4-5".into()),
        ],
        &[],
    );
    let sent = json!({"model": "claude-sonnet-4-5", "max_tokens": 2048,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello", "cache_control": {"type": "ephemeral"}}]}]});
    let url = format!("{}/v1/messages", hermes.url());
    let key = format!("x-api-key: {CLIENT_KEY}");
    let post = |body: &Value| {
        curl(&[
            &url,
            "-H",
            &key,
            "-H",
            "anthropic-version: 2023-06-01",
            "-H",
            "anthropic-beta: interleaved-thinking-2025-05-14",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body.to_string(),
        ])
    };
    let r = post(&sent);
    assert_eq!(r.status, 200, "{}", r.body);
    let (headers, received) = claude.calls().remove(0);
    assert_eq!(received, sent, "the body reaches Anthropic as the client sent it");
    assert_eq!(headers.get("anthropic-beta").unwrap(), "interleaved-thinking-2025-05-14");
    assert_eq!(headers.get("anthropic-version").unwrap(), "2023-06-01");
    assert_eq!(headers.get("x-api-key").unwrap(), mock_anthropic::KEY, "the backend's key, not the client's");
    let m = r.json();
    assert_eq!(m["content"][0]["type"], "thinking", "Anthropic's answer as it is: {m}");
    assert_eq!(m["content"][0]["signature"], "EqQBCgIYAhIM1gbcDa9GJwZA2b3h");
    assert_eq!(m["usage"]["cache_read_input_tokens"], 100);
    // 21 uncached input at $3, 100 cache reads at $0.30, 9 output at $15 per million tokens.
    let expected = (21.0 * 3.0 + 100.0 * 0.30 + 9.0 * 15.0) / 1e6 * 100.0;
    let cost: f64 = r.header("x-hermes-cost-cents").unwrap().parse().unwrap();
    assert!((cost - expected).abs() < 1e-6, "cost {cost} vs {expected}");

    let mut streamed = sent.clone();
    streamed["stream"] = json!(true);
    let s = post(&streamed);
    assert_eq!(s.status, 200);
    assert!(s.body.contains("\"type\":\"signature_delta\""), "{}", s.body);
    assert!(s.body.trim_end().ends_with("data: {\"type\":\"message_stop\"}"), "{}", s.body);

    // The Responses door reaches the same backend translated, with the cache's tokens reported.
    let r = post_json(&format!("{}/v1/responses", hermes.url()), Some(CLIENT_KEY), r#"{"model":"claude-sonnet-4-5","input":"hi","instructions":"x"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["usage"]["input_tokens"], 21, "no cache marker, nothing cached: {}", r.body);

    let metrics = curl(&[&format!("{}/metrics", hermes.url())]).body;
    let line =
        metrics.lines().find(|l| l.starts_with("hermes_tokens_total") && l.contains("direction=\"cached_input\"")).unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.ends_with(" 200"), "two answers read 100 cached tokens each: {line}");
    hermes.stop();
    let rows = duck(&hermes.db(), &["SELECT endpoint, prompt_tokens, cached_tokens, round(cost_cents, 6) FROM jobs ORDER BY created_date"]);
    assert_eq!(rows[0][0], json!(["/messages", 121, 100, (expected * 1e6).round() / 1e6]), "{rows:?}");
    assert_eq!(rows[0][1][2], 100);
}

/// Failover is the pipeline's, not a door's: on every door, streamed or not, a backend that fails
/// before the first byte (a 500, a stream cut before its first event) is followed by the next one,
/// and the answer comes back whole in the door's own shape.
#[test]
fn every_door_fails_over_before_the_first_byte() {
    let agent = MockUpstream::start("agent", Mode::Agent);
    // One backend that fails each way in turn, always tried first.
    let flaky = MockUpstream::start("flaky", Mode::Status(500));
    let served = |name: &'static str, mock: &MockUpstream| {
        let up = name.to_uppercase();
        [
            (format!("BACKEND_{up}_TYPE"), "custom".to_string()),
            (format!("BACKEND_{up}_BASE_URL"), mock.base_url()),
            (format!("BACKEND_{up}_MODELS"), "shared-model".to_string()),
        ]
    };
    let names: Vec<(String, String)> = [served("agent", &agent), served("flaky", &flaky)].concat();
    let mut env: Vec<(&str, String)> = names.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    env.extend([
        ("HERMES_API_KEYS", CLIENT_KEY.to_string()),
        ("HERMES_BACKENDS_ENABLED", "flaky,agent".into()),
        ("HERMES_HEALTH_CHECK_ENABLED", "false".into()),
        ("HERMES_UNHEALTHY_THRESHOLD", "100".into()),
    ]);
    let mut hermes = Hermes::start(&env, &[]);
    let doors = [
        ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "Say hello"}]})),
        ("/v1/responses", json!({"input": "Say hello"})),
        ("/v1/messages", json!({"max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]})),
    ];
    for (mode, failure, streams) in
        [(Mode::Status(500), "a 500", &[false, true][..]), (Mode::CutBeforeFirstByte, "a stream cut before its first byte", &[true][..])]
    {
        flaky.set_mode(mode);
        for (path, body) in &doors {
            for &stream in streams {
                let mut body = body.clone();
                body["model"] = json!("shared-model");
                body["stream"] = json!(stream);
                let r = curl(&[
                    &format!("{}{path}", hermes.url()),
                    "-H",
                    &format!("x-api-key: {CLIENT_KEY}"),
                    "-H",
                    "x-hermes-backend: flaky",
                    "-H",
                    "content-type: application/json",
                    "--data-binary",
                    &body.to_string(),
                ]);
                let what = format!("{path} stream={stream} after {failure}");
                assert_eq!(r.status, 200, "{what}: {}", r.body);
                assert_eq!((r.header("x-hermes-backend"), r.header("x-hermes-attempts")), (Some("agent"), Some("2")), "{what}: {}", r.body);
                let text_ok = match (*path, stream) {
                    ("/v1/chat/completions", false) => r.json()["choices"][0]["message"]["role"] == "assistant",
                    ("/v1/responses", false) => r.json()["status"] == "completed",
                    ("/v1/messages", false) => r.json()["type"] == "message",
                    ("/v1/chat/completions", true) => r.body.trim_end().ends_with("data: [DONE]"),
                    ("/v1/responses", true) => r.body.contains("event: response.completed\n") && !r.body.contains("event: error"),
                    _ => r.body.trim_end().ends_with("data: {\"type\":\"message_stop\"}") && !r.body.contains("event: error"),
                };
                assert!(text_ok, "{what}: a whole answer in the door's shape:\n{}", r.body);
            }
        }
    }
    // Each failed backend was tried once per request: failover, not a silent re-send.
    assert_eq!((flaky.calls().len(), agent.calls().len()), (9, 9));
    hermes.stop();
    let rows = duck(
        &hermes.db(),
        &["SELECT endpoint, count(*), count(*) FILTER (WHERE backend = 'agent' AND status = 200) FROM jobs GROUP BY endpoint ORDER BY endpoint"],
    );
    assert_eq!(rows[0], vec![json!(["/chat/completions", 3, 3]), json!(["/messages", 3, 3]), json!(["/responses", 3, 3])], "{rows:?}");
}
