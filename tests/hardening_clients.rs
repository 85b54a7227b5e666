//! Clients that leave, clients that stop reading, clients that flood `/feedback`, and a row the
//! analytics file refuses: each costs only itself. The real `hermes serve` binary runs against
//! axum mock upstreams that count when hyper drops their handler (the upstream connection closed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::mock::{MockUpstream, Mode};
use common::{chat_body, curl, duck, duck_number, env_of, eventually, post_json, serve_mock, Hermes};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a mock upstream saw: calls that reached its handler, handlers (or answer streams) that
/// were dropped, and chunks it handed to hyper.
#[derive(Default)]
struct Counters {
    entered: AtomicUsize,
    dropped: AtomicUsize,
    chunks: AtomicUsize,
}

impl Counters {
    fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }
    fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
    fn chunks(&self) -> usize {
        self.chunks.load(Ordering::SeqCst)
    }
}

/// Counts its own drop: hyper drops a handler's future (or a response body stream) when the
/// connection it serves is closed.
struct DropGuard(Arc<Counters>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "mock"}]}))
}

/// One custom backend `name` at the mock on `port` (model `m`), health checks off, a backend
/// timeout long enough that only Hermes's own handling of the client can end a call.
fn gateway_env(name: &str, port: u16, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let p = format!("BACKEND_{}_", name.to_ascii_uppercase());
    let mut pairs: Vec<(String, String)> = vec![
        ("HERMES_BACKENDS_ENABLED".into(), name.into()),
        ("HERMES_HEALTH_CHECK_ENABLED".into(), "false".into()),
        (format!("{p}TYPE"), "custom".into()),
        (format!("{p}BASE_URL"), format!("http://127.0.0.1:{port}/v1")),
        (format!("{p}MODELS"), "m".into()),
        (format!("{p}TIMEOUT"), "60".into()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env_of(pairs)
}

/// A raw HTTP/1.1 client: the whole POST is written, nothing is read.
fn post_raw(port: u16, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.flush().unwrap();
    s
}

fn metrics(h: &Hermes) -> String {
    curl(&[&format!("{}/metrics", h.url())]).body
}

/// Nothing is in flight but the scrape that asks, and no backend has a call open.
fn settled(metrics: &str) -> bool {
    metrics.contains("hermes_in_flight_requests 1\n") && metrics.lines().filter(|l| l.starts_with("hermes_backend_in_flight{")).all(|l| l.ends_with(" 0"))
}

/// Holds every chat call for 30 s before answering (headers included), counting the drop.
async fn hold(State(c): State<Arc<Counters>>, _body: Bytes) -> Response {
    let _guard = DropGuard(c.clone());
    c.entered.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(30)).await;
    (StatusCode::INTERNAL_SERVER_ERROR, "answered too late").into_response()
}

#[test]
fn a_client_that_leaves_while_waiting_cancels_the_upstream_call_and_is_recorded_as_499() {
    let counters = Arc::new(Counters::default());
    let app = Router::new().route("/v1/chat/completions", post(hold)).route("/v1/models", get(models)).with_state(counters.clone());
    let (port, _mock) = serve_mock(app);
    let mut h = Hermes::start(&gateway_env("slow", port, &[("HERMES_FAILOVER_ENABLED", "false")]), &[]);

    let plain = chat_body("m", "answer me slowly");
    let streamed = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "stream me slowly"}]}).to_string();
    for (n, (kind, body)) in [("stream:false", plain), ("stream:true", streamed)].into_iter().enumerate() {
        let n = n + 1;
        let client = post_raw(h.port, &body);
        let reached = eventually(Duration::from_secs(10), || counters.entered() == n);
        assert!(reached.is_some(), "{kind}: the call never reached the mock upstream: {}", h.log());
        // The client waits a moment (as one with a short timeout would), then gives up.
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(counters.dropped(), n - 1, "{kind}: the upstream call ended while its client was still waiting: {}", h.log());
        drop(client);
        let left = Instant::now();
        let cancelled = eventually(Duration::from_secs(3), || counters.dropped() == n);
        assert!(
            cancelled.is_some(),
            "{kind}: the upstream call was still open {:?} after the client left (BACKEND_SLOW_TIMEOUT is 60 s): {}",
            left.elapsed(),
            h.log()
        );
    }
    // No failover after a cancellation: the mock saw exactly the two calls.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(counters.entered(), 2, "a cancelled call is not retried elsewhere: {}", h.log());

    h.sigterm();
    let status = h.wait_exit(Duration::from_secs(20)).unwrap_or_else(|| panic!("hermes did not stop: {}", h.log()));
    assert!(status.success(), "nothing accepted was lost, so the exit is clean; got {status}: {}", h.log());
    let rows = duck(&h.db(), &["SELECT id, status, error_message, stream FROM jobs ORDER BY stream"]).remove(0);
    assert_eq!(rows.len(), 2, "one job row per request: {rows:?}");
    for row in &rows {
        assert_eq!(row[1], json!(499), "a client that left is recorded as 499: {rows:?}");
        assert!(row[2].as_str().is_some_and(|e| e.starts_with("cancelled")), "error_message starts with 'cancelled': {rows:?}");
    }
    assert_eq!((&rows[0][3], &rows[1][3]), (&json!(false), &json!(true)), "one plain and one streamed job: {rows:?}");
    assert_eq!(duck_number(&h.db(), "SELECT count(*) FROM jobs WHERE status = 499 AND error_message LIKE 'cancelled%'"), 2.0);
}

