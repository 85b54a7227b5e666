//! `policies/`: routing policy and prices. The shipped files are also the built-in defaults,
//! so a missing folder behaves exactly like an untouched one.

use super::{read_optional, ConfigError};
use crate::decide::classify::model::Model;
use crate::decide::classify::Vocabulary;
use crate::state::learn::implicit::ImplicitPolicy;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_PRICES: &str = include_str!("../../../policies/prices.toml");
const DEFAULT_ROUTING: &str = include_str!("../../../policies/routing.toml");
const DEFAULT_CLASSIFY: &str = include_str!("../../../policies/classify.toml");
/// The fitted classifier `hermes classifier train` writes, read from the policies folder.
pub const CLASSIFIER_FILE: &str = "classifier.bin";

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    #[serde(rename = "input")]
    pub input_per_mtok: f64,
    #[serde(rename = "output")]
    pub output_per_mtok: f64,
    /// Input tokens read from the provider's prompt cache; priced as input when not given.
    #[serde(rename = "cache_read", default)]
    pub cache_read_per_mtok: Option<f64>,
    /// Input tokens written to the prompt cache (Anthropic charges extra); as input when not given.
    #[serde(rename = "cache_write", default)]
    pub cache_write_per_mtok: Option<f64>,
}

impl ModelPrice {
    pub const FREE: ModelPrice = ModelPrice { input_per_mtok: 0.0, output_per_mtok: 0.0, cache_read_per_mtok: None, cache_write_per_mtok: None };

