//! One backend's settings, from `BACKEND_<NAME>_*`.

use super::{ConfigError, EnvSource, ModelPrice};
use std::fmt;
use std::time::Duration;

/// The wire a backend speaks. Types that speak OpenAI's own API share one adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A Talos agent (OpenAI-shaped `/v1/chat/completions` beside Ollama).
    Local,
    /// Ollama's native API directly.
    Ollama,
    /// Anthropic's native Messages API.
    Anthropic,
    OpenRouter,
    OpenAi,
    /// Any OpenAI-compatible server: vLLM, llama.cpp, TGI, LM Studio.
    Custom,
    /// Answers generated inside Hermes, for demos and benches.
    Sim,
}

impl BackendKind {
    fn parse(var: &str, value: &str) -> Result<BackendKind, ConfigError> {
        Ok(match value.to_ascii_lowercase().as_str() {
            "local" | "talos" => BackendKind::Local,
            "openrouter" => BackendKind::OpenRouter,
            "openai" => BackendKind::OpenAi,
            "custom" => BackendKind::Custom,
            "sim" => BackendKind::Sim,
            "ollama" => BackendKind::Ollama,
            "anthropic" => BackendKind::Anthropic,
            _ => {
                return Err(ConfigError::new(
                    var,
                    format!("unknown backend type '{value}' (expected local, ollama, openrouter, openai, custom, anthropic or sim)"),
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Ollama => "ollama",
            BackendKind::Anthropic => "anthropic",
            BackendKind::OpenRouter => "openrouter",
            BackendKind::OpenAi => "openai",
            BackendKind::Custom => "custom",
            BackendKind::Sim => "sim",
        }
    }

    /// Local backends run on the user's own hardware and cost nothing per token.
    pub fn is_paid(self) -> bool {
        !self.is_local()
    }

    /// Runs on the user's own machine: free, private.
    pub fn is_local(self) -> bool {
        matches!(self, BackendKind::Local | BackendKind::Ollama)
    }

    fn public_base_url(self) -> Option<&'static str> {
        match self {
            BackendKind::OpenRouter => Some("https://openrouter.ai/api/v1"),
            BackendKind::OpenAi => Some("https://api.openai.com/v1"),
            BackendKind::Anthropic => Some("https://api.anthropic.com/v1"),
            _ => None,
        }
    }

    /// Below HOST:PORT, where the API lives: Ollama's native API is at the root.
    fn api_root(self) -> &'static str {
        if self == BackendKind::Ollama {
            ""
        } else {
            "/v1"
        }
    }
}

/// A key that must never reach logs, analytics or clients: its Debug form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time that depends only on the lengths, so a key cannot be guessed byte by byte.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a `sim` backend behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    pub latency: Duration,
    /// 0 means all tokens at once.
    pub tokens_per_second: f64,
    pub failure_rate: f64,
    pub output_tokens: u32,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub name: String,
    pub kind: BackendKind,
    /// API base without a trailing slash, e.g. `http://127.0.0.1:9000/v1`; `sim://NAME` for sims.
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub models: Vec<String>,
    pub timeout: Duration,
    pub rate_limit_per_minute: Option<u32>,
    pub quality_score: f64,
    pub speed_score: f64,
    pub price: ModelPrice,
    pub capabilities: Vec<String>,
    /// Largest prompt plus answer in tokens, when known.
    pub context_length: Option<u64>,
    pub sim: Option<SimSettings>,
}

impl BackendConfig {
    pub fn from_env(env: &EnvSource, name: &str) -> Result<BackendConfig, ConfigError> {
        let p = format!("BACKEND_{}_", name.to_ascii_uppercase());
        let var = |suffix: &str| format!("{p}{suffix}");
        let kind_var = var("TYPE");
        let kind = BackendKind::parse(&kind_var, env.get(&kind_var).ok_or_else(|| ConfigError::new(&kind_var, format!("backend '{name}' has no type")))?)?;
        let base_url = match kind {
            BackendKind::Sim => format!("sim://{name}"),
            _ => base_url(env, &p, name, kind)?,
        };
        // The spec's examples also write BACKEND_X_KEY and BACKEND_X_MODEL.
        let api_key = env.get(&var("API_KEY")).or_else(|| env.get(&var("KEY"))).map(Secret::new);
        let mut models = env.list(&var("MODELS"));
        if models.is_empty() {
            models = env.list(&var("MODEL"));
        }
        let local = kind.is_local();
        let (quality_default, speed_default) = if local { (0.8, 0.6) } else { (0.95, 0.8) };
        let price = ModelPrice {
            input_per_mtok: non_negative(env, &var("PRICE_INPUT_PER_MTOK"))?,
            output_per_mtok: non_negative(env, &var("PRICE_OUTPUT_PER_MTOK"))?,
            ..ModelPrice::FREE
        };
        let sim = match kind {
            BackendKind::Sim => Some(SimSettings {
                latency: Duration::from_millis(env.number_or(&var("LATENCY_MS"), 50u64)?),
                tokens_per_second: env.number_or(&var("TOKENS_PER_SECOND"), 200.0)?,
                failure_rate: env.fraction_or(&var("FAILURE_RATE"), 0.0)?,
                output_tokens: env.number_or(&var("OUTPUT_TOKENS"), 24u32)?,
                seed: env.number(&var("SEED"))?,
            }),
            _ => None,
        };
        if kind == BackendKind::Sim && models.is_empty() {
            models.push(format!("sim-{name}"));
        }
        let timeout = env.seconds_or(&var("TIMEOUT"), if local { 300.0 } else { 120.0 })?;
        if timeout.is_zero() {
            return Err(ConfigError::new(var("TIMEOUT"), "must be more than 0 seconds"));
        }
        Ok(BackendConfig {
            name: name.to_string(),
            kind,
            base_url,
            api_key,
            models,
            timeout,
            rate_limit_per_minute: env.number(&var("RATE_LIMIT"))?,
            quality_score: env.fraction_or(&var("QUALITY_SCORE"), quality_default)?,
            speed_score: env.fraction_or(&var("SPEED_SCORE"), speed_default)?,
            price,
            capabilities: env.list(&var("CAPABILITIES")),
            context_length: env.number(&var("CONTEXT_LENGTH"))?,
            sim,
        })
    }
}

fn non_negative(env: &EnvSource, key: &str) -> Result<f64, ConfigError> {
    let v: f64 = env.number_or(key, 0.0)?;
    if !v.is_finite() || v < 0.0 {
        return Err(ConfigError::new(key, format!("{v} is not a price")));
    }
    Ok(v)
}

/// BASE_URL wins; else HOST (scheme optional, http when bare) and PORT, with the OpenAI `/v1` root.
fn base_url(env: &EnvSource, p: &str, name: &str, kind: BackendKind) -> Result<String, ConfigError> {
    if let Some(url) = env.get(&format!("{p}BASE_URL")) {
        return check_url(&format!("{p}BASE_URL"), url);
    }
    let host_var = format!("{p}HOST");
    let Some(host) = env.get(&host_var) else {
        return kind
            .public_base_url()
            .map(str::to_string)
            .ok_or_else(|| ConfigError::new(&host_var, format!("backend '{name}' needs {host_var} (or {p}BASE_URL)")));
    };
    let with_scheme = if host.contains("://") { host.to_string() } else { format!("http://{host}") };
    let port: Option<u16> = env.number(&format!("{p}PORT"))?;
    let root = with_scheme.trim_end_matches('/');
    let api = kind.api_root();
    let url = match port {
        Some(port) => format!("{root}:{port}{api}"),
        None => format!("{root}{api}"),
    };
    check_url(&host_var, &url)
}

fn check_url(var: &str, url: &str) -> Result<String, ConfigError> {
    match crate::backends::upstream::Target::parse(url) {
        Ok(_) => Ok(url.trim_end_matches('/').to_string()),
        Err(_) => Err(ConfigError::new(var, format!("'{url}' is not an http(s) URL"))),
    }
}

/// `hermes serve --demo`: a free local-like backend, a cheap one and a premium one, all simulated.
/// They are written as environment defaults, so `BACKEND_PREMIUM_SIM_LATENCY_MS=2000` and the like
/// still tune them.
pub const DEMO_ENV: &[(&str, &str)] = &[
    ("BACKEND_LOCAL_SIM_TYPE", "sim"),
    ("BACKEND_LOCAL_SIM_MODELS", "sim-local"),
    ("BACKEND_LOCAL_SIM_LATENCY_MS", "150"),
    ("BACKEND_LOCAL_SIM_TOKENS_PER_SECOND", "40"),
    ("BACKEND_LOCAL_SIM_FAILURE_RATE", "0.1"),
    ("BACKEND_LOCAL_SIM_QUALITY_SCORE", "0.8"),
    ("BACKEND_LOCAL_SIM_SPEED_SCORE", "0.6"),
    ("BACKEND_BUDGET_SIM_TYPE", "sim"),
    ("BACKEND_BUDGET_SIM_MODELS", "sim-budget"),
    ("BACKEND_BUDGET_SIM_LATENCY_MS", "80"),
    ("BACKEND_BUDGET_SIM_TOKENS_PER_SECOND", "120"),
    ("BACKEND_BUDGET_SIM_FAILURE_RATE", "0.02"),
    ("BACKEND_BUDGET_SIM_PRICE_INPUT_PER_MTOK", "0.15"),
    ("BACKEND_BUDGET_SIM_PRICE_OUTPUT_PER_MTOK", "0.60"),
    ("BACKEND_BUDGET_SIM_QUALITY_SCORE", "0.85"),
    ("BACKEND_BUDGET_SIM_SPEED_SCORE", "0.85"),
    ("BACKEND_PREMIUM_SIM_TYPE", "sim"),
    ("BACKEND_PREMIUM_SIM_MODELS", "sim-premium"),
    ("BACKEND_PREMIUM_SIM_LATENCY_MS", "250"),
    ("BACKEND_PREMIUM_SIM_TOKENS_PER_SECOND", "80"),
    ("BACKEND_PREMIUM_SIM_FAILURE_RATE", "0"),
    ("BACKEND_PREMIUM_SIM_PRICE_INPUT_PER_MTOK", "2.50"),
    ("BACKEND_PREMIUM_SIM_PRICE_OUTPUT_PER_MTOK", "10.00"),
    ("BACKEND_PREMIUM_SIM_QUALITY_SCORE", "0.95"),
    ("BACKEND_PREMIUM_SIM_SPEED_SCORE", "0.8"),
];
pub const DEMO_BACKENDS: &[&str] = &["local_sim", "budget_sim", "premium_sim"];
