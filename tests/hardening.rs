//! Defects found by probing the gateway as an attacker and a careful operator would (issue 17):
//! keys echoed by upstreams, unreadable hints, repeated JSON keys, personal data in fields that
//! were not scanned, loopback through a dual-stack listener, requests sent twice in secret,
//! unbounded answers, half events before a stream's error, state lost on reload, a user message
//! without content and typos in the environment. Each test starts the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use common::mock::{MockUpstream, Mode};
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The environment for custom (OpenAI-compatible) backends at these base URLs, in this order.
fn custom(backends: &[(&str, String)], extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("HERMES_BACKENDS_ENABLED".to_string(), backends.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(",")),
        ("HERMES_HEALTH_CHECK_ENABLED".to_string(), "false".to_string()),
        ("HERMES_FAILOVER_DELAY_SECONDS".to_string(), "0.01".to_string()),
        ("HERMES_PRIMARY_BACKEND".to_string(), backends[0].0.to_string()),
    ];
    for (name, url) in backends {
        let up = name.to_ascii_uppercase();
        env.push((format!("BACKEND_{up}_TYPE"), "custom".into()));
        env.push((format!("BACKEND_{up}_BASE_URL"), url.clone()));
        env.push((format!("BACKEND_{up}_MODELS"), "m".into()));
    }
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env_of(env)
}

const LEAKED: &str = "sk-upstream-key-0123456789abcdefghij";

fn completion(content: &str) -> Value {
    json!({"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "m",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
}

/// An upstream that quotes the Authorization header it was sent, the way some error pages do:
/// in a 500 body, a 400 body, a response header, or a stream's first (error) event.
async fn echoing(headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = String::from_utf8_lossy(&body).to_string();
    let error = json!({"error": {"message": format!("invalid header: Authorization: {auth}"), "type": "server_error", "param": null, "code": null}});
    if text.contains("mode-500") {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/json")], error.to_string()).into_response();
    }
    if text.contains("mode-400") {
        return (axum::http::StatusCode::BAD_REQUEST, [("content-type", "application/json"), ("x-debug-auth", auth.as_str())], error.to_string())
            .into_response();
    }
    if text.contains("mode-stream") {
        let event = format!("data: {}\n\n", json!({"error": {"message": format!("bad auth {auth}")}}));
        return Response::builder().header("content-type", "text/event-stream").body(Body::from(event)).unwrap();
    }
    ([("content-type", "application/json"), ("x-debug-auth", auth.as_str())], completion("fine").to_string()).into_response()
}

#[test]
fn keys_an_upstream_echoes_reach_no_client_log_or_table() {
    let (port, _rt) = serve_mock(Router::new().route("/v1/chat/completions", post(echoing)));
    let good = MockUpstream::start("good", Mode::Ok { gap: Duration::ZERO });
    let mut env = custom(&[("leaky", format!("http://127.0.0.1:{port}/v1")), ("good", good.base_url())], &[("HERMES_UNHEALTHY_THRESHOLD", "1000")]);
    env.push(("BACKEND_LEAKY_API_KEY", LEAKED.to_string()));
    // The traces' failure statuses quote what the upstream said, too.
    let sink = OtlpSink::start();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()));
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()));
    let mut h = Hermes::start(&env, &[]);
    let url = format!("{}/v1/chat/completions", h.url());
    let mut seen = String::new();
    for mode in ["mode-500", "mode-400", "mode-stream", "mode-ok"] {
        let stream = mode == "mode-stream";
        let body = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": mode}]}).to_string();
        let r = post_json(&url, None, &body);
        seen.push_str(&format!("{} {:?} {}\n", r.status, r.headers, r.body));
        match mode {
            "mode-400" => assert_eq!(r.status, 400, "a request's own 4xx is relayed: {}", r.body),
            _ => assert_eq!(r.status, 200, "{mode}: {}", r.body),
        }
        if mode == "mode-400" {
            assert!(r.body.contains("[redacted]"), "the quoted key is replaced: {}", r.body);
            assert_eq!(r.header("x-debug-auth"), Some("Bearer [redacted]"));
        }
    }
    assert!(!seen.contains(LEAKED) && !seen.contains(&LEAKED[10..]), "a client saw the key:\n{seen}");
    h.sigterm();
    h.wait_exit(Duration::from_secs(15));
    assert!(!h.log().contains(LEAKED), "the log holds the key:\n{}", h.log());
    let rows = duck(
        &h.db(),
        &["SELECT coalesce(string_agg(error_message, ' | '), '') FROM jobs", "SELECT coalesce(string_agg(error_message, ' | '), '') FROM backend_performance"],
    );
    let stored = format!("{rows:?}");
    assert!(stored.contains("[redacted]"), "the failures were recorded, scrubbed: {stored}");
    assert!(!stored.contains(LEAKED), "the analytics file holds the key: {stored}");
    // Exported on SIGTERM at the latest: the failed attempts' spans, scrubbed.
    let spans = sink.spans_when(|s| s.iter().filter(|s| s["kind"] == 2).count() >= 4);
    let exported = String::from_utf8_lossy(&sink.raw()).to_string();
    assert!(spans.iter().any(|s| s["status_message"].as_str().is_some_and(|m| m.contains("[redacted]"))), "the failures were traced, scrubbed: {spans:?}");
    assert!(!exported.contains(LEAKED) && !exported.contains(&LEAKED[10..]), "a span holds the key: {exported}");
}

