//! What Hermes has learned from results: statistics per (job type, backend, model), seeded from
//! DuckDB at start-up and updated as each answer and rating arrives. The routing brain reads
//! quality, speed and reliability from here: the configured priors, moved by evidence.
//!
//! Each prior counts as a few observations (`PRIOR_*` below), so a handful of real results
//! outweighs a guess, and one bad rating does not bury a backend. Quality is a Beta belief over
//! ratings, which also gives the Thompson draws that let close candidates share traffic once
//! there are ratings to go on (before that, equals keep the configured order).

use crate::classify::JobType;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Beta, Distribution};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How many ratings the configured quality prior is worth.
const PRIOR_RATINGS: f64 = 4.0;
/// How many answers the configured speed prior and the health-based reliability are worth.
const PRIOR_ANSWERS: f64 = 5.0;
/// An answer this many seconds long scores 0.5 on speed (1 s ≈ 0.83, 30 s ≈ 0.14).
const SPEED_HALF_SECONDS: f64 = 5.0;
/// Latencies kept per key for p50/p95.
const LATENCY_WINDOW: usize = 256;
/// Jobs per job type over which "current share" is counted.
const SHARE_WINDOW: usize = 100;
/// Requests a rating finds in memory; older ones are looked up in the analytics file.
const SERVED_KEPT: usize = 50_000;
const SERVED_FOR: Duration = Duration::from_secs(24 * 3600);

/// A 1-5 rating as a 0..1 quality observation.
pub fn rating_quality(rating: u8) -> f64 {
    (f64::from(rating.clamp(1, 5)) - 1.0) / 4.0
}

/// What is known of one (job type, backend, model).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Answers that count for reliability (a request's own 4xx does not).
    pub attempts: u64,
    pub successes: u64,
    latencies_ms: VecDeque<f64>,
    latency_ms_sum: f64,
    latency_count: u64,
    ttft_ms_sum: f64,
    ttft_count: u64,
    /// Over successful answers (`successes` is the denominator of cost per job).
    cost_cents_sum: f64,
    pub ratings: u64,
    /// Sum of ratings mapped to 0..1.
    rating_quality_sum: f64,
    rating_sum: f64,
}

impl Stats {
    fn mean_latency_ms(&self) -> Option<f64> {
        (self.latency_count > 0).then(|| self.latency_ms_sum / self.latency_count as f64)
    }

    fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.latencies_ms.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        v.get(i).copied()
    }

    fn push_latency(&mut self, ms: f64) {
        if self.latencies_ms.len() == LATENCY_WINDOW {
            self.latencies_ms.pop_front();
        }
        self.latencies_ms.push_back(ms);
        self.latency_ms_sum += ms;
        self.latency_count += 1;
    }
}

/// The configured view of a backend, which evidence moves.
#[derive(Debug, Clone, Copy)]
pub struct Priors {
    pub quality: f64,
    pub speed: f64,
    pub reliability: f64,
}

/// The router's view of one candidate: blended values plus a Thompson draw of quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub quality: f64,
    pub speed: f64,
    pub reliability: f64,
    /// A sample from the quality belief: close candidates are ordered by it.
    pub quality_draw: f64,
    /// Whether any result or rating is behind these numbers.
    pub evidence: bool,
    /// Mean time of its successful answers, once there are any.
    pub typical_latency: Option<Duration>,
}

/// One attempt's result, as the learner takes it.
pub struct Outcome<'a> {
    pub job_type: JobType,
    pub backend: &'a str,
    pub model: &'a str,
    /// None: the request's own fault (a 4xx), neutral for reliability.
    pub success: Option<bool>,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub cost_cents: Option<f64>,
}

/// Where an answered request ran, kept so a later rating finds its statistics.
#[derive(Debug, Clone)]
pub struct Served {
    pub job_type: JobType,
    pub backend: String,
    pub model: String,
    pub rating: Option<u8>,
}

/// One row of the learned table (`/admin/stats`, `hermes stats`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StatRow {
    pub job_type: String,
    pub backend: String,
    pub model: String,
    pub jobs: u64,
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub cost_cents_per_job: Option<f64>,
    pub ratings: u64,
    pub rating: Option<f64>,
    /// Share of the last jobs of this type that ran here.
    pub share: f64,
}

