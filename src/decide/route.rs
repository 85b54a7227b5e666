//! The routing brain's decision: which backends may answer a request, in which order, and why.
//! Pure: (request, classification, offers, settings, dice) → decision. Tests call it without a network.
//!
//! Filters run in the spec's order (healthy, capable, affordable, private); survivors are ranked
//! by the criterion with the spec's weighted score breaking ties; load balancing shuffles equals;
//! traffic shares, job-type routing, primary/fallback and `x-hermes-backend` pin the first choice.

pub mod retry;

use crate::decide::classify::{Classification, JobType};
use crate::error::{ApiError, Kind};
use crate::state::config::{BackendConfig, Balancing, Criteria, FailoverOrder, ModelPrice, RoutingConfig};
use std::fmt::Write;
use std::time::Duration;

/// One place to try: a backend (by index in the registry) and the model to ask it for.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub backend: usize,
    pub model: String,
    pub estimated_cost_cents: f64,
}

/// A backend as routing sees it right now.
pub struct Offer<'a> {
    pub config: &'a BackendConfig,
    /// Its models now (configured and discovered); empty = takes any model.
    pub models: &'a [String],
    pub available: bool,
    /// Taking no new requests (a migration drained it).
    pub draining: bool,
    /// 0..1: how reliably it has answered (health, later learned success rate).
    pub reliability: f64,
    pub quality: f64,
    /// A Thompson sample of quality: candidates too close to call are ordered by it.
    pub quality_draw: f64,
    pub speed: f64,
    /// Its mean answer time so far, for HERMES_MAX_RESPONSE_TIME_SECONDS.
    pub typical_latency: Option<Duration>,
    pub in_flight: usize,
}

/// What the client asked for, beyond the body.
pub struct Ask<'a> {
    pub model: &'a str,
    pub job: &'a Classification,
    pub criteria: Criteria,
    /// The criterion came from the request (`x-hermes-criteria`): it outranks primary/fallback.
    pub criteria_requested: bool,
    pub budget_cents: f64,
    /// `x-hermes-privacy: local`, or personal data found.
    pub local_only: bool,
    pub pinned: Option<&'a str>,
}

/// Randomness and rotation, from the caller so decisions replay in tests.
pub struct Dice {
    pub roll: f64,
    pub turn: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub candidates: Vec<Candidate>,
    /// A short human account of the choice.
    pub reason: String,
    /// Backends left out, and why.
    pub rejected: Vec<(String, String)>,
    /// 0..1: how clearly the first choice beat the second.
    pub confidence: f64,
}

/// How far apart two backends may be on the criterion and still count as equals: costs in the
/// same 2% band (free is only equal to free), scores in the same 0.02 band. Bands, not a
/// distance between pairs, so that "equal" is transitive and ranking is a total order.
const EQUAL_COST_SHARE: f64 = 0.02;
const EQUAL_SCORE: f64 = 0.02;

pub struct Settings<'a> {
    pub routing: &'a RoutingConfig,
    /// Traffic shares in force: HERMES_TRAFFIC_SHARES, or a migration's.
    pub shares: &'a std::collections::HashMap<String, f64>,
    pub primary: Option<&'a str>,
    pub fallback: Option<&'a str>,
    pub failover: FailoverOrder,
}

fn capable(config: &BackendConfig, job: JobType) -> bool {
    let caps = &config.capabilities;
    caps.is_empty() || caps.iter().any(|c| c == job.as_str() || c == "all") || (job != JobType::CodeGeneration && caps.iter().any(|c| c == "text_generation"))
}

struct Survivor {
    index: usize,
    model: String,
    cost: f64,
    score: f64,
    /// The score with the drawn quality in place of the believed one.
    drawn: f64,
    quality: f64,
    /// A Thompson sample of quality: what ranking reads, so a backend that was unlucky keeps a
    /// chance in proportion to how likely it is to be the better one.
    quality_draw: f64,
    speed: f64,
    /// Typically slower than HERMES_MAX_RESPONSE_TIME_SECONDS.
    slow: bool,
    in_flight: usize,
}

