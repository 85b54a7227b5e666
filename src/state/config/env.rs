//! The raw variables: `.env` (spec format: KEY=value, quotes, comments) under the real environment.

use super::ConfigError;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Every `HERMES_*` variable the gateway reads. A variable with the prefix that is not here is a
/// typo or a setting of another version: it is named at start-up and fails `check-config`.
pub const KNOWN: &[&str] = &[
    "HERMES_ADMIN_KEY",
    "HERMES_ANALYSIS_JOBS_BACKEND",
    "HERMES_ANALYTICS_MEMORY_MB",
    "HERMES_ANALYTICS_QUEUE",
    "HERMES_API_KEYS",
    "HERMES_AUTO_RECOVERY_ENABLED",
    "HERMES_BACKENDS_ENABLED",
    "HERMES_BACKEND_WEIGHTS",
    "HERMES_BODY_READ_TIMEOUT_SECONDS",
    "HERMES_CLIENT_RATE_LIMIT",
    "HERMES_CODE_JOBS_BACKEND",
    "HERMES_COST_PERFORMANCE_WEIGHT",
    "HERMES_CREATIVE_JOBS_BACKEND",
    "HERMES_DB_PATH",
    "HERMES_DEFAULT_SELECTION_CRITERIA",
    "HERMES_FAILOVER_DELAY_SECONDS",
    "HERMES_FAILOVER_ENABLED",
    "HERMES_FAILOVER_STRATEGY",
    "HERMES_FALLBACK_BACKEND",
    "HERMES_GENERAL_JOBS_BACKEND",
    "HERMES_HEALTH_CHECK_ENABLED",
    "HERMES_HEALTH_CHECK_INTERVAL",
    "HERMES_IMPLICIT_FEEDBACK",
    "HERMES_JOB_TYPE_ROUTING",
    "HERMES_LISTEN",
    "HERMES_LOAD_BALANCING_ENABLED",
    "HERMES_LOAD_BALANCING_STRATEGY",
    "HERMES_LOG_CONTENT",
    "HERMES_MAX_ANSWER_BYTES",
    "HERMES_MAX_BODY_BYTES",
    "HERMES_MAX_COST_PER_JOB_CENTS",
    "HERMES_MAX_FAILOVER_ATTEMPTS",
    "HERMES_MAX_RESPONSE_TIME_SECONDS",
    "HERMES_MIN_QUALITY_SCORE",
    "HERMES_PREFER_FREE_MODELS",
    "HERMES_PREFER_PREMIUM_MODELS",
    "HERMES_PRIMARY_BACKEND",
    "HERMES_QUALITY_PERFORMANCE_WEIGHT",
    "HERMES_RANDOM_SEED",
    "HERMES_REASONING_JOBS_BACKEND",
    "HERMES_REDIS_FAIL_MODE",
    "HERMES_REDIS_TIMEOUT_MS",
    "HERMES_REDIS_URL",
    "HERMES_RESEARCH_JOBS_BACKEND",
    "HERMES_SEND_TIMEOUT_SECONDS",
    "HERMES_RESPONSES_RETENTION_HOURS",
    "HERMES_SHUTDOWN_GRACE_SECONDS",
    "HERMES_SPEED_PERFORMANCE_WEIGHT",
    "HERMES_TLS_CERT",
    "HERMES_TLS_KEY",
    "HERMES_TRAFFIC_SHARES",
    "HERMES_UNHEALTHY_THRESHOLD",
];

/// What may follow `BACKEND_<NAME>_`.
pub const BACKEND_FIELDS: &[&str] = &[
    "API_KEY",
    "BASE_URL",
    "CAPABILITIES",
    "CONTEXT_LENGTH",
    "ENABLED",
    "FAILURE_RATE",
    "HOST",
    "KEY",
    "LATENCY_MS",
    "MODEL",
    "MODELS",
    "OUTPUT_TOKENS",
    "PORT",
    "PRICE_INPUT_PER_MTOK",
    "PRICE_OUTPUT_PER_MTOK",
    "QUALITY_SCORE",
    "RATE_LIMIT",
    "SEED",
    "SPEED_SCORE",
    "TIMEOUT",
    "TOKENS_PER_SECOND",
    "TYPE",
];

#[derive(Debug, Clone, Default)]
pub struct EnvSource {
    vars: HashMap<String, String>,
}