/// What DuckDB remembers of one key, to start from.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    pub job_type: String,
    pub backend: String,
    pub model: String,
    pub attempts: u64,
    pub successes: u64,
    pub latency_ms_sum: f64,
    pub latency_count: u64,
    /// The latest latencies, newest last.
    pub recent_latencies_ms: Vec<f64>,
    pub ttft_ms_sum: f64,
    pub ttft_count: u64,
    pub cost_cents_sum: f64,
    pub ratings: u64,
    pub rating_sum: f64,
}

type Table = HashMap<JobType, HashMap<String, HashMap<String, Stats>>>;

pub struct Learner {
    table: RwLock<Table>,
    /// Recent requests by id, for POST /feedback, with when they were kept. Written on every
    /// answer: a sharded map with no housekeeping (moka's cost a few % of a busy gateway's CPU).
    served: quick_cache::sync::Cache<String, (Instant, Served)>,
    /// The last backends chosen per job type.
    recent_choices: Mutex<HashMap<JobType, VecDeque<String>>>,
    rng: Mutex<SmallRng>,
}

impl Learner {
    /// `seed` makes the draws repeatable (HERMES_RANDOM_SEED); otherwise they come from the OS.
    pub fn new(seed: Option<u64>) -> Learner {
        let rng = seed.map_or_else(|| SmallRng::seed_from_u64(fastrand::u64(..)), SmallRng::seed_from_u64);
        Learner {
            table: RwLock::new(HashMap::new()),
            // Older requests are looked up in the analytics file instead.
            served: quick_cache::sync::Cache::new(SERVED_KEPT),
            recent_choices: Mutex::new(HashMap::new()),
            rng: Mutex::new(rng),
        }
    }

    pub fn seeded(seed: Option<u64>, rows: Vec<Seed>, recent_choices: Vec<(String, String)>) -> Learner {
        let learner = Learner::new(seed);
        {
            let mut table = write(&learner.table);
            for r in rows {
                let Some(job) = JobType::parse(&r.job_type) else { continue };
                let s = table.entry(job).or_default().entry(r.backend).or_default().entry(r.model).or_default();
                s.attempts = r.attempts;
                s.successes = r.successes;
                s.latencies_ms = r.recent_latencies_ms.into_iter().collect();
                s.latency_ms_sum = r.latency_ms_sum;
                s.latency_count = r.latency_count;
                s.ttft_ms_sum = r.ttft_ms_sum;
                s.ttft_count = r.ttft_count;
                s.cost_cents_sum = r.cost_cents_sum;
                s.ratings = r.ratings;
                s.rating_sum = r.rating_sum;
                s.rating_quality_sum = (r.rating_sum - r.ratings as f64) / 4.0;
            }
        }
        let mut choices = lock(&learner.recent_choices);
        for (job, backend) in recent_choices {
            if let Some(job) = JobType::parse(&job) {
                push_choice(choices.entry(job).or_default(), backend);
            }
        }
        drop(choices);
        learner
    }

    /// The router's view of a backend for this job type and model, with a fresh Thompson draw.
    pub fn estimate(&self, job: JobType, backend: &str, model: &str, prior: Priors) -> Estimate {
        self.view(job, backend, model, prior, true)
    }

    /// The same view without a draw (for display: it leaves the routing dice untouched).
    pub fn belief(&self, job: JobType, backend: &str, model: &str, prior: Priors) -> Estimate {
        self.view(job, backend, model, prior, false)
    }

    fn view(&self, job: JobType, backend: &str, model: &str, prior: Priors, draw: bool) -> Estimate {
        let table = read(&self.table);
        let stats = table.get(&job).and_then(|b| b.get(backend)).and_then(|m| m.get(model));
        let (alpha, beta) = quality_belief(prior.quality, stats);
        let quality = alpha / (alpha + beta);
        // Without ratings there is nothing to explore on: candidates keep the configured order.
        let draw = draw && stats.is_some_and(|s| s.ratings > 0);
        let Some(s) = stats else {
            drop(table);
            let quality_draw = if draw { self.draw(alpha, beta) } else { quality };
            return Estimate { quality, speed: prior.speed, reliability: prior.reliability, quality_draw, evidence: false, typical_latency: None };
        };
        let reliability = (PRIOR_ANSWERS * prior.reliability + s.successes as f64) / (PRIOR_ANSWERS + s.attempts as f64);
        let speed = match s.mean_latency_ms() {
            Some(ms) => {
                let observed = 1.0 / (1.0 + ms / 1000.0 / SPEED_HALF_SECONDS);
                let n = s.latency_count as f64;
                (PRIOR_ANSWERS * prior.speed + n * observed) / (PRIOR_ANSWERS + n)
            }
            None => prior.speed,
        };
        let evidence = s.attempts > 0 || s.ratings > 0;
        let typical_latency = s.mean_latency_ms().map(|ms| Duration::from_secs_f64(ms / 1000.0));
        drop(table);
        let quality_draw = if draw { self.draw(alpha, beta) } else { quality };
        Estimate { quality, speed, reliability, quality_draw, evidence, typical_latency }
    }

