//! OpenTelemetry traces as an operator sees them in their collector: one trace per request,
//! continued from the client's `traceparent`, with the failover chain as one client span per
//! attempt whose context each backend received; no prompt, answer or key in any span unless
//! content logging is on; and a collector that is down or sampled out costs requests nothing.
//! The collector is tests/py/otlp_sink.py, decoding with the official OTLP protobuf definitions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::{MockUpstream, Mode};
use common::*;
use serde_json::Value;
use std::time::Duration;

const CLIENT_KEY: &str = "hermes-traces-client-key-7f3a";
const FAILING_KEY: &str = "sk-failing-UPSTREAM-SECRET-91c2";
const HEALTHY_KEY: &str = "sk-healthy-UPSTREAM-SECRET-5d8e";
const SERVICE: &str = "hermes-traces-test";
/// W3C's own example: what a traced client sends.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00f067aa0ba902b7";
const PROMPT: &str = "Summarise the lighthouse keeper logbook in three lines";

// OTLP's enums, as the sink writes them.
const INTERNAL: i64 = 1;
const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const STATUS_ERROR: i64 = 2;

/// `failing` (answers 500, serves gpt-4o-mini) is the primary, so it is always tried first and
/// failover goes on to `healthy` (gpt-4o). Both are `openai` backends with distinctive keys.
fn two_backends(failing: &MockUpstream, healthy: &MockUpstream, otel: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("HERMES_API_KEYS", CLIENT_KEY.to_string()),
        ("HERMES_BACKENDS_ENABLED", "failing,healthy".into()),
        ("HERMES_PRIMARY_BACKEND", "failing".into()),
        ("HERMES_HEALTH_CHECK_ENABLED", "false".into()),
        // failing stays in rotation, so every request meets the failover.
        ("HERMES_UNHEALTHY_THRESHOLD", "1000".into()),
        ("HERMES_FAILOVER_DELAY_SECONDS", "0.01".into()),
        ("BACKEND_FAILING_TYPE", "openai".into()),
        ("BACKEND_FAILING_BASE_URL", failing.base_url()),
        ("BACKEND_FAILING_API_KEY", FAILING_KEY.into()),
        ("BACKEND_FAILING_MODELS", "gpt-4o-mini".into()),
        ("BACKEND_HEALTHY_TYPE", "openai".into()),
        ("BACKEND_HEALTHY_BASE_URL", healthy.base_url()),
        ("BACKEND_HEALTHY_API_KEY", HEALTHY_KEY.into()),
        ("BACKEND_HEALTHY_MODELS", "gpt-4o".into()),
        ("OTEL_SERVICE_NAME", SERVICE.into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ];
    env.extend_from_slice(otel);
    env
}

fn ok_mode() -> Mode {
    Mode::Ok { gap: Duration::ZERO }
}

/// A chat request from a keyed client, with its own `traceparent` when it has one.
fn chat(hermes: &Hermes, text: &str, traceparent: Option<&str>) -> CurlReply {
    let url = format!("{}/v1/chat/completions", hermes.url());
    let auth = format!("Authorization: Bearer {CLIENT_KEY}");
    let body = chat_body("auto", text);
    let tp = traceparent.map(|t| format!("traceparent: {t}"));
    let mut args = vec![url.as_str(), "-H", "content-type: application/json", "-H", auth.as_str(), "--data-binary", body.as_str()];
    if let Some(tp) = &tp {
        args.extend(["-H", tp.as_str()]);
    }
    curl(&args)
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

/// The request span of the answer that carried this `x-hermes-request-id`.
fn request_span<'a>(spans: &'a [Value], request_id: &str) -> Option<&'a Value> {
    spans.iter().find(|s| s["kind"] == SERVER && attr(s, "hermes.request_id").as_str() == Some(request_id))
}

fn in_trace<'a>(spans: &'a [Value], trace_id: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["trace_id"] == trace_id).collect()
}

/// The request span and everything under it have all arrived: classify, route, `attempts` attempts.
fn whole_request(spans: &[Value], request_id: &str, attempts: usize) -> bool {
    let Some(root) = request_span(spans, request_id) else { return false };
    let children: Vec<&Value> = spans.iter().filter(|s| s["parent_span_id"] == root["span_id"]).collect();
    children.iter().any(|s| s["name"] == "hermes.classify")
        && children.iter().any(|s| s["name"] == "hermes.route")
        && children.iter().filter(|s| s["kind"] == CLIENT).count() >= attempts
}