pub fn choose(
    ask: &Ask<'_>,
    offers: &[Offer<'_>],
    settings: &Settings<'_>,
    price: impl Fn(usize, &str) -> ModelPrice,
    dice: &Dice,
) -> Result<Decision, ApiError> {
    let auto = ask.model == "auto";
    let job = ask.job;
    if let Some(pin) = ask.pinned {
        match offers.iter().find(|o| o.config.name == pin) {
            None => return Err(ApiError::bad_request(format!("x-hermes-backend: no enabled backend is named '{pin}'."), None)),
            Some(o) if !auto && !serves(o, ask.model) => {
                return Err(ApiError::bad_request(format!("x-hermes-backend: backend '{pin}' does not serve model `{}`.", ask.model), Some("model")))
            }
            Some(_) => {}
        }
    }
    let mut rejected: Vec<(String, String)> = Vec::new();
    let mut healthy: Vec<Survivor> = Vec::new();
    let mut down: Vec<Survivor> = Vec::new();
    // Healthy backends that serve the model but not the job's capability: `any_available` spares.
    let mut spares: Vec<Survivor> = Vec::new();
    let mut over_budget = false;
    let mut serving = 0;
    for (i, o) in offers.iter().enumerate() {
        let c = o.config;
        if !auto && !serves(o, ask.model) {
            continue;
        }
        serving += 1;
        let model = if auto { o.models.first().cloned().unwrap_or_else(|| "auto".into()) } else { ask.model.to_string() };
        // Hard limits first: nothing, not even `any_available`, sends a request past these.
        let barred = if o.draining {
            Some("drained by a migration".to_string())
        } else if c.context_length.is_some_and(|n| job.prompt_tokens + job.expected_output_tokens > n) {
            Some(format!("context of {} tokens is too small", c.context_length.unwrap_or(0)))
        } else if ask.local_only && !c.kind.is_local() {
            Some("private request stays on local backends".to_string())
        } else {
            None
        };
        if let Some(why) = barred {
            rejected.push((c.name.clone(), why));
            continue;
        }
        let cost = price(i, &model).cost_cents(job.prompt_tokens, job.expected_output_tokens);
        let affordable = !(c.kind.is_paid() && cost > 0.0 && cost > ask.budget_cents);
        let slow = o.typical_latency.zip(settings.routing.max_response_time).is_some_and(|(typical, max)| typical > max);
        let s = Survivor {
            index: i,
            model,
            cost,
            score: 0.0,
            drawn: 0.0,
            quality: o.quality,
            quality_draw: o.quality_draw,
            speed: o.speed,
            slow,
            in_flight: o.in_flight,
        };
        if !capable(c, job.job_type) {
            rejected.push((c.name.clone(), format!("lacks the {} capability", job.job_type.as_str())));
            if affordable && o.available {
                spares.push(s);
            }
            continue;
        }
        if !affordable {
            over_budget = true;
            rejected.push((c.name.clone(), format!("estimated {cost:.4}¢ is over the {:.4}¢ budget", ask.budget_cents)));
            continue;
        }
        if o.available {
            healthy.push(s);
        } else {
            rejected.push((c.name.clone(), "unhealthy".into()));
            down.push(s);
        }
    }
    // When every fit backend is down, try them anyway rather than refuse, unless the request is
    // private: then only a healthy local backend will do.
    let mut pool = if healthy.is_empty() && !ask.local_only { down } else { healthy };
    if pool.is_empty() && settings.failover.any_available {
        pool = std::mem::take(&mut spares);
    }
    if pool.is_empty() {
        return Err(if serving == 0 {
            ApiError::model_not_found(ask.model)
        } else if ask.local_only {
            ApiError::new(
                Kind::NoBackend,
                "This request must stay on a local backend (personal data, x-hermes-privacy: local, or a key with privacy local) and no healthy local backend serves it; it was not sent anywhere.",
            )
        } else if over_budget {
            ApiError::over_budget(ask.budget_cents, &rejected)
        } else {
            ApiError::new(Kind::NoBackend, format!("No backend can take this request: {}.", describe_rejected(&rejected)))
        });
    }

    score(&mut pool, offers, ask, settings);
    let min_quality = settings.routing.min_quality;
    // Thompson sampling over the criterion: the order the draws give. `explored`: the beliefs'
    // own order would have put another backend first.
    let believed_first = pool.iter().min_by(|a, b| rank_order(a, b, ask.criteria, min_quality, false)).map(|s| s.index);
    pool.sort_by(|a, b| rank_order(a, b, ask.criteria, min_quality, true));
    let explored = pool.first().map(|s| s.index) != believed_first;
    if let Some(strategy) = settings.routing.balancing {
        balance(&mut pool, ask.criteria, min_quality, strategy, settings, offers, dice);
    }
    let name = |s: &Survivor| offers[s.index].config.name.as_str();
    let mut pins: Vec<(&str, &'static str)> = Vec::new();
    if !ask.criteria_requested {
        pins.extend(settings.fallback.map(|f| (f, "HERMES_FALLBACK_BACKEND")));
        pins.extend(settings.primary.map(|p| (p, "HERMES_PRIMARY_BACKEND")));
    }
    for (backend, share) in settings.shares {
        if let Some(pos) = pool.iter().position(|s| name(s) == backend) {
            if dice.roll < *share {
                pins.push((backend.as_str(), "its migration traffic share"));
            } else if pos == 0 && pool.len() > 1 {
                pool.swap(0, 1);
            }
        }
    }
    if let Some(b) = settings.routing.job_type_backends.get(&job.job_type) {
        pins.push((b.as_str(), "job-type routing"));
    }
    pins.extend(ask.pinned.map(|p| (p, "x-hermes-backend")));
    let mut pinned_by = None;
    for (backend, by) in pins {
        if let Some(pos) = pool.iter().position(|s| name(s) == backend) {
            let s = pool.remove(pos);
            pool.insert(0, s);
            pinned_by = Some(by);
        }
    }

    let confidence = match (pool.first(), pool.get(1)) {
        (Some(a), Some(b)) => ((a.score - b.score).abs() * 2.0).clamp(0.0, 1.0),
        _ => 1.0,
    };
    let mut reason = format!("{} job, {}: ", job.job_type.as_str(), ask.criteria.as_str());
    for (n, s) in pool.iter().enumerate() {
        let _ = write!(reason, "{}{} (", if n == 0 { "" } else { " > " }, name(s));
        if s.cost == 0.0 {
            reason.push_str("free");
        } else {
            let _ = write!(reason, "~{}¢", Decimals(s.cost, 4));
        }
        let _ = write!(reason, ", quality {}, speed {}, score {})", Decimals(s.quality, 2), Decimals(s.speed, 2), Decimals(s.score, 3));
    }
    if let Some(by) = pinned_by {
        let _ = write!(reason, "; first choice set by {by}");
    } else if explored {
        let _ = write!(reason, "; close scores, order drawn by Thompson sampling");
    }
    let slow: Vec<&str> = pool.iter().filter(|s| s.slow).map(name).collect();
    if let (false, Some(max)) = (slow.is_empty(), settings.routing.max_response_time) {
        let _ = write!(reason, "; typically slower than {}s, so last: {}", max.as_secs_f64(), slow.join(", "));
    }
    let order = settings.failover;
    if !order.next_best && pool.len() > 1 {
        // `any_available` alone: after the first choice, whatever is up, in configuration order.
        spares.extend(pool.drain(1..));
        spares.sort_by_key(|s| s.index);
        let _ = write!(reason, "; failover in configuration order");
    }
    if order.any_available && !spares.is_empty() {
        let _ = write!(reason, "; then any available: {}", spares.iter().map(name).collect::<Vec<_>>().join(", "));
        pool.append(&mut spares);
    }
    if !rejected.is_empty() {
        let _ = write!(reason, "; left out: {}", describe_rejected(&rejected));
    }
    Ok(Decision {
        candidates: pool.into_iter().map(|s| Candidate { backend: s.index, model: s.model, estimated_cost_cents: s.cost }).collect(),
        reason,
        rejected,
        confidence,
    })
}

/// A number with a fixed count of decimals, written with integer arithmetic: every request's
/// reason carries a dozen of them, and the formatter's exact float path was a third of routing's
/// time. Halves round away from zero (the formatter rounds them to even; the reason is prose).
struct Decimals(f64, u32);

impl std::fmt::Display for Decimals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Decimals(v, places) = *self;
        let scale = 10u64.pow(places);
        let scaled = (v.abs() * scale as f64).round();
        if !scaled.is_finite() || scaled >= u64::MAX as f64 {
            return write!(f, "{v:.*}", places as usize);
        }
        let scaled = scaled as u64;
        let sign = if v.is_sign_negative() { "-" } else { "" };
        write!(f, "{sign}{}.{:0width$}", scaled / scale, scaled % scale, width = places as usize)
    }
}