    fn draw(&self, alpha: f64, beta: f64) -> f64 {
        let mean = alpha / (alpha + beta);
        match Beta::new(alpha.max(1e-3), beta.max(1e-3)) {
            Ok(dist) => dist.sample(&mut *lock(&self.rng)),
            Err(_) => mean,
        }
    }

    /// A uniform 0..1 from the same repeatable source as the draws.
    pub fn roll(&self) -> f64 {
        use rand::Rng;
        lock(&self.rng).random::<f64>()
    }

    pub fn record(&self, o: &Outcome<'_>) {
        let mut table = write(&self.table);
        let s = table.entry(o.job_type).or_default().entry(o.backend.to_string()).or_default().entry(o.model.to_string()).or_default();
        if let Some(ok) = o.success {
            s.attempts += 1;
            if ok {
                s.successes += 1;
                s.push_latency(o.latency.as_secs_f64() * 1000.0);
                if let Some(t) = o.ttft {
                    s.ttft_ms_sum += t.as_secs_f64() * 1000.0;
                    s.ttft_count += 1;
                }
                s.cost_cents_sum += o.cost_cents.unwrap_or(0.0);
            }
        }
    }

    /// Remember where an answered request ran, so a rating can find it; counts its share.
    pub fn served(&self, request_id: &str, served: Served) {
        push_choice(lock(&self.recent_choices).entry(served.job_type).or_default(), served.backend.clone());
        self.served.insert(request_id.to_string(), (Instant::now(), served));
    }

    pub fn lookup(&self, request_id: &str) -> Option<Served> {
        self.served.get(request_id).filter(|(at, _)| at.elapsed() < SERVED_FOR).map(|(_, s)| s)
    }

    /// A person's 1-5 verdict; a second rating of the same request replaces the first.
    pub fn rate(&self, request_id: &str, mut served: Served, rating: u8) {
        let previous = served.rating.replace(rating);
        {
            let mut table = write(&self.table);
            let s = table.entry(served.job_type).or_default().entry(served.backend.clone()).or_default().entry(served.model.clone()).or_default();
            if let Some(old) = previous {
                s.ratings = s.ratings.saturating_sub(1);
                s.rating_sum -= f64::from(old);
                s.rating_quality_sum -= rating_quality(old);
            }
            s.ratings += 1;
            s.rating_sum += f64::from(rating);
            s.rating_quality_sum += rating_quality(rating);
        }
        self.served.insert(request_id.to_string(), (Instant::now(), served));
    }

    /// The learned table, one row per (job type, backend, model), busiest first within a type.
    pub fn table(&self) -> Vec<StatRow> {
        let table = read(&self.table);
        let choices = lock(&self.recent_choices);
        let mut rows = Vec::new();
        for (job, backends) in table.iter() {
            let recent = choices.get(job);
            for (backend, models) in backends {
                let share = recent.map_or(0.0, |r| r.iter().filter(|b| *b == backend).count() as f64 / r.len().max(1) as f64);
                for (model, s) in models {
                    rows.push(StatRow {
                        job_type: job.as_str().to_string(),
                        backend: backend.clone(),
                        model: model.clone(),
                        jobs: s.attempts,
                        success_rate: (s.attempts > 0).then(|| s.successes as f64 / s.attempts as f64),
                        p50_ms: s.percentile_ms(0.5),
                        p95_ms: s.percentile_ms(0.95),
                        ttft_ms: (s.ttft_count > 0).then(|| s.ttft_ms_sum / s.ttft_count as f64),
                        cost_cents_per_job: (s.successes > 0).then(|| s.cost_cents_sum / s.successes as f64),
                        ratings: s.ratings,
                        rating: (s.ratings > 0).then(|| s.rating_sum / s.ratings as f64),
                        share,
                    });
                }
            }
        }
        sort_rows(&mut rows);
        rows
    }
}