impl EnvSource {
    /// `.env` from `file` (or `./.env` when present), then the process environment on top.
    pub fn load(file: Option<&Path>) -> Result<EnvSource, ConfigError> {
        let mut vars = HashMap::new();
        let (path, required) = match file {
            Some(p) => (p.to_path_buf(), true),
            None => (std::path::PathBuf::from(".env"), false),
        };
        if path.exists() || required {
            let iter = dotenvy::from_path_iter(&path).map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
            for item in iter {
                let (k, v) = item.map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
                vars.insert(k, v);
            }
        }
        vars.extend(std::env::vars());
        Ok(EnvSource { vars })
    }

    pub fn from_pairs<I: IntoIterator<Item = (K, V)>, K: Into<String>, V: Into<String>>(pairs: I) -> EnvSource {
        EnvSource { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// `HERMES_*` and `BACKEND_*` variables that Hermes does not read, each with the nearest
    /// name it does read when one is close.
    pub fn unknown(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .vars
            .keys()
            .filter_map(|k| {
                let guess = if k.starts_with("HERMES_") {
                    if KNOWN.contains(&k.as_str()) {
                        return None;
                    }
                    KNOWN.iter().map(|n| n.to_string()).min_by_key(|n| strsim::damerau_levenshtein(n, k))
                } else if let Some(rest) = k.strip_prefix("BACKEND_") {
                    if BACKEND_FIELDS.iter().any(|f| rest.len() > f.len() + 1 && rest.ends_with(f) && rest[..rest.len() - f.len()].ends_with('_')) {
                        return None;
                    }
                    let name = rest.split('_').next().unwrap_or("");
                    BACKEND_FIELDS.iter().map(|f| format!("BACKEND_{name}_{f}")).min_by_key(|n| strsim::damerau_levenshtein(n, k))
                } else {
                    return None;
                };
                let near = guess.filter(|g| strsim::damerau_levenshtein(g, k) <= 3);
                Some(match near {
                    Some(g) => format!("{k} is not a Hermes setting (did you mean {g}?)"),
                    None => format!("{k} is not a Hermes setting"),
                })
            })
            .collect();
        out.sort();
        out
    }

    /// These values where nothing is set.
    pub fn with_defaults(&self, defaults: &[(&str, &str)]) -> EnvSource {
        let mut vars = self.vars.clone();
        for (k, v) in defaults {
            vars.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
        EnvSource { vars }
    }

    /// The value, with empty strings counting as unset.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A comma list, blanks dropped.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError::new(key, format!("'{other}' is not true or false"))),
        }
    }

    pub fn number<T: FromStr>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| ConfigError::new(key, format!("'{v}' is not a valid number"))),
        }
    }

    pub fn number_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError> {
        Ok(self.number(key)?.unwrap_or(default))
    }

    /// A fraction in 0..=1 (scores, rates).
    pub fn fraction_or(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        let v: f64 = self.number_or(key, default)?;
        if !(0.0..=1.0).contains(&v) {
            return Err(ConfigError::new(key, format!("{v} is outside 0..1")));
        }
        Ok(v)
    }

    /// Seconds, fractions allowed, never negative.
    pub fn seconds_or(&self, key: &str, default: f64) -> Result<Duration, ConfigError> {
        Ok(self.seconds(key)?.unwrap_or(Duration::from_secs_f64(default)))
    }

    pub fn seconds(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = self.number::<f64>(key)? else { return Ok(None) };
        Duration::try_from_secs_f64(v).map(Some).map_err(|_| ConfigError::new(key, format!("{v} is not a duration in seconds")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_named_with_the_nearest_setting() {
        let env = EnvSource::from_pairs([
            ("HERMES_FAILOVER_ENABLE", "true"),
            ("HERMES_FAILOVER_ENABLED", "true"),
            ("BACKEND_LOCAL_BASEURL", "http://x"),
            ("BACKEND_MY_BOX_BASE_URL", "http://x"),
            ("HOME", "/root"),
        ]);
        assert_eq!(
            env.unknown(),
            [
                "BACKEND_LOCAL_BASEURL is not a Hermes setting (did you mean BACKEND_LOCAL_BASE_URL?)",
                "HERMES_FAILOVER_ENABLE is not a Hermes setting (did you mean HERMES_FAILOVER_ENABLED?)",
            ]
        );
    }

    /// Every `HERMES_*` name the code reads is in KNOWN, so that none is called unknown.
    #[test]
    fn every_variable_the_code_reads_is_known() {
        fn walk(dir: &Path, out: &mut String) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("env.rs") {
                    out.push_str(&std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        let mut src = String::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut src);
        let re = regex::Regex::new(r#""(HERMES_[A-Z0-9_]+)""#).unwrap();
        for c in re.captures_iter(&src) {
            assert!(KNOWN.contains(&&c[1]), "{} is read but not in KNOWN", &c[1]);
        }
    }
}
