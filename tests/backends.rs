//! Every backend type behind one gateway, and the Talos agent in front of Ollama: real binaries,
//! mock upstreams in each type's own wire format, the `openai` SDK as the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::{MockUpstream, Mode};
use common::mock_anthropic::{self, MockAnthropic};
use common::mock_ollama::MockOllama;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

#[test]
fn talos_carries_openai_chat_to_ollama_and_back() {
    let ollama = MockOllama::start();
    let talos = TalosAgent::start(&ollama.url(), free_port(), None);

    let h = curl(&[&format!("{}/health", talos.url())]);
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "healthy");
    assert_eq!(h.json()["models"][0], "llama3.1:8b");
    assert!(h.json()["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(curl(&[&format!("{}/models", talos.url())]).json()["models"][1], "qwen2.5-coder:7b");

    // The spec's /execute.
    let r = post_json(&format!("{}/execute", talos.url()), None, r#"{"prompt": "hi", "model_config": {"model": "qwen2.5-coder:7b", "temperature": 0}}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!((v["status"].as_str(), v["model_used"].as_str(), v["cost_cents"].as_u64()), (Some("success"), Some("qwen2.5-coder:7b"), Some(0)));
    assert_eq!(v["result"], "Hello from ollama (1 messages)");
    assert!(v["execution_time"].as_f64().unwrap() > 0.0);
    assert_eq!(ollama.chats().last().unwrap()["options"]["temperature"], 0);
    let r = post_json(&format!("{}/execute", talos.url()), None, r#"{"prompt": "hi"}"#);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("model_config"));

    // OpenAI chat, every message and option carried to Ollama.
    let body = r#"{"model": "llama3.1:8b", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], "temperature": 0.5, "max_tokens": 20, "stop": ["X"], "stream": true, "stream_options": {"include_usage": true}}"#;
    let r = post_json(&format!("{}/v1/chat/completions", talos.url()), None, body);
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#""content":" ollama""#) && r.body.contains(r#""prompt_tokens":26"#) && r.body.ends_with("data: [DONE]\n\n"), "{}", r.body);
    let sent = ollama.chats().last().unwrap().clone();
    assert_eq!(sent["messages"].as_array().unwrap().len(), 4);
    assert_eq!(sent["options"], serde_json::json!({"temperature": 0.5, "num_predict": 20, "stop": ["X"]}));

    // Ollama's errors in OpenAI's shape.
    let r = post_json(&format!("{}/v1/chat/completions", talos.url()), None, &chat_body("mistral:7b", "hi"));
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (404, Some("model_not_found")));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("try pulling it first"));
    let r = post_json(&format!("{}/v1/chat/completions", talos.url()), None, r#"{"model": "llama3.1:8b"}"#);
    assert_eq!((r.status, r.json()["error"]["param"].as_str()), (400, Some("messages")));

    // A JSON line per request.
    let log = talos.access_log();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!((last["path"].as_str(), last["status"].as_u64()), (Some("/v1/chat/completions"), Some(400)));
}

#[test]
fn talos_reports_a_dead_ollama_and_guards_itself_with_a_token() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let talos = TalosAgent::start(&dead, free_port(), Some("talos-token-1"));
    let h = curl(&[&format!("{}/health", talos.url())]);
    assert_eq!((h.status, h.json()["status"].as_str()), (503, Some("unhealthy")));
    let r = post_json(&format!("{}/v1/chat/completions", talos.url()), Some("talos-token-1"), &chat_body("llama3.1:8b", "hi"));
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("not reachable"));
    let r = post_json(&format!("{}/v1/chat/completions", talos.url()), None, &chat_body("llama3.1:8b", "hi"));
    assert_eq!(r.status, 401);
    let mut talos = talos;
    Command::new("kill").arg("-TERM").arg(talos.child.id().to_string()).status().unwrap();
    let status = eventually(Duration::from_secs(5), || talos.child.try_wait().unwrap().is_some());
    assert!(status.is_some(), "talos stops on SIGTERM");
}

