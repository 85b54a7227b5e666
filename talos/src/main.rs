//! The `talos` agent: run beside Ollama, point Hermes's `local` backend at it.

use hermes::state::config::EnvSource;
mod agent;

use agent::{serve, TalosConfig};
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("talos: the agent beside Ollama that Hermes's `local` backends talk to.\n\nEnvironment (also read from ./.env): OLLAMA_HOST (http://localhost:11434), TALOS_PORT (8001),\nTALOS_BIND (0.0.0.0), DEFAULT_MODEL (llama3.1:8b), CODE_MODEL (qwen2.5-coder:7b), TALOS_TOKEN (optional bearer token).\n\nEndpoints: GET /health, GET /models, GET /v1/models, POST /execute, POST /v1/chat/completions.");
        return ExitCode::SUCCESS;
    }
    let config = match EnvSource::load(None).and_then(|env| TalosConfig::from_env(&env)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("talos: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("talos: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("talos: {e}");
            ExitCode::FAILURE
        }
    }
}