fn serves(o: &Offer<'_>, model: &str) -> bool {
    o.models.is_empty() || o.models.iter().any(|m| m == model)
}

fn describe_rejected(rejected: &[(String, String)]) -> String {
    rejected.iter().map(|(b, why)| format!("{b} ({why})")).collect::<Vec<_>>().join(", ")
}

/// The spec's weighted score: quality, speed, cheapness and reliability, weighted by the
/// HERMES_*_PERFORMANCE_WEIGHT settings and shifted towards what this job needs.
fn score(pool: &mut [Survivor], offers: &[Offer<'_>], ask: &Ask<'_>, settings: &Settings<'_>) {
    let r = settings.routing;
    let job = ask.job;
    let (mut wq, mut ws, mut wc, mut wr) = (r.quality_weight, r.speed_weight, r.cost_weight, 0.5);
    if job.quality_need > 0.7 {
        wq *= 2.0;
    }
    if job.speed_need > 0.7 {
        ws *= 2.0;
    }
    if job.cost_sensitivity > 0.7 {
        wc *= 2.0;
    }
    let total = (wq + ws + wc + wr).max(f64::EPSILON);
    (wq, ws, wc, wr) = (wq / total, ws / total, wc / total, wr / total);
    let max_cost = pool.iter().map(|s| s.cost).fold(0.0, f64::max);
    for s in pool.iter_mut() {
        let o = &offers[s.index];
        let cheapness = if max_cost > 0.0 { 1.0 - s.cost / max_cost } else { 1.0 };
        let boost = |quality: f64| {
            let mut b = 1.0;
            if r.prefer_free && o.config.kind.is_local() {
                b *= 1.2;
            }
            if r.prefer_premium && quality > 0.9 {
                b *= 1.1;
            }
            b
        };
        let rest = s.speed * ws + cheapness * wc + o.reliability * wr;
        s.score = (s.quality * wq + rest) * boost(s.quality);
        s.drawn = (o.quality_draw * wq + rest) * boost(o.quality_draw);
    }
}

/// Which band of the criterion a candidate is in (lower is better), and whether it goes last:
/// below HERMES_MIN_QUALITY_SCORE, or typically slower than HERMES_MAX_RESPONSE_TIME_SECONDS.
/// Those that go last go best quality first: when none meets the bar, the nearest to it should
/// answer (and be learned about), not the cheapest.
/// `drawn`: judge quality by the Thompson draw (routing) or by the belief (what it would be).
fn tier(s: &Survivor, criteria: Criteria, min_quality: f64, drawn: bool) -> (bool, i64) {
    let quality = if drawn { s.quality_draw } else { s.quality };
    let band = |v: f64, width: f64| -> i64 { (v / width).floor() as i64 };
    let last = quality < min_quality || s.slow;
    let key = match criteria {
        _ if last => -band(quality, EQUAL_SCORE),
        // Free before everything; then 2%-wide bands of the logarithm of the cost.
        Criteria::CostFirst if s.cost <= 0.0 => i64::MIN,
        Criteria::CostFirst => band(s.cost.ln(), (1.0 + EQUAL_COST_SHARE).ln()),
        Criteria::QualityFirst => -band(quality, EQUAL_SCORE),
        Criteria::SpeedFirst => -band(s.speed, EQUAL_SCORE),
    };
    (last, key)
}

/// Best on the criterion first, equals by weighted score (in bands of `SCORE_BAND`, so that
/// microseconds of measured latency do not reorder twins), then configuration order: a total
/// order whatever the numbers (NaN included), as `sort_by` needs.
fn rank_order(a: &Survivor, b: &Survivor, criteria: Criteria, min_quality: f64, drawn: bool) -> std::cmp::Ordering {
    let score = |s: &Survivor| ((if drawn { s.drawn } else { s.score }) / SCORE_BAND).floor() as i64;
    tier(a, criteria, min_quality, drawn).cmp(&tier(b, criteria, min_quality, drawn)).then_with(|| score(b).cmp(&score(a))).then_with(|| a.index.cmp(&b.index))
}

/// Weighted scores in the same band of this width are equal.
const SCORE_BAND: f64 = 0.005;

/// Among the leaders that tie on the criterion, spread the traffic.
fn balance(pool: &mut [Survivor], criteria: Criteria, min_quality: f64, strategy: Balancing, settings: &Settings<'_>, offers: &[Offer<'_>], dice: &Dice) {
    let Some(first) = pool.first() else { return };
    let lead = tier(first, criteria, min_quality, true);
    let n = pool.iter().take_while(|s| tier(s, criteria, min_quality, true) == lead).count();
    if n < 2 {
        return;
    }
    let group = &mut pool[..n];
    match strategy {
        Balancing::RoundRobin => group.rotate_left((dice.turn % n as u64) as usize),
        Balancing::LeastLoaded => group.sort_by_key(|s| s.in_flight),
        Balancing::Weighted => {
            let weight = |s: &Survivor| settings.routing.backend_weights.get(&offers[s.index].config.name).copied().unwrap_or(1.0);
            let total: f64 = group.iter().map(weight).sum();
            let mut target = dice.roll * total;
            let mut pick = 0;
            for (i, s) in group.iter().enumerate() {
                target -= weight(s);
                if target < 0.0 {
                    pick = i;
                    break;
                }
            }
            group[..=pick].rotate_right(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::config::{Config, EnvSource, Policies};

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut pairs = vec![
            ("HERMES_BACKENDS_ENABLED", "home,cheap,premium"),
            ("BACKEND_HOME_TYPE", "local"),
            ("BACKEND_HOME_HOST", "127.0.0.1"),
            ("BACKEND_HOME_MODELS", "llama"),
            ("BACKEND_CHEAP_TYPE", "custom"),
            ("BACKEND_CHEAP_HOST", "127.0.0.1"),
            ("BACKEND_CHEAP_MODELS", "mini,llama"),
            ("BACKEND_CHEAP_PRICE_INPUT_PER_MTOK", "0.15"),
            ("BACKEND_CHEAP_PRICE_OUTPUT_PER_MTOK", "0.60"),
            ("BACKEND_CHEAP_QUALITY_SCORE", "0.85"),
            ("BACKEND_CHEAP_SPEED_SCORE", "0.9"),
            ("BACKEND_PREMIUM_TYPE", "custom"),
            ("BACKEND_PREMIUM_HOST", "127.0.0.1"),
            ("BACKEND_PREMIUM_MODELS", "big"),
            ("BACKEND_PREMIUM_PRICE_INPUT_PER_MTOK", "2.5"),
            ("BACKEND_PREMIUM_PRICE_OUTPUT_PER_MTOK", "10"),
            ("BACKEND_PREMIUM_QUALITY_SCORE", "0.97"),
            ("BACKEND_PREMIUM_SPEED_SCORE", "0.7"),
        ];
        pairs.extend_from_slice(extra);
        Config::from_env(&EnvSource::from_pairs(pairs), Policies::builtin(), false).unwrap()
    }

    #[test]
    fn decimals_read_like_the_formatter() {
        for (v, places) in [(0.0, 2), (0.8, 2), (0.85, 3), (1.0, 2), (0.000_123_4, 4), (12.345_67, 4), (-0.25, 3), (-0.000_01, 2), (3.0e-5, 4)] {
            assert_eq!(Decimals(v, places).to_string(), format!("{v:.*}", places as usize), "{v} to {places} places");
        }
        assert_eq!(Decimals(f64::NAN, 2).to_string(), "NaN");
    }

    fn job(job_type: JobType) -> Classification {
        Classification {
            job_type,
            likelihood: JobType::ALL.map(|j| if j == job_type { 1.0 } else { 0.0 }),
            complexity: 0.2,
            quality_need: 0.3,
            speed_need: 0.2,
            cost_sensitivity: 0.3,
            personal_data: None,
            prompt_tokens: 1000,
            expected_output_tokens: 500,
        }
    }

    fn decide(cfg: &Config, ask: Ask<'_>, down: &[&str], dice: Dice) -> Result<Decision, ApiError> {
        decide_timed(cfg, ask, down, &[], dice)
    }

    /// `typical`: backends with a learned mean answer time, in seconds.
    fn decide_timed(cfg: &Config, ask: Ask<'_>, down: &[&str], typical: &[(&str, u64)], dice: Dice) -> Result<Decision, ApiError> {
        let offers: Vec<Offer<'_>> = cfg
            .backends
            .iter()
            .map(|b| Offer {
                config: b,
                models: &b.models,
                available: !down.contains(&b.name.as_str()),
                draining: false,
                reliability: 1.0,
                quality: b.quality_score,
                quality_draw: b.quality_score,
                speed: b.speed_score,
                typical_latency: typical.iter().find(|(n, _)| *n == b.name).map(|(_, secs)| Duration::from_secs(*secs)),
                in_flight: 0,
            })
            .collect();
        let settings = Settings {
            routing: &cfg.routing,
            shares: &cfg.routing.traffic_shares,
            primary: cfg.primary.as_deref(),
            fallback: cfg.fallback.as_deref(),
            failover: cfg.failover.order,
        };
        choose(&ask, &offers, &settings, |i, m| cfg.price(&cfg.backends[i], m), &dice)
    }

    #[test]
    fn close_candidates_follow_their_draws_and_a_clear_winner_does_not() {
        let cfg = config(&[
            ("HERMES_BACKENDS_ENABLED", "twin_a,twin_b"),
            ("BACKEND_TWIN_A_TYPE", "custom"),
            ("BACKEND_TWIN_A_HOST", "127.0.0.1"),
            ("BACKEND_TWIN_B_TYPE", "custom"),
            ("BACKEND_TWIN_B_HOST", "127.0.0.1"),
        ]);
        let j = job(JobType::CodeGeneration);
        let settings = Settings { routing: &cfg.routing, shares: &cfg.routing.traffic_shares, primary: None, fallback: None, failover: cfg.failover.order };
        let first = |quality: [f64; 2], draws: [f64; 2]| {
            let offers: Vec<Offer<'_>> = cfg
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| Offer {
                    config: b,
                    models: &b.models,
                    available: true,
                    draining: false,
                    reliability: 1.0,
                    quality: quality[i],
                    quality_draw: draws[i],
                    speed: 0.8,
                    typical_latency: None,
                    in_flight: 0,
                })
                .collect();
            let d = choose(&ask("auto", &j, Criteria::CostFirst), &offers, &settings, |_, _| ModelPrice::FREE, &DICE).unwrap();
            cfg.backends[d.candidates[0].backend].name.clone()
        };
        // Whichever draw is higher goes first, so both keep getting traffic in proportion to how
        // likely each is to be the better one (the learner's tests check the draws themselves).
        assert_eq!(first([0.8, 0.8], [0.9, 0.5]), "twin_a");
        assert_eq!(first([0.8, 0.8], [0.5, 0.9]), "twin_b");
        assert_eq!(first([0.6, 0.9], [0.85, 0.8]), "twin_a");
        // Without draws (no ratings yet) the belief decides.
        assert_eq!(first([0.6, 0.9], [0.6, 0.9]), "twin_b");
    }

    fn ask<'a>(model: &'a str, job: &'a Classification, criteria: Criteria) -> Ask<'a> {
        Ask { model, job, criteria, criteria_requested: false, budget_cents: 100.0, local_only: false, pinned: None }
    }

    fn order(d: &Decision, cfg: &Config) -> Vec<String> {
        d.candidates.iter().map(|c| cfg.backends[c.backend].name.clone()).collect()
    }

    const DICE: Dice = Dice { roll: 0.5, turn: 0 };

    #[test]
    fn each_criterion_orders_by_its_own_measure() {
        let cfg = config(&[]);
        let j = job(JobType::General);
        assert_eq!(order(&decide(&cfg, ask("auto", &j, Criteria::CostFirst), &[], DICE).unwrap(), &cfg), ["home", "cheap", "premium"]);
        assert_eq!(order(&decide(&cfg, ask("auto", &j, Criteria::QualityFirst), &[], DICE).unwrap(), &cfg), ["premium", "cheap", "home"]);
        assert_eq!(order(&decide(&cfg, ask("auto", &j, Criteria::SpeedFirst), &[], DICE).unwrap(), &cfg), ["cheap", "premium", "home"]);
        let d = decide(&cfg, ask("auto", &j, Criteria::CostFirst), &[], DICE).unwrap();
        assert!(d.reason.starts_with("general job, cost_first: home (free"), "{}", d.reason);
        assert!(d.candidates[2].estimated_cost_cents > d.candidates[1].estimated_cost_cents);
    }

    #[test]
    fn budgets_block_paid_backends_but_never_free_ones() {
        let cfg = config(&[]);
        let j = job(JobType::General);
        let mut a = ask("auto", &j, Criteria::QualityFirst);
        a.budget_cents = 0.1; // premium costs 0.75¢ for 1000 in + 500 out
        let d = decide(&cfg, a, &[], DICE).unwrap();
        assert_eq!(order(&d, &cfg), ["cheap", "home"]);
        assert!(d.rejected.iter().any(|(b, why)| b == "premium" && why.contains("budget")));
        let mut a = ask("big", &j, Criteria::CostFirst);
        a.budget_cents = 0.1;
        let e = decide(&cfg, a, &[], DICE).unwrap_err();
        assert_eq!((e.status(), e.code()), (402, Some("budget_exceeded")));
    }

    #[test]
    fn private_requests_only_run_locally_and_are_refused_when_none_is_healthy() {
        let cfg = config(&[]);
        let j = job(JobType::Analysis);
        let mut a = ask("llama", &j, Criteria::QualityFirst);
        a.local_only = true;
        assert_eq!(order(&decide(&cfg, a, &[], DICE).unwrap(), &cfg), ["home"]);
        let mut a = ask("llama", &j, Criteria::QualityFirst);
        a.local_only = true;
        let e = decide(&cfg, a, &["home"], DICE).unwrap_err();
        assert_eq!(e.status(), 503);
        assert!(e.message().contains("not sent anywhere"));
        // Not private: a down backend is still a last resort.
        assert_eq!(order(&decide(&cfg, ask("big", &j, Criteria::CostFirst), &["premium"], DICE).unwrap(), &cfg), ["premium"]);
    }

    #[test]
    fn backends_typically_slower_than_the_limit_go_last() {
        let j = job(JobType::General);
        let slow_home = [("home", 30)];
        let unlimited = config(&[]);
        let d = decide_timed(&unlimited, ask("auto", &j, Criteria::CostFirst), &[], &slow_home, DICE).unwrap();
        assert_eq!(order(&d, &unlimited), ["home", "cheap", "premium"]);
        let limited = config(&[("HERMES_MAX_RESPONSE_TIME_SECONDS", "20")]);
        let d = decide_timed(&limited, ask("auto", &j, Criteria::CostFirst), &[], &slow_home, DICE).unwrap();
        assert_eq!(order(&d, &limited), ["cheap", "premium", "home"], "free but slow: tried only after the rest");
        assert!(d.reason.contains("typically slower than 20s, so last: home"), "{}", d.reason);
        // Within the limit, or alone, it is still used.
        let d = decide_timed(&limited, ask("auto", &j, Criteria::CostFirst), &[], &[("home", 19)], DICE).unwrap();
        assert_eq!(order(&d, &limited)[0], "home");
        let d = decide_timed(&limited, ask("llama", &j, Criteria::CostFirst), &["cheap"], &slow_home, DICE).unwrap();
        assert_eq!(order(&d, &limited), ["home"], "the only healthy one is still tried");
        assert!(config_error(&[("HERMES_MAX_RESPONSE_TIME_SECONDS", "0")]).contains("HERMES_MAX_RESPONSE_TIME_SECONDS"));
    }

    fn config_error(extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![("HERMES_BACKENDS_ENABLED", "home"), ("BACKEND_HOME_TYPE", "local"), ("BACKEND_HOME_HOST", "127.0.0.1")];
        pairs.extend_from_slice(extra);
        Config::from_env(&EnvSource::from_pairs(pairs), Policies::builtin(), false).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn failover_strategy_sets_who_is_tried_after_the_first_choice() {
        let code_only = ("BACKEND_PREMIUM_CAPABILITIES", "code_generation");
        let analysis = job(JobType::Analysis);
        let tries = |strategy: &str, a: Ask<'_>| {
            let cfg = config(&[code_only, ("HERMES_FAILOVER_STRATEGY", strategy)]);
            decide(&cfg, a, &[], DICE).map(|d| (order(&d, &cfg), d.reason))
        };
        // next_best (the default): only the ranked backends that suit the job.
        let (next_best, _) = tries("next_best", ask("auto", &analysis, Criteria::CostFirst)).unwrap();
        assert_eq!(next_best, ["home", "cheap"]);
        assert_eq!(order(&decide(&config(&[code_only]), ask("auto", &analysis, Criteria::CostFirst), &[], DICE).unwrap(), &config(&[])), next_best);
        // Then any backend that is up, even one that lacks the capability.
        let (both, reason) = tries("next_best,any_available", ask("auto", &analysis, Criteria::CostFirst)).unwrap();
        assert_eq!(both, ["home", "cheap", "premium"]);
        assert!(reason.contains("then any available: premium"), "{reason}");
        // any_available alone: the best first, then configuration order.
        let general = job(JobType::General);
        let (any, reason) = tries("any_available", ask("auto", &general, Criteria::QualityFirst)).unwrap();
        assert_eq!(any, ["cheap", "home", "premium"], "the best that suits the job, then everything up in configuration order");
        assert!(reason.contains("configuration order"), "{reason}");
        // The hard limits still hold: a private request never reaches a remote spare.
        let mut private = ask("auto", &analysis, Criteria::CostFirst);
        private.local_only = true;
        assert_eq!(tries("next_best,any_available", private).unwrap().0, ["home"]);
        // Nothing capable at all: any_available tries the spares rather than refuse.
        let code = job(JobType::CodeGeneration);
        let analysis_only = ("BACKEND_PREMIUM_CAPABILITIES", "analysis");
        let cfg = config(&[analysis_only]);
        assert_eq!(decide(&cfg, ask("big", &code, Criteria::CostFirst), &[], DICE).unwrap_err().status(), 503);
        let cfg = config(&[analysis_only, ("HERMES_FAILOVER_STRATEGY", "any_available")]);
        assert_eq!(order(&decide(&cfg, ask("big", &code, Criteria::CostFirst), &[], DICE).unwrap(), &cfg), ["premium"]);
        assert!(config_error(&[("HERMES_FAILOVER_STRATEGY", "random")]).contains("'random' is not next_best or any_available"));
    }

    #[test]
    fn pins_go_first_in_order_of_precedence() {
        let cfg = config(&[("HERMES_PRIMARY_BACKEND", "premium"), ("HERMES_JOB_TYPE_ROUTING", "true"), ("HERMES_CODE_JOBS_BACKEND", "cheap")]);
        let general = job(JobType::General);
        let code = job(JobType::CodeGeneration);
        assert_eq!(order(&decide(&cfg, ask("auto", &general, Criteria::CostFirst), &[], DICE).unwrap(), &cfg)[0], "premium");
        let d = decide(&cfg, ask("auto", &code, Criteria::CostFirst), &[], DICE).unwrap();
        assert_eq!(order(&d, &cfg)[0], "cheap");
        assert!(d.reason.contains("job-type routing"));
        let mut a = ask("auto", &code, Criteria::CostFirst);
        a.pinned = Some("home");
        assert_eq!(order(&decide(&cfg, a, &[], DICE).unwrap(), &cfg)[0], "home");
        // An explicit x-hermes-criteria outranks the primary.
        let mut a = ask("auto", &general, Criteria::CostFirst);
        a.criteria_requested = true;
        assert_eq!(order(&decide(&cfg, a, &[], DICE).unwrap(), &cfg)[0], "home");
        let mut bad = ask("auto", &general, Criteria::CostFirst);
        bad.pinned = Some("nope");
        assert_eq!(decide(&cfg, bad, &[], DICE).unwrap_err().status(), 400);
    }

    #[test]
    fn load_balancing_spreads_equals_and_shares_migrate_traffic() {
        let cfg = config(&[
            ("BACKEND_HOME2_TYPE", "local"),
            ("BACKEND_HOME2_HOST", "127.0.0.2"),
            ("HERMES_BACKENDS_ENABLED", "home,cheap,premium,home2"),
            ("HERMES_LOAD_BALANCING_ENABLED", "true"),
            ("HERMES_LOAD_BALANCING_STRATEGY", "round_robin"),
        ]);
        let j = job(JobType::General);
        let firsts: Vec<String> =
            (0..4).map(|turn| order(&decide(&cfg, ask("auto", &j, Criteria::CostFirst), &[], Dice { roll: 0.5, turn }).unwrap(), &cfg)[0].clone()).collect();
        assert_eq!(firsts, ["home", "home2", "home", "home2"]);

        let cfg = config(&[("HERMES_TRAFFIC_SHARES", "premium:0.1")]);
        let first = |roll| order(&decide(&cfg, ask("auto", &j, Criteria::CostFirst), &[], Dice { roll, turn: 0 }).unwrap(), &cfg)[0].clone();
        assert_eq!(first(0.05), "premium");
        assert_eq!(first(0.5), "home");
    }

    #[test]
    fn least_loaded_and_weighted_balancing() {
        let cfg = config(&[
            ("BACKEND_HOME2_TYPE", "local"),
            ("BACKEND_HOME2_HOST", "127.0.0.2"),
            ("HERMES_BACKENDS_ENABLED", "home,cheap,premium,home2"),
            ("HERMES_LOAD_BALANCING_ENABLED", "true"),
            ("HERMES_LOAD_BALANCING_STRATEGY", "least_loaded"),
        ]);
        let j = job(JobType::General);
        let offers: Vec<Offer<'_>> = cfg
            .backends
            .iter()
            .map(|b| Offer {
                config: b,
                models: &b.models,
                available: true,
                draining: false,
                reliability: 1.0,
                quality: b.quality_score,
                quality_draw: b.quality_score,
                speed: b.speed_score,
                typical_latency: None,
                in_flight: if b.name == "home" { 5 } else { 0 },
            })
            .collect();
        let settings = Settings { routing: &cfg.routing, shares: &cfg.routing.traffic_shares, primary: None, fallback: None, failover: cfg.failover.order };
        let d = choose(&ask("auto", &j, Criteria::CostFirst), &offers, &settings, |i, m| cfg.price(&cfg.backends[i], m), &DICE).unwrap();
        assert_eq!(order(&d, &cfg)[0], "home2", "the less busy of two equals goes first");

        let cfg = config(&[
            ("BACKEND_HOME2_TYPE", "local"),
            ("BACKEND_HOME2_HOST", "127.0.0.2"),
            ("HERMES_BACKENDS_ENABLED", "home,cheap,premium,home2"),
            ("HERMES_LOAD_BALANCING_ENABLED", "true"),
            ("HERMES_LOAD_BALANCING_STRATEGY", "weighted"),
            ("HERMES_BACKEND_WEIGHTS", "home:0.9,home2:0.1"),
        ]);
        let first = |roll| order(&decide(&cfg, ask("auto", &j, Criteria::CostFirst), &[], Dice { roll, turn: 0 }).unwrap(), &cfg)[0].clone();
        assert_eq!(first(0.5), "home");
        assert_eq!(first(0.95), "home2", "the top 10% of rolls go to the 0.1 weight");
    }

    #[test]
    fn capabilities_and_context_filter() {
        let cfg = config(&[("BACKEND_HOME_CAPABILITIES", "text_generation"), ("BACKEND_CHEAP_CONTEXT_LENGTH", "1200")]);
        let code = job(JobType::CodeGeneration);
        let d = decide(&cfg, ask("auto", &code, Criteria::CostFirst), &[], DICE).unwrap();
        assert_eq!(order(&d, &cfg), ["premium"]);
        assert_eq!(d.rejected.len(), 2, "{:?}", d.rejected);
    }
}
