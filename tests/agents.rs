//! The coding agents people point at a gateway, unmodified, against the real binary: the Codex
//! CLI (npm `@openai/codex`, Responses API) and Claude Code (npm `@anthropic-ai/claude-code`,
//! Messages API). Each completes a task through Hermes whose answer needs a tool call that the
//! CLI itself executes (a shell command writing `proof.txt`); the mock model behind Hermes asks
//! for that call and then answers with what the tool returned.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::mock::{MockUpstream, Mode};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CLIENT_KEY: &str = "hermes-agent-key-1";

/// The CLIs, installed once per target folder with npm (versions pinned; the README records
/// what each sends).
fn npm_bin(name: &str) -> PathBuf {
    static NPM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = NPM.lock().unwrap_or_else(|p| p.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("npm-agents");
    let bin = dir.join("node_modules/.bin").join(name);
    if !bin.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "@openai/codex@0.171.0", "@anthropic-ai/claude-code@2.1.332"])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(st.success(), "npm install of the agent CLIs failed");
    }
    bin
}

fn gateway(agent: &MockUpstream) -> Hermes {
    Hermes::start(
        &[
            ("HERMES_API_KEYS", CLIENT_KEY.into()),
            ("HERMES_BACKENDS_ENABLED", "agent".into()),
            ("BACKEND_AGENT_TYPE", "custom".into()),
            ("BACKEND_AGENT_BASE_URL", agent.base_url()),
            ("BACKEND_AGENT_MODELS", "agent-model".into()),
        ],
        &[],
    )
}

/// Runs a CLI to completion (at most two minutes) in `workdir`.
fn run(mut cmd: Command, workdir: &Path) -> (bool, String) {
    cmd.current_dir(workdir).stdin(std::process::Stdio::null());
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("the CLI starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}\n--- stderr ---\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// What the CLI sent Hermes, from its access log: method, path and status per request.
fn requests(hermes: &Hermes) -> Vec<String> {
    let lines = hermes.log();
    let access = lines.lines().filter_map(|l| l.split_once("hermes::pipeline::record] ")).map(|(_, r)| r.split_once(' ').map_or(r, |(_id, rest)| rest));
    access.map(str::to_string).collect()
}

#[test]
fn codex_exec_completes_a_task_with_a_tool_call_through_hermes() {
    let codex = npm_bin("codex");
    let agent = MockUpstream::start("agent", Mode::Agent);
    let hermes = gateway(&agent);
    let home = scratch_dir("codex-home");
    let work = scratch_dir("codex-work");
    std::fs::write(
        home.join("config.toml"),
        format!(
            r#"model = "auto"
model_provider = "hermes"
check_for_update_on_startup = false

[model_providers.hermes]
name = "Hermes"
base_url = "{}/v1"
env_key = "HERMES_TEST_KEY"
wire_api = "responses"
"#,
            hermes.url()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(codex);
    cmd.args(["exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "Write hermes-was-here into proof.txt"])
        .env("CODEX_HOME", &home)
        .env("HOME", &home)
        .env("HERMES_TEST_KEY", CLIENT_KEY)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL");
    let (ok, out) = run(cmd, &work);
    let seen = requests(&hermes);
    let context = format!("codex output:\n{out}\n--- requests ---\n{}\n--- hermes log ---\n{}", seen.join("\n"), hermes.log());
    assert!(ok, "codex exec failed: {context}");
    let proof = std::fs::read_to_string(work.join("proof.txt")).unwrap_or_else(|_| panic!("the tool call did not run: {context}"));
    assert_eq!(proof.trim(), "hermes-was-here");
    assert!(out.contains("Done:"), "codex shows the model's last answer: {context}");
    assert!(seen.iter().filter(|r| r.starts_with("POST /v1/responses status=200")).count() >= 2, "{context}");
    assert!(seen.iter().all(|r| r.contains("status=200")), "every request Codex sent was served: {context}");
    // The tool's result reached the model as a tool message.
    let calls: Vec<serde_json::Value> = agent.calls().iter().map(|c| c.json()).collect();
    assert!(calls.iter().any(|c| c["messages"].as_array().unwrap().iter().any(|m| m["role"] == "tool")), "{context}");
    println!("codex requests:\n{}", seen.join("\n"));
}

#[test]
fn claude_code_completes_a_task_with_a_tool_call_through_hermes() {
    let claude = npm_bin("claude");
    let agent = MockUpstream::start("agent", Mode::Agent);
    let hermes = gateway(&agent);
    let home = scratch_dir("claude-home");
    let work = scratch_dir("claude-work");
    let mut cmd = Command::new(claude);
    cmd.args(["-p", "Write hermes-was-here into proof.txt", "--allowedTools", "Bash", "--output-format", "json"])
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", hermes.url())
        .env("ANTHROPIC_API_KEY", CLIENT_KEY)
        .env("ANTHROPIC_MODEL", "auto")
        .env("ANTHROPIC_SMALL_FAST_MODEL", "auto")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env_remove("ANTHROPIC_AUTH_TOKEN");
    let (ok, out) = run(cmd, &work);
    let seen = requests(&hermes);
    let context = format!("claude output:\n{out}\n--- requests ---\n{}\n--- hermes log ---\n{}", seen.join("\n"), hermes.log());
    assert!(ok, "claude -p failed: {context}");
    let proof = std::fs::read_to_string(work.join("proof.txt")).unwrap_or_else(|_| panic!("the tool call did not run: {context}"));
    assert_eq!(proof.trim(), "hermes-was-here");
    assert!(out.contains("Done:"), "claude prints the model's last answer: {context}");
    assert!(seen.iter().filter(|r| r.starts_with("POST /v1/messages status=200")).count() >= 2, "{context}");
    assert!(seen.iter().all(|r| r.contains("status=200")), "every request Claude Code sent was served: {context}");
    println!("claude requests:\n{}", seen.join("\n"));
}