/// Sends raw bytes as one HTTP request and returns (status, body).
fn raw_request(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut reader = BufReader::new(s);
    let (status_line, body) = read_message(&mut reader).unwrap();
    let status: u16 = status_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, String::from_utf8_lossy(&body).to_string())
}

/// One HTTP/1.1 message off a connection: its first line and its body (by Content-Length);
/// None when the connection closed first.
fn read_message(reader: &mut BufReader<std::net::TcpStream>) -> Option<(String, Vec<u8>)> {
    let (mut first, mut length) = (String::new(), 0usize);
    if reader.read_line(&mut first).unwrap_or(0) == 0 {
        return None;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((first, body))
}

fn post_raw(path: &str, extra_header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r =
        format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", body.len()).into_bytes();
    r.extend_from_slice(extra_header);
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

#[test]
fn unreadable_hints_and_repeated_keys_are_refused_before_anything_is_sent() {
    let remote = MockUpstream::start("remote", Mode::Ok { gap: Duration::ZERO });
    let h = Hermes::start(&custom(&[("remote", remote.base_url())], &[]), &[]);
    let chat = br#"{"model": "m", "messages": [{"role": "user", "content": "hello"}]}"#;
    for header in [&b"x-hermes-privacy: local\xff\r\n"[..], &b"x-hermes-budget-cents: 1\xfe\r\n"[..]] {
        let (status, body) = raw_request(h.port, &post_raw("/v1/chat/completions", header, chat));
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("not readable"), "{body}");
    }
    // The privacy scan must see what the backend sees: two `messages` could differ.
    let twice = br#"{"model": "m", "messages": [{"role": "user", "content": "hi"}], "messages": [{"role": "user", "content": "mail jane@example.com"}]}"#;
    let (status, body) = raw_request(h.port, &post_raw("/v1/chat/completions", b"", twice));
    assert_eq!(status, 400, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["param"], "messages", "{body}");
    let nested = br#"{"model": "m", "messages": [{"role": "user", "content": "hi", "content": "jane@example.com"}]}"#;
    assert_eq!(raw_request(h.port, &post_raw("/v1/chat/completions", b"", nested)).0, 400);
    // A user message without content is the client's mistake, answered here as OpenAI would.
    let (status, body) = raw_request(h.port, &post_raw("/v1/chat/completions", b"", br#"{"model": "m", "messages": [{"role": "user"}]}"#));
    assert_eq!(status, 400, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["param"], "messages[0].content", "{body}");
    assert!(remote.calls().is_empty(), "nothing reached the paid backend: {:?}", remote.calls().len());
}

#[test]
fn a_head_that_is_not_http_and_a_connect_get_an_openai_error_and_the_gateway_stays_up() {
    let remote = MockUpstream::start("remote", Mode::Ok { gap: Duration::ZERO });
    let h = Hermes::start(&custom(&[("remote", remote.base_url())], &[]), &[]);
    let (status, body) = raw_request(h.port, b"POST /v1/chat/completions HTTP/1.1\r\nhost x\r\nbad header\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["type"], "invalid_request_error", "{body}");
    let (status, body) = raw_request(h.port, b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n");
    assert_eq!(status, 405, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"]["message"].as_str().unwrap().contains("CONNECT"), "{body}");
    let chat = br#"{"model": "m", "messages": [{"role": "user", "content": "hello"}]}"#;
    assert_eq!(raw_request(h.port, &post_raw("/v1/chat/completions", b"", chat)).0, 200, "the gateway still answers");
    assert!(remote.calls().len() == 1, "only the good request reached the backend");
}

#[test]
fn personal_data_in_embeddings_input_and_tool_arguments_stays_off_remote_backends() {
    let remote = MockUpstream::start("remote", Mode::Ok { gap: Duration::ZERO });
    let h = Hermes::start(&custom(&[("remote", remote.base_url())], &[]), &[]);
    let embed = json!({"model": "m", "input": ["the weather", "write to jane.doe@example.com"]}).to_string();
    let r = post_json(&format!("{}/v1/embeddings", h.url()), None, &embed);
    assert_ne!(r.status, 200, "{}", r.body);
    let tool_call = json!({"model": "m", "messages": [
        {"role": "user", "content": "send the invoice"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "send", "arguments": "{\"to\": \"jane.doe@example.com\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sent"},
        {"role": "user", "content": "thanks, what next?"}]});
    let r = post_json(&format!("{}/v1/chat/completions", h.url()), None, &tool_call.to_string());
    assert_ne!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("local"), "the refusal says why: {}", r.body);
    assert!(remote.calls().is_empty(), "personal data reached a remote backend");
    // The same requests without personal data go through.
    let clean = json!({"model": "m", "input": ["the weather", "the news"]}).to_string();
    assert_eq!(post_json(&format!("{}/v1/embeddings", h.url()), None, &clean).status, 200);
}

#[test]
fn admin_without_a_key_warns_and_a_dual_stack_loopback_peer_is_loopback() {
    let remote = MockUpstream::start("remote", Mode::Ok { gap: Duration::ZERO });
    let port = free_port();
    let mut env = custom(&[("remote", remote.base_url())], &[]);
    env.push(("HERMES_LISTEN", format!("[::]:{port}")));
    let h = Hermes::start(&env, &[]);
    assert!(eventually(Duration::from_secs(5), || h.log().contains("HERMES_ADMIN_KEY is unset")).is_some(), "{}", h.log());
    // Over IPv4 to a [::] listener the peer is ::ffff:127.0.0.1.
    let r = curl(&[&format!("http://127.0.0.1:{port}/admin/backends")]);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// An upstream on raw TCP that answers the first request on each connection and keeps it open;
/// the second request on a connection is read whole and then the connection is dropped, as a
/// server that crashed after acting on it would.
fn dropping_upstream(seen: Arc<AtomicUsize>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                let mut posts = 0;
                loop {
                    let Some((first, _body)) = read_message(&mut reader) else { return };
                    let method = first.split_whitespace().next().unwrap_or("").to_string();
                    let answer = if method == "POST" {
                        seen.fetch_add(1, Ordering::SeqCst);
                        posts += 1;
                        if posts >= 2 {
                            return; // read whole, then gone
                        }
                        completion("from the dropper").to_string()
                    } else {
                        json!({"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "x"}]}).to_string()
                    };
                    let _ = write!(writer, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}", answer.len());
                }
            });
        }
    });
    port
}

#[test]
fn a_request_the_upstream_read_and_dropped_is_a_failed_attempt_not_a_secret_resend() {
    let seen = Arc::new(AtomicUsize::new(0));
    let port = dropping_upstream(seen.clone());
    let good = MockUpstream::start("good", Mode::Ok { gap: Duration::ZERO });
    let h = Hermes::start(
        &custom(&[("dropper", format!("http://127.0.0.1:{port}/v1")), ("good", good.base_url())], &[("HERMES_UNHEALTHY_THRESHOLD", "1000")]),
        &[],
    );
    let url = format!("{}/v1/chat/completions", h.url());
    let first = post_json(&url, None, &chat_body("m", "one"));
    assert_eq!((first.status, first.header("x-hermes-backend")), (200, Some("dropper")), "{}", first.body);
    // The second goes over the pooled connection, which the upstream reads and drops.
    let second = post_json(&url, None, &chat_body("m", "two"));
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(seen.load(Ordering::SeqCst), 2, "the dropper got the request once, not again in secret");
    assert_eq!(second.header("x-hermes-backend"), Some("good"), "failover saw the failed attempt");
    assert_eq!(second.header("x-hermes-attempts"), Some("2"));
}

/// An upstream whose answers are larger than any sane cap: a 2 MiB JSON answer, or a stream
/// whose one line never ends.
async fn oversized(body: Bytes) -> Response {
    let stream = String::from_utf8_lossy(&body).contains("\"stream\":true");
    if stream {
        let chunks = futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 32 * 1024]))));
        let head = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"data: {\"id\": \""))]);
        use futures_util::StreamExt;
        return Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(head.chain(chunks))).unwrap();
    }
    ([("content-type", "application/json")], completion(&"y".repeat(2 << 20)).to_string()).into_response()
}

