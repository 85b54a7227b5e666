//! The routing brain's settings from the environment (the spec's selection, cost, quality, speed,
//! load-balancing and job-type variables).

use super::{ConfigError, EnvSource};
use crate::decide::classify::JobType;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criteria {
    CostFirst,
    QualityFirst,
    SpeedFirst,
}

impl Criteria {
    pub fn parse(s: &str) -> Option<Criteria> {
        match s.trim() {
            "cost_first" => Some(Criteria::CostFirst),
            "quality_first" => Some(Criteria::QualityFirst),
            "speed_first" => Some(Criteria::SpeedFirst),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Criteria::CostFirst => "cost_first",
            Criteria::QualityFirst => "quality_first",
            Criteria::SpeedFirst => "speed_first",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancing {
    RoundRobin,
    LeastLoaded,
    Weighted,
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub criteria: Criteria,
    pub max_cost_per_job_cents: f64,
    pub prefer_free: bool,
    pub prefer_premium: bool,
    pub min_quality: f64,
    /// HERMES_MAX_RESPONSE_TIME_SECONDS: backends that typically take longer go last, and no
    /// request waits longer than this for its answer (its first token when streaming).
    pub max_response_time: Option<Duration>,
    pub cost_weight: f64,
    pub quality_weight: f64,
    pub speed_weight: f64,
    /// HERMES_JOB_TYPE_ROUTING: a backend that takes the first try for a job type.
    pub job_type_backends: HashMap<JobType, String>,
    pub balancing: Option<Balancing>,
    pub backend_weights: HashMap<String, f64>,
    /// Gradual migration: the share of eligible traffic a backend gets first (0..1).
    pub traffic_shares: HashMap<String, f64>,
    /// Requests per minute per client key (per address when the gateway is open); None = no limit.
    pub client_rate_limit: Option<u32>,
}

fn pairs(env: &EnvSource, var: &str) -> Result<HashMap<String, f64>, ConfigError> {
    env.list(var)
        .into_iter()
        .map(|item| {
            let (name, value) = item.split_once(':').ok_or_else(|| ConfigError::new(var, format!("'{item}' is not name:number")))?;
            let v: f64 = value.trim().parse().map_err(|_| ConfigError::new(var, format!("'{value}' is not a number")))?;
            if !v.is_finite() || v < 0.0 {
                return Err(ConfigError::new(var, format!("'{value}' must be zero or more")));
            }
            Ok((name.trim().to_string(), v))
        })
        .collect()
}

impl RoutingConfig {
    pub fn from_env(env: &EnvSource) -> Result<RoutingConfig, ConfigError> {
        let var = "HERMES_DEFAULT_SELECTION_CRITERIA";
        let criteria = match env.get(var) {
            None => Criteria::CostFirst,
            Some(v) => Criteria::parse(v).ok_or_else(|| ConfigError::new(var, format!("'{v}' is not cost_first, quality_first or speed_first")))?,
        };
        let mut job_type_backends = HashMap::new();
        if env.bool_or("HERMES_JOB_TYPE_ROUTING", false)? {
            for (var, job) in [
                ("HERMES_CODE_JOBS_BACKEND", JobType::CodeGeneration),
                ("HERMES_REASONING_JOBS_BACKEND", JobType::Reasoning),
                ("HERMES_CREATIVE_JOBS_BACKEND", JobType::ContentCreation),
                ("HERMES_ANALYSIS_JOBS_BACKEND", JobType::Analysis),
                ("HERMES_RESEARCH_JOBS_BACKEND", JobType::Research),
                ("HERMES_GENERAL_JOBS_BACKEND", JobType::General),
            ] {
                if let Some(b) = env.get(var) {
                    job_type_backends.insert(job, b.to_string());
                }
            }
        }
        let balancing = if env.bool_or("HERMES_LOAD_BALANCING_ENABLED", false)? {
            let var = "HERMES_LOAD_BALANCING_STRATEGY";
            // The spec's .env lists every strategy; the first one is the one in use.
            let first = env.list(var).into_iter().next().unwrap_or_else(|| "round_robin".into());
            Some(match first.as_str() {
                "round_robin" => Balancing::RoundRobin,
                "least_loaded" => Balancing::LeastLoaded,
                "weighted" => Balancing::Weighted,
                other => return Err(ConfigError::new(var, format!("'{other}' is not round_robin, least_loaded or weighted"))),
            })
        } else {
            None
        };
        let traffic_shares = pairs(env, "HERMES_TRAFFIC_SHARES")?;
        if let Some((name, share)) = traffic_shares.iter().find(|(_, s)| **s > 1.0) {
            return Err(ConfigError::new("HERMES_TRAFFIC_SHARES", format!("{name}:{share} is over 1 (use 0.1 for 10%)")));
        }
        Ok(RoutingConfig {
            criteria,
            max_cost_per_job_cents: env.number_or("HERMES_MAX_COST_PER_JOB_CENTS", 100.0)?,
            prefer_free: env.bool_or("HERMES_PREFER_FREE_MODELS", false)?,
            prefer_premium: env.bool_or("HERMES_PREFER_PREMIUM_MODELS", false)?,
            min_quality: env.fraction_or("HERMES_MIN_QUALITY_SCORE", 0.0)?,
            max_response_time: match env.seconds("HERMES_MAX_RESPONSE_TIME_SECONDS")? {
                Some(d) if d.is_zero() => {
                    return Err(ConfigError::new("HERMES_MAX_RESPONSE_TIME_SECONDS", "0 leaves no time to answer; unset it for no limit"))
                }
                other => other,
            },
            cost_weight: env.number_or("HERMES_COST_PERFORMANCE_WEIGHT", 0.7)?,
            quality_weight: env.number_or("HERMES_QUALITY_PERFORMANCE_WEIGHT", 0.8)?,
            speed_weight: env.number_or("HERMES_SPEED_PERFORMANCE_WEIGHT", 0.6)?,
            job_type_backends,
            balancing,
            backend_weights: pairs(env, "HERMES_BACKEND_WEIGHTS")?,
            traffic_shares,
            client_rate_limit: env.number("HERMES_CLIENT_RATE_LIMIT")?,
        })
    }

    /// Every backend name these settings mention, with the variable that names it.
    pub fn named_backends(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<(&'static str, &str)> = self.job_type_backends.values().map(|b| ("HERMES_JOB_TYPE_ROUTING", b.as_str())).collect();
        out.extend(self.backend_weights.keys().map(|b| ("HERMES_BACKEND_WEIGHTS", b.as_str())));
        out.extend(self.traffic_shares.keys().map(|b| ("HERMES_TRAFFIC_SHARES", b.as_str())));
        out
    }
}