/// An endless SSE answer as fast as hyper takes it: 1 KiB of content per event. The body stream
/// holds the guard, so its drop counts when the upstream connection closes.
async fn firehose(State(c): State<Arc<Counters>>, _body: Bytes) -> Response {
    c.entered.fetch_add(1, Ordering::SeqCst);
    let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": {"content": "x".repeat(1024)}, "logprobs": null, "finish_reason": null}]});
    let event = Bytes::from(format!("data: {chunk}\n\n"));
    let guard = DropGuard(c.clone());
    let body = futures_util::stream::unfold(guard, move |guard| {
        let event = event.clone();
        async move {
            guard.0.chunks.fetch_add(1, Ordering::SeqCst);
            Some((Ok::<Bytes, std::convert::Infallible>(event), guard))
        }
    });
    Response::builder().header("content-type", "text/event-stream; charset=utf-8").body(Body::from_stream(body)).unwrap()
}

#[test]
fn a_client_that_stops_reading_a_stream_is_let_go_after_the_send_timeout() {
    let counters = Arc::new(Counters::default());
    let app = Router::new().route("/v1/chat/completions", post(firehose)).route("/v1/models", get(models)).with_state(counters.clone());
    let (port, _mock) = serve_mock(app);
    let h = Hermes::start(&gateway_env("firehose", port, &[("HERMES_SEND_TIMEOUT_SECONDS", "1")]), &[]);

    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "talk forever"}]}).to_string();
    // Asks, then never reads; the socket stays open until the end of the test.
    let client = post_raw(h.port, &body);
    let reached = eventually(Duration::from_secs(10), || counters.entered() == 1);
    assert!(reached.is_some(), "the stream never reached the mock upstream: {}", h.log());

    let started = Instant::now();
    let mut last = String::new();
    let let_go = eventually(Duration::from_secs(15), || {
        last = metrics(&h);
        settled(&last) && counters.dropped() == 1
    });
    assert!(
        let_go.is_some(),
        "15 s after the client stopped reading, the request is still held (upstream dropped {} time(s), {} chunks sent):\n{last}\n{}",
        counters.dropped(),
        counters.chunks(),
        h.log()
    );
    println!("let go after {:?}; the mock had sent {} KiB", started.elapsed(), counters.chunks());
    assert_eq!(counters.entered(), 1, "the abandoned stream was not retried: {}", h.log());
    // The client's socket was open (and unread) all along: only the send timeout can have ended it.
    drop(client);
}

