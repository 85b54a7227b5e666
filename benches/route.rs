//! The per-request decision work: parse + classify + choose, and reading a stream for usage.
//! `cargo bench --bench route`; the README's figures come from here.
#![allow(clippy::expect_used)]

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use eventsource_stream::Eventsource;
use futures_util::Stream;
use hermes::backends::sse::{Lines, SseScanner};
use hermes::decide::route::Ask;
use hermes::doors::openai::{parse_request, ApiRequest, Endpoint};
use hermes::state::config::{Config, Criteria, EnvSource, Policies};
use hermes::state::gateway::Gateway;

fn gateway() -> std::sync::Arc<Gateway> {
    let env = EnvSource::from_pairs([
        ("HERMES_BACKENDS_ENABLED", "home,ollama,cheap,premium,claude"),
        ("BACKEND_HOME_TYPE", "local"),
        ("BACKEND_HOME_HOST", "127.0.0.1"),
        ("BACKEND_HOME_MODELS", "llama3.1:8b,qwen2.5-coder:7b"),
        ("BACKEND_OLLAMA_TYPE", "ollama"),
        ("BACKEND_OLLAMA_HOST", "127.0.0.1"),
        ("BACKEND_OLLAMA_MODELS", "llama3.1:8b"),
        ("BACKEND_CHEAP_TYPE", "openrouter"),
        ("BACKEND_CHEAP_MODELS", "openai/gpt-4o-mini,meta-llama/llama-3.1-70b-instruct"),
        ("BACKEND_PREMIUM_TYPE", "openai"),
        ("BACKEND_PREMIUM_MODELS", "gpt-4o,gpt-5"),
        ("BACKEND_CLAUDE_TYPE", "anthropic"),
        ("BACKEND_CLAUDE_MODELS", "claude-3-5-sonnet-latest"),
    ]);
    let config = Config::from_env(&env, Policies::builtin(), false).expect("bench config");
    let shared = hermes::state::gateway::Shared::ephemeral(&config);
    Gateway::new(config, shared).expect("bench gateway")
}

const SHORT: &str = r#"{"model":"auto","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a Python function that merges two sorted lists and explain its complexity."}],"temperature":0.2}"#;

fn long_code() -> String {
    let code = "fn handle(req: Request) -> Response {\n    let body = req.body();\n    match parse(body) {\n        Ok(v) => respond(v),\n        Err(e) => error(e),\n    }\n}\n".repeat(30);
    serde_json::json!({"model": "auto", "messages": [
        {"role": "system", "content": "You review Rust code for a payments team."},
        {"role": "user", "content": format!("Why does this panic under load? Fix it.\n```rust\n{code}\n```")}],
        "max_tokens": 800})
    .to_string()
}

fn bench(c: &mut Criterion) {
    let gw = gateway();
    let short = Bytes::from_static(SHORT.as_bytes());
    let long = Bytes::from(long_code());
    let short_req = parse_request(Endpoint::ChatCompletions, &short).expect("short");
    let long_req = parse_request(Endpoint::ChatCompletions, &long).expect("long");

    c.bench_function("parse_request (short chat)", |b| b.iter(|| parse_request(Endpoint::ChatCompletions, black_box(&short))));
    c.bench_function("classify (short chat)", |b| b.iter(|| gw.classify(black_box(&short_req), "bench")));
    c.bench_function(&format!("classify (code review, {} KiB)", long.len() / 1024), |b| b.iter(|| gw.classify(black_box(&long_req), "bench")));
    let job = gw.classify(&short_req, "bench");
    let ask = Ask { model: "auto", job: &job, criteria: Criteria::CostFirst, criteria_requested: false, budget_cents: 100.0, local_only: false, pinned: None };
    c.bench_function("choose (5 backends)", |b| b.iter(|| gw.decide(black_box(&ask))));
    c.bench_function("classify + choose (short chat)", |b| b.iter(|| classify_and_choose(&gw, black_box(&short_req))));
    c.bench_function(&format!("classify + choose (code review, {} KiB)", long.len() / 1024), |b| b.iter(|| classify_and_choose(&gw, black_box(&long_req))));

    let chunk = r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}]}"#;
    let mut stream = String::new();
    for _ in 0..200 {
        stream.push_str(chunk);
        stream.push_str("\n\n");
    }
    stream.push_str(
        "data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":200,\"total_tokens\":210}}\n\ndata: [DONE]\n\n",
    );
    let pieces: Vec<&[u8]> = stream.as_bytes().chunks(256).collect();
    c.bench_function("sse scan (200-token stream, 256 B reads)", |b| {
        b.iter(|| {
            let mut s = SseScanner::default();
            for p in &pieces {
                s.feed(black_box(p));
            }
            s.usage
        })
    });
    // The splitter alone against a well-kept crate's (issue 17: swap only if one is as fast):
    // every `data:` event of the same stream in the same 256-byte reads.
    c.bench_function("sse split: hermes Lines (200-token stream)", |b| {
        b.iter(|| {
            let mut lines = Lines::default();
            let mut events = 0usize;
            for p in &pieces {
                let _ = lines.feed(black_box(p), |l| {
                    events += usize::from(l.starts_with(b"data:"));
                    Ok::<_, std::convert::Infallible>(())
                });
            }
            events
        })
    });
    c.bench_function("sse split: eventsource-stream (200-token stream)", |b| {
        b.iter(|| {
            let reads = futures_util::stream::iter(pieces.iter().map(|p| Ok::<_, std::convert::Infallible>(black_box(*p))));
            let mut events = std::pin::pin!(reads.eventsource());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let mut count = 0usize;
            // The reads are all ready: polling never waits.
            while let std::task::Poll::Ready(Some(e)) = events.as_mut().poll_next(&mut cx) {
                count += usize::from(e.is_ok());
            }
            count
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// What a request costs before it is sent: its job read, then the backends ranked for it.
fn classify_and_choose(gw: &Gateway, request: &ApiRequest) -> Option<usize> {
    let job = gw.classify(request, "bench");
    let ask =
        Ask { model: "auto", job: &job, criteria: Criteria::QualityFirst, criteria_requested: false, budget_cents: 100.0, local_only: false, pinned: None };
    gw.decide(&ask).ok().map(|d| d.candidates.len())
}