#[test]
fn answers_larger_than_the_cap_fail_the_attempt_and_fail_over() {
    let (port, _rt) = serve_mock(Router::new().route("/v1/chat/completions", post(oversized)));
    let good = MockUpstream::start("good", Mode::Ok { gap: Duration::ZERO });
    let h = Hermes::start(
        &custom(
            &[("huge", format!("http://127.0.0.1:{port}/v1")), ("good", good.base_url())],
            &[("HERMES_MAX_ANSWER_BYTES", "262144"), ("HERMES_UNHEALTHY_THRESHOLD", "1000")],
        ),
        &[],
    );
    let url = format!("{}/v1/chat/completions", h.url());
    for stream in [false, true] {
        let body = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "big"}]}).to_string();
        let r = post_json(&url, None, &body);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-hermes-backend"), Some("good"), "stream={stream}: {}", h.log());
        assert_eq!(r.header("x-hermes-attempts"), Some("2"));
    }
    assert!(h.log().contains("HERMES_MAX_ANSWER_BYTES"), "the failure says which limit: {}", h.log());
}

/// A stream that breaks in the middle of an event's line.
async fn breaks_mid_line() -> Response {
    let whole = |w: &str| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": w}, "logprobs": null, "finish_reason": null}]})
        )
    };
    let parts = vec![
        Ok::<_, std::io::Error>(Bytes::from(whole("Hello"))),
        Ok(Bytes::from(whole(" there"))),
        Ok(Bytes::from_static(b"data: {\"id\": \"c\", \"obj")),
        Err(std::io::Error::other("cut")),
    ];
    let body = futures_util::stream::unfold(parts.into_iter(), |mut it| async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        it.next().map(|p| (p, it))
    });
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(body)).unwrap()
}

