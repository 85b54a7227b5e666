//! Every answer Hermes builds itself (the `sim` backend, translations from Ollama and Anthropic,
//! its own errors and model list) checked against OpenAI's published schemas
//! (tests/data/openapi, extracted from openai/openai-openapi) by `jsonschema`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::{MockUpstream, Mode};
use common::mock_anthropic::{self, MockAnthropic};
use common::mock_ollama::MockOllama;
use common::*;
use serde_json::json;
use std::process::Command;

/// Validates `body` against the named schema; the validator's report on failure.
fn check(schema: &str, what: &str, body: &str) -> Result<(), String> {
    let file = scratch_dir("schema").join("answer");
    std::fs::write(&file, body).unwrap();
    let out = Command::new(python_with_jsonschema())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/validate_openai.py"))
        .arg(schema)
        .arg(&file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} against {schema}:\n{}{}\n{body}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn answers_hermes_builds_match_openais_schemas() {
    let ollama = MockOllama::start();
    let anthropic = MockAnthropic::start();
    let h = Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "sim,home,claude".into()),
            ("HERMES_HEALTH_CHECK_ENABLED", "false".into()),
            ("HERMES_API_KEYS", "client-key-1".into()),
            ("BACKEND_SIM_TYPE", "sim".into()),
            ("BACKEND_SIM_MODELS", "sim-model".into()),
            ("BACKEND_SIM_LATENCY_MS", "1".into()),
            ("BACKEND_SIM_TOKENS_PER_SECOND", "0".into()),
            ("BACKEND_HOME_TYPE", "ollama".into()),
            ("BACKEND_HOME_BASE_URL", ollama.url()),
            ("BACKEND_HOME_MODELS", "qwen2.5-coder:7b".into()),
            ("BACKEND_CLAUDE_TYPE", "anthropic".into()),
            ("BACKEND_CLAUDE_BASE_URL", anthropic.base_url()),
            ("BACKEND_CLAUDE_API_KEY", mock_anthropic::KEY.into()),
            ("BACKEND_CLAUDE_MODELS", "claude-3-5-sonnet-latest".into()),
        ],
        &[],
    );
    let key = Some("client-key-1");
    let chat = format!("{}/v1/chat/completions", h.url());
    let mut failures = Vec::new();
    let mut run = |schema: &str, what: String, status: u16, expected: u16, body: &str| {
        if status != expected {
            failures.push(format!("{what}: status {status}, expected {expected}: {body}"));
        } else if let Err(e) = check(schema, &what, body) {
            failures.push(e);
        }
    };
    for model in ["sim-model", "qwen2.5-coder:7b", "claude-3-5-sonnet-latest"] {
        for stream in [false, true] {
            let body = json!({"model": model, "stream": stream, "stream_options": {"include_usage": true},
                              "messages": [{"role": "user", "content": "hello there"}]});
            let r = post_json(&chat, key, &body.to_string());
            let schema = if stream { "CreateChatCompletionStreamResponse" } else { "CreateChatCompletionResponse" };
            run(schema, format!("{model} stream={stream}"), r.status, 200, &r.body);
        }
    }
    // One embedding per input.
    let r = post_json(&format!("{}/v1/embeddings", h.url()), key, &json!({"model": "sim-model", "input": ["a", "b", "c"]}).to_string());
    run("CreateEmbeddingResponse", "sim embeddings".into(), r.status, 200, &r.body);
    let count = serde_json::from_str::<serde_json::Value>(&r.body).ok().and_then(|v| v["data"].as_array().map(Vec::len));
    assert_eq!(count, Some(3), "one embedding per input: {}", r.body);
    let r = curl(&["-H", "Authorization: Bearer client-key-1", &format!("{}/v1/models", h.url())]);
    run("ListModelsResponse", "model list".into(), r.status, 200, &r.body);
    // Hermes's own errors.
    let errors = [
        (post_json(&chat, None, &chat_body("sim-model", "hi")), 401, "no key"),
        (post_json(&chat, key, "{not json"), 400, "bad JSON"),
        (post_json(&chat, key, &chat_body("no-such-model", "hi")), 404, "unknown model"),
        (post_json(&chat, key, r#"{"model": "sim-model", "messages": [{"role": "user"}]}"#), 400, "no content"),
        (curl(&["-H", "Authorization: Bearer client-key-1", &format!("{}/v1/nothing", h.url())]), 404, "unknown path"),
    ];
    for (r, status, what) in errors {
        run("ErrorResponse", what.to_string(), r.status, status, &r.body);
    }
    assert!(failures.is_empty(), "{}\n--- hermes ---\n{}", failures.join("\n\n"), h.log());
}

/// The Responses door's objects and stream events against OpenAI's `Response` and
/// `ResponseStreamEvent` schemas: plain text, a function call, its result, a retrieved response,
/// and the errors of this door.
#[test]
fn responses_hermes_builds_match_openais_schemas() {
    let agent = MockUpstream::start("agent", Mode::Agent);
    let h = Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "agent".into()),
            ("HERMES_HEALTH_CHECK_ENABLED", "false".into()),
            ("HERMES_API_KEYS", "client-key-1".into()),
            ("BACKEND_AGENT_TYPE", "custom".into()),
            ("BACKEND_AGENT_BASE_URL", agent.base_url()),
            ("BACKEND_AGENT_MODELS", "agent-model".into()),
        ],
        &[],
    );
    let key = Some("client-key-1");
    let url = format!("{}/v1/responses", h.url());
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather in a city",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let mut failures = Vec::new();
    let mut run = |schema: &str, what: &str, r: &CurlReply, expected: u16| {
        if r.status != expected {
            failures.push(format!("{what}: status {}, expected {expected}: {}", r.status, r.body));
        } else if let Err(e) = check(schema, what, &r.body) {
            failures.push(e);
        }
    };
    let plain = post_json(&url, key, &json!({"model": "agent-model", "input": "Say hello", "instructions": "Be terse."}).to_string());
    run("Response", "plain text", &plain, 200);
    let call = post_json(&url, key, &json!({"model": "agent-model", "input": "Weather in Paris?", "tools": tools}).to_string());
    run("Response", "function call", &call, 200);
    let id = serde_json::from_str::<serde_json::Value>(&call.body).map(|v| v["id"].as_str().unwrap_or_default().to_string()).unwrap_or_default();
    let output = json!([{"type": "function_call_output", "call_id": "call_mock1", "output": "18C"}]);
    let result = post_json(&url, key, &json!({"model": "agent-model", "previous_response_id": id, "input": output, "tools": tools}).to_string());
    run("Response", "function result", &result, 200);
    let stored = curl(&["-H", "Authorization: Bearer client-key-1", &format!("{url}/{id}")]);
    run("Response", "retrieved", &stored, 200);
    for (what, tools) in [("stream text", json!([])), ("stream function call", tools.clone())] {
        let r = post_json(&url, key, &json!({"model": "agent-model", "input": "Weather in Paris?", "tools": tools, "stream": true}).to_string());
        run("ResponseStreamEvent", what, &r, 200);
    }
    let missing = post_json(&url, key, &json!({"model": "agent-model", "input": "hi", "previous_response_id": "resp_nope"}).to_string());
    run("ErrorResponse", "unknown previous_response_id", &missing, 404);
    run("ErrorResponse", "bad input", &post_json(&url, key, r#"{"model": "agent-model", "input": 5}"#), 400);
    assert!(failures.is_empty(), "{}\n--- hermes ---\n{}", failures.join("\n\n"), h.log());
}
