//! The raw variables: `.env` (spec format: KEY=value, quotes, comments) under the real environment.

use super::ConfigError;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

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
            let iter = dotenvy::from_path_iter(&path)
                .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
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
        self.get(key)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
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
            Some(v) => v
                .parse::<T>()
                .map(Some)
                .map_err(|_| ConfigError::new(key, format!("'{v}' is not a valid number"))),
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