/// Job type, then most jobs first: the order `hermes stats` prints.
pub fn sort_rows(rows: &mut [StatRow]) {
    rows.sort_by(|a, b| a.job_type.cmp(&b.job_type).then(b.jobs.cmp(&a.jobs)).then(a.backend.cmp(&b.backend)).then(a.model.cmp(&b.model)));
}

/// Beta(alpha, beta) over 0..1 quality: the prior as PRIOR_RATINGS pseudo-ratings, plus ratings.
fn quality_belief(prior: f64, stats: Option<&Stats>) -> (f64, f64) {
    let prior = prior.clamp(0.01, 0.99);
    let (n, sum) = stats.map_or((0.0, 0.0), |s| (s.ratings as f64, s.rating_quality_sum));
    (PRIOR_RATINGS * prior + sum, PRIOR_RATINGS * (1.0 - prior) + (n - sum))
}

fn push_choice(ring: &mut VecDeque<String>, backend: String) {
    if ring.len() == SHARE_WINDOW {
        ring.pop_front();
    }
    ring.push_back(backend);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIOR: Priors = Priors { quality: 0.8, speed: 0.6, reliability: 1.0 };

    fn served(backend: &str) -> Served {
        Served { job_type: JobType::CodeGeneration, backend: backend.into(), model: "m".into(), rating: None }
    }

    #[test]
    fn without_evidence_the_prior_stands() {
        let l = Learner::new(Some(1));
        let e = l.estimate(JobType::CodeGeneration, "a", "m", PRIOR);
        assert!((e.quality - 0.8).abs() < 1e-9);
        assert_eq!((e.speed, e.reliability, e.evidence), (0.6, 1.0, false));
    }

    #[test]
    fn ratings_move_quality_and_a_rerating_replaces() {
        let l = Learner::new(Some(1));
        for i in 0..8 {
            l.rate(&format!("r{i}"), served("a"), 1);
        }
        let low = l.estimate(JobType::CodeGeneration, "a", "m", PRIOR).quality;
        assert!(low < 0.3, "{low}");
        // Rating the same request again replaces its rating rather than adding one.
        let again = l.lookup("r0").unwrap();
        l.rate("r0", again, 5);
        let t = l.table();
        assert_eq!(t[0].ratings, 8);
        assert!((t[0].rating.unwrap() - 12.0 / 8.0).abs() < 1e-9);
        // Other job types keep the prior.
        assert!((l.estimate(JobType::General, "a", "m", PRIOR).quality - 0.8).abs() < 1e-9);
    }

    #[test]
    fn failures_lower_reliability_and_slow_answers_lower_speed() {
        let l = Learner::new(Some(1));
        for i in 0..10 {
            l.record(&Outcome {
                job_type: JobType::General,
                backend: "a",
                model: "m",
                success: Some(i % 2 == 0),
                latency: Duration::from_secs(20),
                ttft: None,
                cost_cents: Some(1.0),
            });
        }
        let e = l.estimate(JobType::General, "a", "m", PRIOR);
        assert!((e.reliability - (5.0 + 5.0) / 15.0).abs() < 1e-9, "{e:?}");
        assert!((e.speed - (5.0 * 0.6 + 5.0 * 0.2) / 10.0).abs() < 1e-9, "{e:?}");
        let row = &l.table()[0];
        assert_eq!((row.jobs, row.success_rate, row.cost_cents_per_job), (10, Some(0.5), Some(1.0)));
        assert_eq!(row.p50_ms, Some(20_000.0));
    }

    #[test]
    fn seeded_from_rows_equals_live_learning() {
        let seed = Seed {
            job_type: "code_generation".into(),
            backend: "a".into(),
            model: "m".into(),
            attempts: 4,
            successes: 4,
            latency_ms_sum: 400.0,
            latency_count: 4,
            recent_latencies_ms: vec![100.0; 4],
            ratings: 4,
            rating_sum: 4.0,
            ..Seed::default()
        };
        let l = Learner::seeded(Some(1), vec![seed], vec![("code_generation".into(), "a".into())]);
        let live = Learner::new(Some(1));
        for i in 0..4 {
            live.rate(&format!("r{i}"), served("a"), 1);
        }
        let (a, b) = (l.estimate(JobType::CodeGeneration, "a", "m", PRIOR), live.estimate(JobType::CodeGeneration, "a", "m", PRIOR));
        assert!((a.quality - b.quality).abs() < 1e-9);
        assert_eq!(l.table()[0].share, 1.0);
    }
}