/// `00-<trace id>-<parent id>-<flags>`, checked for shape.
fn traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value}");
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) && s.bytes().any(|b| b != b'0');
    assert!(parts[0] == "00" && hex(parts[1], 32) && hex(parts[2], 16) && parts[3].len() == 2, "traceparent {value}");
    (parts[1].to_string(), parts[2].to_string(), parts[3].to_string())
}

/// The sum of a Prometheus counter's series whose labels contain `label` (labels may grow).
fn counter(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The failover chain in one trace, under the client's own: a dashboard shows one request with
/// a failed and a successful attempt, each backend's own logs join the same trace through the
/// `traceparent` it received, and nothing secret or private rides along.
#[test]
fn failover_is_one_trace_continued_from_the_client() {
    let sink = OtlpSink::start();
    let failing = MockUpstream::start("failing", Mode::Status(500));
    let healthy = MockUpstream::start("healthy", ok_mode());
    let hermes = Hermes::start(&two_backends(&failing, &healthy, &[("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint())]), &[]);

    let r = chat(&hermes, PROMPT, Some(&format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01")));
    assert_eq!((r.status, r.header("x-hermes-backend"), r.header("x-hermes-attempts")), (200, Some("healthy"), Some("2")), "{}", r.body);
    let request_id = r.header("x-hermes-request-id").expect("a request id").to_string();
    let spans = sink.spans_when(|s| whole_request(s, &request_id, 2));
    let dump = || format!("spans:\n{}\n--- hermes ---\n{}", spans.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"), hermes.log());

    // The request span continues the client's trace, under the client's span.
    let root = request_span(&spans, &request_id).unwrap_or_else(|| panic!("no request span for {request_id}: {}", dump()));
    assert_eq!((root["trace_id"].as_str(), root["parent_span_id"].as_str()), (Some(CLIENT_TRACE), Some(CLIENT_PARENT)), "{}", dump());
    assert_eq!(root["name"], "POST /v1/chat/completions");
    assert_ne!(root["status_code"], STATUS_ERROR, "the client got its answer: {root}");
    assert_eq!(root["resource"]["service.name"], SERVICE, "{root}");
    // What an operator filters and groups by, typed as OpenTelemetry's conventions say.
    let cost: f64 = r.header("x-hermes-cost-cents").unwrap().parse().unwrap();
    for (key, want) in [
        ("http.request.method", Value::from("POST")),
        ("url.path", "/v1/chat/completions".into()),
        ("http.response.status_code", 200.into()),
        ("gen_ai.operation.name", "chat".into()),
        ("gen_ai.request.model", "auto".into()),
        ("gen_ai.response.model", "gpt-4o".into()),
        ("gen_ai.provider.name", "openai".into()),
        ("gen_ai.system", "openai".into()),
        // The mock's usage: 12 prompt tokens, 3 completion tokens.
        ("gen_ai.usage.input_tokens", 12.into()),
        ("gen_ai.usage.output_tokens", 3.into()),
        ("hermes.request_id", request_id.as_str().into()),
        ("hermes.job_type", r.header("x-hermes-job-type").unwrap().into()),
        ("hermes.criteria", "cost_first".into()),
        ("hermes.backend", "healthy".into()),
        ("hermes.attempts", 2.into()),
        ("hermes.cache_hit", false.into()),
        ("hermes.stream", false.into()),
    ] {
        assert_eq!(attr(root, key), &want, "request span's {key}: {root}");
    }
    assert_eq!(r.header("x-hermes-model"), Some("gpt-4o"));
    let span_cost = attr(root, "hermes.cost_cents").as_f64().unwrap_or_else(|| panic!("hermes.cost_cents is a double: {root}"));
    assert!((span_cost - cost).abs() < 1e-5, "the span's cost {span_cost} is the answer's {cost}");

    // One tree: every other span of the trace has its parent in it. Under the request span:
    // classify, route, and the two attempts.
    let trace = in_trace(&spans, CLIENT_TRACE);
    let ids: Vec<&Value> = trace.iter().map(|s| &s["span_id"]).collect();
    assert!(trace.iter().all(|s| s["span_id"] == root["span_id"] || ids.contains(&&s["parent_span_id"])), "an orphaned span: {}", dump());
    let children: Vec<&Value> = trace.iter().copied().filter(|s| s["parent_span_id"] == root["span_id"]).collect();
    assert_eq!(children.iter().filter(|s| s["kind"] == CLIENT).count(), 2, "one client span per attempt: {}", dump());
    let one = |name: &str| {
        let found: Vec<&&Value> = children.iter().filter(|s| s["name"] == name).collect();
        assert_eq!(found.len(), 1, "one {name} span: {}", dump());
        *found[0]
    };
    let classify = one("hermes.classify");
    assert_eq!(classify["kind"], INTERNAL);
    assert_eq!(attr(classify, "hermes.job_type"), attr(root, "hermes.job_type"));
    assert!(!attr(classify, "hermes.complexity").is_null(), "{classify}");
    let route = one("hermes.route");
    assert_eq!(route["kind"], INTERNAL);
    assert_eq!((attr(route, "hermes.criteria").as_str(), attr(route, "hermes.candidates").as_i64()), (Some("cost_first"), Some(2)), "{route}");

    // The attempts, in order: the primary's 500, then the answer.
    let first = one("chat gpt-4o-mini");
    let second = one("chat gpt-4o");
    for (span, n, backend, model) in [(first, 1, "failing", "gpt-4o-mini"), (second, 2, "healthy", "gpt-4o")] {
        assert_eq!(span["kind"], CLIENT, "{span}");
        assert_eq!(attr(span, "hermes.attempt"), n, "{span}");
        assert_eq!(attr(span, "hermes.backend").as_str(), Some(backend), "{span}");
        assert_eq!(attr(span, "gen_ai.request.model").as_str(), Some(model), "{span}");
        assert_eq!(attr(span, "gen_ai.provider.name").as_str(), Some("openai"), "{span}");
    }
    assert_eq!(first["status_code"], STATUS_ERROR, "{first}");
    assert_eq!((attr(first, "hermes.failure_reason").as_str(), attr(first, "error.type").as_str()), (Some("status_5xx"), Some("status_5xx")), "{first}");
    assert_eq!(attr(first, "http.response.status_code"), 500, "{first}");
    assert_ne!(second["status_code"], STATUS_ERROR, "{second}");
    assert!(attr(second, "hermes.failure_reason").is_null(), "{second}");
    assert_eq!(attr(second, "http.response.status_code"), 200, "{second}");

    // Each backend was told which attempt span it serves, in the client's trace, sampled.
    for (mock, span) in [(&failing, first), (&healthy, second)] {
        let sent = mock.calls()[0].header("traceparent").unwrap_or_else(|| panic!("{} got no traceparent", mock.state.name));
        assert_eq!(traceparent(&sent), (CLIENT_TRACE.to_string(), span["span_id"].as_str().unwrap().to_string(), "01".to_string()), "{}", mock.state.name);
    }

    // The export itself: OTLP/HTTP protobuf, and no key, prompt or answer in any byte of it.
    let exports = sink.requests();
    assert!(!exports.is_empty() && exports.iter().all(|e| e["path"] == "/v1/traces" && e["content_type"] == "application/x-protobuf"), "{exports:?}");
    let raw = String::from_utf8_lossy(&sink.raw()).to_string();
    for secret in [CLIENT_KEY, FAILING_KEY, HEALTHY_KEY, PROMPT, "Hello from healthy"] {
        assert!(!raw.contains(secret), "{secret:?} was exported");
    }

    // A client without a trace of its own starts a new one at Hermes.
    let r = chat(&hermes, "What is the tallest lighthouse", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let request_id = r.header("x-hermes-request-id").unwrap().to_string();
    let spans = sink.spans_when(|s| whole_request(s, &request_id, 2));
    let root = request_span(&spans, &request_id).unwrap_or_else(|| panic!("no request span for {request_id}: {spans:?}"));
    let trace_id = root["trace_id"].as_str().unwrap();
    assert!(trace_id.len() == 32 && trace_id != CLIENT_TRACE, "{root}");
    assert_eq!(root["parent_span_id"], "", "a new trace's request span is its root: {root}");
    let (sent_trace, _, flags) = traceparent(&healthy.calls().last().unwrap().header("traceparent").unwrap());
    assert_eq!((sent_trace.as_str(), flags.as_str()), (trace_id, "01"));
}

/// A collector that is down is the collector's problem: every request is answered as usual,
/// and /metrics says spans are being lost, and why.
#[test]
fn a_dead_collector_costs_requests_nothing() {
    let failing = MockUpstream::start("failing", Mode::Status(500));
    let healthy = MockUpstream::start("healthy", ok_mode());
    let closed = free_port();
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{closed}")), ("OTEL_BSP_SCHEDULE_DELAY", "50".to_string())];
    let hermes = Hermes::start(&two_backends(&failing, &healthy, &otel), &[]);
    for i in 0..20 {
        let r = chat(&hermes, &format!("Lighthouse question number {i}"), None);
        assert_eq!(r.status, 200, "request {i}: {}\n{}", r.body, hermes.log());
        assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello from healthy", "request {i}");
    }
    let metrics_url = format!("{}/metrics", hermes.url());
    let dropped = || counter(&curl(&[&metrics_url]).body, "hermes_trace_spans_dropped_total", r#"reason="export_failed""#);
    let seen = eventually(Duration::from_secs(5), || dropped() > 0.0);
    let metrics = curl(&[&metrics_url]).body;
    assert!(seen.is_some(), "hermes_trace_spans_dropped_total{{reason=\"export_failed\"}} counts the lost spans:\n{metrics}");
    assert_eq!(counter(&metrics, "hermes_trace_spans_exported_total", ""), 0.0, "{metrics}");
    assert_eq!(curl(&[&format!("{}/health", hermes.url())]).status, 200);
}

/// `OTEL_TRACES_SAMPLER=always_off` keeps the collector's bill at zero, but the backends still
/// get a `traceparent` (not sampled, flags 00), so a trace begun downstream still joins up.
#[test]
fn sampled_out_requests_export_nothing_but_still_propagate() {
    let sink = OtlpSink::start();
    let failing = MockUpstream::start("failing", Mode::Status(500));
    let healthy = MockUpstream::start("healthy", ok_mode());
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()), ("OTEL_TRACES_SAMPLER", "always_off".to_string())];
    let hermes = Hermes::start(&two_backends(&failing, &healthy, &otel), &[]);
    for i in 0..3 {
        let r = chat(&hermes, &format!("Lighthouse question number {i}"), None);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (_, _, flags) = traceparent(&healthy.calls().last().unwrap().header("traceparent").expect("a traceparent, sampled out"));
    assert_eq!(flags, "00");
    // A client's trace is continued (its trace id), though not recorded here.
    let r = chat(&hermes, PROMPT, Some(&format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01")));
    assert_eq!(r.status, 200, "{}", r.body);
    let (trace, parent, flags) = traceparent(&healthy.calls().last().unwrap().header("traceparent").unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (CLIENT_TRACE, "00"));
    assert_ne!(parent, CLIENT_PARENT, "the backend's parent is Hermes's attempt, not the client");

    std::thread::sleep(Duration::from_millis(1500));
    let spans = sink.spans();
    assert!(spans.is_empty(), "sampled-out requests export nothing: {spans:?}");
}

/// With HERMES_LOG_CONTENT=true (and only then) the request span carries the prompt, as
/// OpenTelemetry's GenAI conventions have it: `gen_ai.input.messages`, a JSON string.
#[test]
fn content_only_with_log_content() {
    let sink = OtlpSink::start();
    let failing = MockUpstream::start("failing", Mode::Status(500));
    let healthy = MockUpstream::start("healthy", ok_mode());
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()), ("HERMES_LOG_CONTENT", "true".to_string())];
    let hermes = Hermes::start(&two_backends(&failing, &healthy, &otel), &[]);
    let r = chat(&hermes, PROMPT, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let request_id = r.header("x-hermes-request-id").unwrap().to_string();
    let spans = sink.spans_when(|s| request_span(s, &request_id).is_some());
    let root = request_span(&spans, &request_id).unwrap_or_else(|| panic!("no request span for {request_id}: {spans:?}\n{}", hermes.log()));
    let messages = attr(root, "gen_ai.input.messages").as_str().unwrap_or_else(|| panic!("gen_ai.input.messages is a string: {root}"));
    assert!(messages.contains(PROMPT), "{messages}");
    serde_json::from_str::<Value>(messages).unwrap_or_else(|e| panic!("gen_ai.input.messages is JSON ({e}): {messages}"));
    // Content is not keys: those stay out even now.
    let raw = String::from_utf8_lossy(&sink.raw()).to_string();
    for secret in [CLIENT_KEY, FAILING_KEY, HEALTHY_KEY] {
        assert!(!raw.contains(secret), "{secret:?} was exported");
    }
}