#[test]
fn every_backend_type_answers_through_the_openai_sdk() {
    let python = python_with_openai();
    let ollama = MockOllama::start();
    let talos = TalosAgent::start(&ollama.url(), free_port(), Some("talos-secret-token"));
    let openrouter = MockUpstream::start("openrouter", Mode::Ok { gap: Duration::from_millis(1) });
    let openai = MockUpstream::start("openai", Mode::Ok { gap: Duration::from_millis(1) });
    let anthropic = MockAnthropic::start();
    let hermes = Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "talos,home_ollama,remote_api,gpt5,claude".into()),
            ("BACKEND_TALOS_TYPE", "local".into()),
            ("BACKEND_TALOS_HOST", "127.0.0.1".into()),
            ("BACKEND_TALOS_PORT", talos.port.to_string()),
            ("BACKEND_TALOS_API_KEY", "talos-secret-token".into()),
            ("BACKEND_TALOS_MODELS", "llama3.1:8b".into()),
            ("BACKEND_HOME_OLLAMA_TYPE", "ollama".into()),
            ("BACKEND_HOME_OLLAMA_BASE_URL", ollama.url()),
            ("BACKEND_HOME_OLLAMA_MODELS", "qwen2.5-coder:7b".into()),
            ("BACKEND_REMOTE_API_TYPE", "openrouter".into()),
            ("BACKEND_REMOTE_API_BASE_URL", openrouter.base_url()),
            ("BACKEND_REMOTE_API_KEY", "sk-or-SECRET".into()),
            ("BACKEND_REMOTE_API_MODELS", "meta-llama/llama-3.1-70b-instruct".into()),
            ("BACKEND_GPT5_TYPE", "openai".into()),
            ("BACKEND_GPT5_BASE_URL", openai.base_url()),
            ("BACKEND_GPT5_API_KEY", "sk-openai-SECRET".into()),
            ("BACKEND_GPT5_MODEL", "gpt-5".into()),
            ("BACKEND_CLAUDE_TYPE", "anthropic".into()),
            ("BACKEND_CLAUDE_BASE_URL", anthropic.base_url()),
            ("BACKEND_CLAUDE_API_KEY", mock_anthropic::KEY.into()),
            ("BACKEND_CLAUDE_MODELS", "claude-3-5-sonnet-latest".into()),
        ],
        &[],
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/sdk_backends.py");
    let cases = [
        ("llama3.1:8b", "Hello from ollama (4 messages)", "talos"),
        ("qwen2.5-coder:7b", "Hello from ollama (4 messages)", "home_ollama"),
        ("meta-llama/llama-3.1-70b-instruct", "Hello from openrouter", "remote_api"),
        ("gpt-5", "Hello from openai", "gpt5"),
        ("claude-3-5-sonnet-latest", "Hello from claude (3 turns)", "claude"),
    ];
    let args: Vec<String> = cases.iter().map(|(m, e, b)| format!("{m}@{b}={e}")).collect();
    let out = Command::new(&python).arg(script).arg(hermes.url()).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}\n--- hermes ---\n{}", String::from_utf8_lossy(&out.stderr), hermes.log());
    for (model, _, backend) in cases {
        assert!(stdout.lines().any(|l| l == format!("ok {model} {backend}")), "{model} via {backend}: {stdout}");
    }

    // Each upstream got its own wire format and its own key.
    let or_call = &openrouter.calls()[0];
    assert_eq!(or_call.header("authorization").as_deref(), Some("Bearer sk-or-SECRET"));
    assert!(or_call.header("http-referer").is_some() && or_call.header("x-title").as_deref() == Some("Hermes"));
    let gpt5 = openai.calls()[0].json();
    assert_eq!(gpt5["max_completion_tokens"], 64, "gpt-5 takes max_completion_tokens: {gpt5}");
    assert!(gpt5.get("max_tokens").is_none());
    let (headers, claude) = &anthropic.calls()[0];
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(claude["system"], "You are a helpful assistant.");
    assert_eq!(claude["messages"].as_array().unwrap().len(), 3);
    assert_eq!(claude["max_tokens"], 64);
    let direct = ollama.chats().iter().find(|c| c["model"] == "qwen2.5-coder:7b").unwrap().clone();
    assert_eq!(direct["options"]["num_predict"], 64);
    assert_eq!(direct["messages"][0]["role"], "system");

    // A stream whose client did not ask for usage is still counted: the translated stream
    // carries it in an SSE comment that clients ignore.
    let output_tokens = || -> u64 {
        let m = curl(&[&format!("{}/metrics", hermes.url())]).body;
        m.lines()
            .find(|l| l.starts_with(r#"hermes_tokens_total{backend="claude",model="claude-3-5-sonnet-latest",direction="output"}"#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let before = output_tokens();
    let body = serde_json::json!({"model": "claude-3-5-sonnet-latest", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&format!("{}/v1/chat/completions", hermes.url()), None, &body.to_string());
    assert!(r.body.ends_with("data: [DONE]\n\n") && !r.body.contains(r#""choices":[]"#), "{}", r.body);
    assert_eq!(output_tokens(), before + 9, "the mock reports 9 output tokens");

    // Discovered models join the configured ones; /admin/backends shows them all healthy.
    let models: Vec<String> =
        curl(&[&format!("{}/v1/models", hermes.url())]).json()["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    for m in ["llama3.1:8b", "qwen2.5-coder:7b", "claude-3-5-haiku-latest", "openrouter-model", "gpt-5"] {
        assert!(models.iter().any(|x| x == m), "{m} missing from {models:?}");
    }
    let admin = curl(&[&format!("{}/admin/backends", hermes.url())]).json();
    for b in admin["backends"].as_array().unwrap() {
        assert_eq!(b["health_status"], "healthy", "{b}");
        assert_eq!(b["last_check"]["ok"], true, "{b}");
    }
    assert_eq!(admin["backends"][0]["type"], "local");
    assert_eq!(admin["backends"][4]["type"], "anthropic");

    let log = hermes.log();
    for secret in ["sk-or-SECRET", "sk-openai-SECRET", mock_anthropic::KEY, "talos-secret-token"] {
        assert!(!log.contains(secret) && !admin.to_string().contains(secret), "{secret} leaked");
    }
}

#[test]
fn a_killed_talos_is_failed_over_marked_unhealthy_within_an_interval_and_recovers() {
    let ollama = MockOllama::start();
    let port = free_port();
    let talos = TalosAgent::start(&ollama.url(), port, None);
    let cloud = MockUpstream::start("cloud", Mode::Ok { gap: Duration::from_millis(1) });
    let hermes = Hermes::start(
        &[
            ("HERMES_BACKENDS_ENABLED", "talos,cloud".into()),
            ("HERMES_PRIMARY_BACKEND", "talos".into()),
            ("HERMES_HEALTH_CHECK_INTERVAL", "1".into()),
            ("BACKEND_TALOS_TYPE", "local".into()),
            ("BACKEND_TALOS_HOST", "127.0.0.1".into()),
            ("BACKEND_TALOS_PORT", port.to_string()),
            ("BACKEND_TALOS_MODELS", "llama3.1:8b".into()),
            ("BACKEND_CLOUD_TYPE", "custom".into()),
            ("BACKEND_CLOUD_BASE_URL", cloud.base_url()),
            ("BACKEND_CLOUD_MODELS", "llama3.1:8b".into()),
        ],
        &[],
    );
    let chat = format!("{}/v1/chat/completions", hermes.url());
    let status_of = |name: &str| -> String {
        let v = curl(&[&format!("{}/admin/backends", hermes.url())]).json();
        v["backends"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap()["health_status"].as_str().unwrap().to_string()
    };
    assert!(eventually(Duration::from_secs(3), || status_of("talos") == "healthy").is_some());
    let r = post_json(&chat, None, &chat_body("auto", "hi"));
    assert_eq!((r.status, r.header("x-hermes-backend")), (200, Some("talos")));

    drop(talos);
    let r = post_json(&chat, None, &chat_body("llama3.1:8b", "still there?"));
    assert_eq!((r.status, r.header("x-hermes-backend")), (200, Some("cloud")), "{}", r.body);
    let took = eventually(Duration::from_secs(3), || status_of("talos") == "unhealthy");
    assert!(took.is_some_and(|t| t <= Duration::from_millis(2500)), "unhealthy within about one interval: {took:?}");
    let metrics = curl(&[&format!("{}/metrics", hermes.url())]).body;
    assert!(metrics.contains(r#"hermes_backend_healthy{backend="talos"} 0"#), "{metrics}");
    // While unhealthy, Talos is not tried first: one attempt, on the cloud.
    let r = post_json(&chat, None, &chat_body("auto", "hi"));
    assert_eq!((r.header("x-hermes-backend"), r.header("x-hermes-attempts")), (Some("cloud"), Some("1")));

    let _talos = TalosAgent::start(&ollama.url(), port, None);
    assert!(eventually(Duration::from_secs(3), || status_of("talos") == "healthy").is_some(), "recovers when it returns");
    let r = post_json(&chat, None, &chat_body("auto", "hi"));
    assert_eq!((r.status, r.header("x-hermes-backend")), (200, Some("talos")));
}

#[test]
fn install_script_checks_ollama_installs_and_starts_talos() {
    let root = scratch_dir("install");
    let port = free_port();
    let run = |ollama: &str| {
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/install_talos.sh"))
            .env("OLLAMA_HOST", ollama)
            .env("TALOS_BINARY", talos_binary())
            .env("TALOS_PREFIX", root.join("prefix"))
            .env("TALOS_CONF_DIR", root.join("etc"))
            .env("TALOS_SYSTEMD", "no")
            .env("TALOS_PORT", port.to_string())
            .env("TALOS_BIND", "127.0.0.1")
            .output()
            .unwrap()
    };
    let out = run(&format!("http://127.0.0.1:{}", free_port()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Ollama does not answer"));

    let ollama = MockOllama::start();
    let out = run(&ollama.url());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let pid = std::fs::read_to_string(root.join("etc/talos.pid")).unwrap_or_default();
    let stop = || {
        let _ = Command::new("kill").arg(pid.trim()).status();
    };
    if !out.status.success() {
        stop();
        panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(stdout.contains("llama3.1:8b") && stdout.contains("healthy:"), "{stdout}");
    let env = std::fs::read_to_string(root.join("etc/talos.env")).unwrap();
    let token = env.lines().find_map(|l| l.strip_prefix("TALOS_TOKEN=")).unwrap().to_string();
    assert!(token.len() >= 32, "a generated token: {env}");
    let r = post_json(&format!("http://127.0.0.1:{port}/v1/chat/completions"), Some(&token), &chat_body("llama3.1:8b", "hi"));
    stop();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(root.join("prefix/bin/talos").exists());
}