    /// An estimate, before the answer: every input token at the input price.
    pub fn cost_cents(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.input_per_mtok + completion_tokens as f64 * self.output_per_mtok) / 1e6 * 100.0
    }

    /// What an answer cost: cache reads and writes at their own prices.
    pub fn cost(&self, u: &crate::backends::sse::Usage) -> f64 {
        let uncached = u.prompt_tokens.saturating_sub(u.cached_tokens + u.cache_write_tokens) as f64;
        let read = u.cached_tokens as f64 * self.cache_read_per_mtok.unwrap_or(self.input_per_mtok);
        let write = u.cache_write_tokens as f64 * self.cache_write_per_mtok.unwrap_or(self.input_per_mtok);
        (uncached * self.input_per_mtok + read + write + u.completion_tokens as f64 * self.output_per_mtok) / 1e6 * 100.0
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PricesFile {
    #[serde(default)]
    models: HashMap<String, ModelPrice>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingFile {
    failover: FailoverFile,
    cache: CachePolicy,
    shadow: Option<ShadowPolicy>,
    implicit_feedback: Option<ImplicitPolicy>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePolicy {
    pub enabled: bool,
    pub ttl_seconds: u64,
    pub max_entries: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowPolicy {
    pub backend: String,
    pub share: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverFile {
    retry_on_status: Vec<u16>,
    backoff_base_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Policies {
    prices: HashMap<String, ModelPrice>,
    pub retry_on_status: Vec<u16>,
    pub backoff_base: Duration,
    pub cache: CachePolicy,
    pub shadow: Option<ShadowPolicy>,
    /// What counts as a complaint about the last answer; absent = no implicit feedback.
    pub implicit_feedback: Option<ImplicitPolicy>,
    pub vocabulary: Vocabulary,
    /// `classifier.bin` from `hermes classifier train`; without it the shipped model is used.
    pub classifier: Option<Arc<Model>>,
}

impl Policies {
    /// `required`: the folder was named on the command line, so it must exist.
    pub fn load(dir: &Path, required: bool) -> Result<Policies, ConfigError> {
        if required && !dir.is_dir() {
            return Err(ConfigError::new("--policies", format!("{} is not a folder", dir.display())));
        }
        let prices_path = dir.join("prices.toml");
        let routing_path = dir.join("routing.toml");
        let classify_path = dir.join("classify.toml");
        let prices = read_optional(&prices_path, false)?;
        let routing = read_optional(&routing_path, false)?;
        let classify = read_optional(&classify_path, false)?;
        let mut policies = Policies::parse(
            (&prices_path, prices.as_deref().unwrap_or(DEFAULT_PRICES)),
            (&routing_path, routing.as_deref().unwrap_or(DEFAULT_ROUTING)),
            (&classify_path, classify.as_deref().unwrap_or(DEFAULT_CLASSIFY)),
        )?;
        let model_path = dir.join(CLASSIFIER_FILE);
        match std::fs::read(&model_path) {
            Ok(bytes) => {
                let model = Model::from_bytes(&bytes).map_err(|e| ConfigError::new(model_path.display().to_string(), e))?;
                policies.classifier = Some(Arc::new(model));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ConfigError::new(model_path.display().to_string(), e.to_string())),
        }
        Ok(policies)
    }

    pub fn builtin() -> Policies {
        #[allow(clippy::expect_used)] // the shipped files are parsed by a test
        Policies::parse(
            (Path::new("prices.toml"), DEFAULT_PRICES),
            (Path::new("routing.toml"), DEFAULT_ROUTING),
            (Path::new("classify.toml"), DEFAULT_CLASSIFY),
        )
        .expect("built-in policies parse")
    }

    fn parse(prices: (&Path, &str), routing: (&Path, &str), classify: (&Path, &str)) -> Result<Policies, ConfigError> {
        let bad = |path: &Path, e: toml::de::Error| ConfigError::new(path.display().to_string(), e.message().to_string());
        let p: PricesFile = toml::from_str(prices.1).map_err(|e| bad(prices.0, e))?;
        let r: RoutingFile = toml::from_str(routing.1).map_err(|e| bad(routing.0, e))?;
        let vocabulary = crate::decide::classify::parse_vocabulary(classify.1).map_err(|e| ConfigError::new(classify.0.display().to_string(), e))?;
        if let Some(i) = r.implicit_feedback.as_ref().filter(|i| !(1..=5).contains(&i.rating)) {
            return Err(ConfigError::new(routing.0.display().to_string(), format!("implicit_feedback rating {} is outside 1..5", i.rating)));
        }
        if let Some(s) = r.shadow.as_ref().filter(|s| !(0.0..=1.0).contains(&s.share)) {
            return Err(ConfigError::new(routing.0.display().to_string(), format!("shadow share {} is outside 0..1", s.share)));
        }
        for (model, price) in &p.models {
            if price.input_per_mtok < 0.0 || price.output_per_mtok < 0.0 {
                return Err(ConfigError::new(prices.0.display().to_string(), format!("negative price for {model}")));
            }
        }
        Ok(Policies {
            prices: p.models,
            retry_on_status: r.failover.retry_on_status,
            backoff_base: Duration::from_millis(r.failover.backoff_base_ms),
            cache: r.cache,
            shadow: r.shadow,
            implicit_feedback: r.implicit_feedback,
            vocabulary,
            classifier: None,
        })
    }

    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        self.prices.get(model).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policies_parse_and_price_models() {
        let p = Policies::builtin();
        let gpt4o = p.price("gpt-4o").unwrap();
        assert_eq!(gpt4o.input_per_mtok, 2.5);
        // 1M in + 1M out on gpt-4o = $12.50
        assert!((gpt4o.cost_cents(1_000_000, 1_000_000) - 1250.0).abs() < 1e-9);
        assert!(p.retry_on_status.contains(&503));
        assert!(!p.retry_on_status.contains(&400));
    }

    #[test]
    fn a_bad_policy_file_names_the_file() {
        let e = Policies::parse((Path::new("x/prices.toml"), "[models.a]\ninput = 'x'"), (Path::new("r"), DEFAULT_ROUTING), (Path::new("c"), DEFAULT_CLASSIFY))
            .unwrap_err();
        assert!(e.to_string().starts_with("x/prices.toml:"), "{e}");
    }
}