#[test]
fn a_flood_of_feedback_for_unknown_ids_does_not_starve_the_analytics_writer() {
    let mock = MockUpstream::start("plain", Mode::Ok { gap: Duration::ZERO });
    let mut h = Hermes::start(&gateway_env("plain", mock.port, &[("HERMES_ANALYTICS_QUEUE", "256")]), &[]);
    let feedback_url = format!("{}/feedback", h.url());
    let chat_url = format!("{}/v1/chat/completions", h.url());

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let (ratings, chats) = runtime.block_on(async {
        let client = reqwest::Client::new();
        // 8 clients, 375 ratings each, of ids Hermes could have made but never did.
        let flood: Vec<tokio::task::JoinHandle<Vec<(u16, String)>>> = (0..8)
            .map(|_| {
                let (client, url) = (client.clone(), feedback_url.clone());
                tokio::spawn(async move {
                    let mut out = Vec::with_capacity(375);
                    for _ in 0..375 {
                        let body = json!({"request_id": format!("req_{:016x}", fastrand::u64(..)), "rating": 5});
                        let resp = client.post(&url).json(&body).send().await.expect("/feedback answers");
                        let status = resp.status().as_u16();
                        out.push((status, resp.text().await.unwrap_or_default()));
                    }
                    out
                })
            })
            .collect();
        let chatter = {
            let (client, url) = (client.clone(), chat_url.clone());
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(300);
                for i in 0..300 {
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(chat_body("m", &format!("question number {i}")))
                        .send()
                        .await
                        .expect("chat answers");
                    let status = resp.status().as_u16();
                    let id = resp.headers().get("x-hermes-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
                    out.push((status, id, resp.text().await.unwrap_or_default()));
                }
                out
            })
        };
        let mut ratings = Vec::new();
        for t in flood {
            ratings.extend(t.await.unwrap());
        }
        (ratings, chatter.await.unwrap())
    });

    assert_eq!(ratings.len(), 3000);
    let bad: Vec<&(u16, String)> = ratings.iter().filter(|(s, _)| *s != 404 && *s != 429).collect();
    assert!(bad.is_empty(), "every rating of an unknown id is 404 or 429, never 5xx: {} others, first {:?}", bad.len(), bad.first());
    let not_found = ratings.iter().filter(|(s, _)| *s == 404).count();
    println!("3000 ratings of unknown ids: {not_found} answered 404, {} answered 429", 3000 - not_found);

    assert_eq!(chats.len(), 300);
    let failed: Vec<_> = chats.iter().filter(|(s, id, _)| *s != 200 || id.is_none()).collect();
    assert!(failed.is_empty(), "every chat is answered 200 with its request id: {} not, first {:?}", failed.len(), failed.first());
    let ids: Vec<&str> = chats.iter().filter_map(|(_, id, _)| id.as_deref()).collect();

    let m = metrics(&h);
    let dropped: Vec<&str> = m.lines().filter(|l| l.starts_with("hermes_analytics_dropped_total")).collect();
    assert!(dropped.iter().all(|l| l.ends_with(" 0")), "no analytics record was dropped: {dropped:?}\n{}", h.log());

    h.sigterm();
    let status = h.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("hermes did not stop: {}", h.log()));
    let log = h.log();
    assert!(status.success(), "nothing accepted was lost, so the exit is clean; got {status}: {log}");
    for complaint in ["queue_full", "is lost", "are lost", "were not written", "with losses"] {
        assert!(!log.contains(complaint), "the log complains of losses ({complaint}): {log}");
    }
    let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ");
    let stored = duck_number(&h.db(), &format!("SELECT count(DISTINCT id) FROM jobs WHERE id IN ({list})"));
    assert_eq!(stored, 300.0, "every answered chat has its job row");
}

/// OpenAI's answer shape; a request that mentions "huge" reports 2^63 + 5 prompt tokens, which
/// fits a u64 but not DuckDB's BIGINT, so its job row is refused by the file.
async fn answer(body: Bytes) -> Response {
    let huge = String::from_utf8_lossy(&body).contains("huge");
    let prompt_tokens: u64 = if huge { 9_223_372_036_854_775_813 } else { 12 };
    let v = json!({"id": "chatcmpl-plain", "object": "chat.completion", "created": 1_732_000_000, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1}});
    Json(v).into_response()
}

#[test]
fn on_sigterm_a_row_the_file_refuses_loses_only_itself_and_the_exit_code_says_so() {
    let app = Router::new().route("/v1/chat/completions", post(answer)).route("/v1/models", get(models));
    let (port, _mock) = serve_mock(app);
    let mut h = Hermes::start(&gateway_env("plain", port, &[]), &[]);
    let url = format!("{}/v1/chat/completions", h.url());

    // Five at once, so that their rows meet in one batch.
    let started = Instant::now();
    let replies: Vec<(bool, String)> = std::thread::scope(|s| {
        let url = url.as_str();
        let workers: Vec<_> = (0..5)
            .map(|i| {
                s.spawn(move || {
                    let huge = i == 2;
                    let text = if huge { "a huge question".to_string() } else { format!("an ordinary question {i}") };
                    let r = post_json(url, None, &chat_body("m", &text));
                    assert_eq!(r.status, 200, "{}", r.body);
                    (huge, r.header("x-hermes-request-id").expect("x-hermes-request-id").to_string())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    println!("five answers in {:?}", started.elapsed());
    h.sigterm();
    let status = h.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("hermes did not stop: {}", h.log()));
    let log = h.log();
    assert_eq!(status.code(), Some(1), "a record accepted and not written makes the exit non-zero; got {status}: {log}");

    let lost = replies.iter().find(|(huge, _)| *huge).map(|(_, id)| id.clone()).unwrap();
    let mut normal: Vec<String> = replies.iter().filter(|(huge, _)| !*huge).map(|(_, id)| id.clone()).collect();
    normal.sort();
    let rows = duck(&h.db(), &["SELECT id FROM jobs ORDER BY id"]).remove(0);
    let stored: Vec<String> = rows.iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
    assert_eq!(stored, normal, "the four good rows are written, the refused one alone is missing (lost {lost}): {log}");
    assert!(log.lines().any(|l| l.contains(&lost) && (l.contains("lost") || l.contains("not written"))), "the log names the job that was lost ({lost}): {log}");
    for id in &normal {
        assert!(!log.lines().any(|l| l.contains(id.as_str()) && l.contains("lost")), "a good job ({id}) is reported lost: {log}");
    }
}