#[test]
fn a_stream_that_breaks_mid_line_ends_with_an_error_event_an_sse_parser_reads() {
    let (port, _rt) = serve_mock(Router::new().route("/v1/chat/completions", post(breaks_mid_line)));
    let h = Hermes::start(&custom(&[("cuts", format!("http://127.0.0.1:{port}/v1"))], &[]), &[]);
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let r = post_json(&format!("{}/v1/chat/completions", h.url()), None, &body);
    assert_eq!(r.status, 200);
    // Parse as an SSE client does: events end at a blank line; each data line is JSON.
    let events: Vec<&str> = r.body.split("\n\n").filter(|e| !e.trim().is_empty()).collect();
    let last = events.last().unwrap();
    assert!(last.starts_with("event: error\ndata: "), "the error is an event of its own: {last:?}\n{}", r.body);
    for e in &events {
        let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or_else(|| panic!("an event without data: {e:?}"));
        serde_json::from_str::<Value>(data).unwrap_or_else(|err| panic!("an event a parser cannot read ({err}): {e:?}"));
    }
    assert_eq!(events.len(), 3, "two whole chunks and the error: {}", r.body);
    let error: Value = serde_json::from_str(last.strip_prefix("event: error\ndata: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "stream_interrupted");
}

#[test]
fn a_reload_keeps_what_it_knew_of_backends_that_did_not_change() {
    let down = MockUpstream::start("down", Mode::Status(500));
    let good = MockUpstream::start("good", Mode::Ok { gap: Duration::ZERO });
    let env = custom(&[("down", down.base_url()), ("good", good.base_url())], &[("HERMES_UNHEALTHY_THRESHOLD", "1"), ("HERMES_HEALTH_CHECK_INTERVAL", "300")]);
    let h = Hermes::start(&env, &[]);
    let url = format!("{}/v1/chat/completions", h.url());
    let first = post_json(&url, None, &chat_body("m", "one"));
    assert_eq!((first.status, first.header("x-hermes-attempts")), (200, Some("2")), "{}", first.body);
    let r = curl(&["-X", "POST", &format!("{}/admin/reload", h.url())]);
    assert_eq!(r.status, 200, "{}", r.body);
    let calls_before = down.calls().len();
    let second = post_json(&url, None, &chat_body("m", "two"));
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-hermes-attempts"), Some("1"), "the backend that was down is still down after the reload");
    assert_eq!(down.calls().len(), calls_before, "nothing was sent to it");
    let backends = curl(&[&format!("{}/admin/backends", h.url())]).json();
    let health = backends.to_string();
    assert!(health.contains("unhealthy"), "{health}");
}

#[test]
fn typos_in_the_environment_are_named_and_fail_check_config() {
    let out = hermes_once(&[("HERMES_BACKENDS_ENABLED", "a"), ("BACKEND_A_TYPE", "sim"), ("HERMES_FAILOVER_ENABLE", "false")], &["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check-config fails on an unknown setting");
    assert!(stderr.contains("HERMES_FAILOVER_ENABLE is not a Hermes setting (did you mean HERMES_FAILOVER_ENABLED?)"), "{stderr}");
    let ok = hermes_once(&[("HERMES_BACKENDS_ENABLED", "a"), ("BACKEND_A_TYPE", "sim")], &["check-config"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let h = Hermes::start(&[("HERMES_BACKENDS_ENABLED", "a".into()), ("BACKEND_A_TYPE", "sim".into()), ("BACKEND_A_MODLES", "x".into())], &[]);
    let warned = eventually(Duration::from_secs(5), || h.log().contains("BACKEND_A_MODLES is not a Hermes setting (did you mean BACKEND_A_MODELS?)"));
    assert!(warned.is_some(), "{}", h.log());
}
