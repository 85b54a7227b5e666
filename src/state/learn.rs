//! What Hermes has learned from results: statistics per (job type, backend, model), seeded from
//! DuckDB at start-up and updated as each answer and rating arrives, and quality also per
//! (job type, complexity band). The routing brain reads quality, speed and reliability from
//! here: the configured priors, moved by evidence.
//!
//! - Each prior counts as a few observations (`PRIOR_*` below), so a handful of real results
//!   outweighs a guess, and one bad rating does not bury a backend.
//! - Quality is a Beta belief over ratings; routing ranks by a Thompson draw from it, so a
//!   backend that was rated badly by bad luck keeps a chance in proportion to how likely it is
//!   to be the better one, and a clearly worse one gets little traffic.
//! - Evidence fades: a rating counts half after `QUALITY_HALF_LIFE` (30) newer ratings of the
//!   same cell, an answer's latency and success after `ANSWER_HALF_LIFE` (30) newer answers. And
//!   when the last few ratings (a half-life of 4) differ from the long run by more than 0.25, the
//!   backend has changed: its quality evidence starts again from those, so routing follows a
//!   backend that gets worse (or better) within a dozen or two rated jobs.
//! - A complexity band's own ratings refine its job type's: while the band has few ratings the
//!   job type's belief stands in for it (a small local model may be fine for simple code and
//!   poor at hard code).

pub mod implicit;

use crate::decide::classify::JobType;
use crate::state::{lock, read, write};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Beta, Distribution};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How many ratings the configured quality prior is worth.
const PRIOR_RATINGS: f64 = 4.0;
/// Pseudo-ratings (prior and faded ratings) past which routing reads a belief's mean, not a draw.
const SURE_RATINGS: f64 = 20.0;
/// How many answers the health-based reliability prior is worth.
const PRIOR_ANSWERS: f64 = 5.0;
/// How many answers the configured speed prior is worth: one, so measured latency ranks.
const PRIOR_SPEED_ANSWERS: f64 = 1.0;
/// Newer ratings of the same cell after which a rating counts half.
pub const QUALITY_HALF_LIFE: f64 = 30.0;
/// The short memory that notices a change: ratings count half after this many newer ones...
const RECENT_HALF_LIFE: f64 = 4.0;
/// ...and once it holds this much, a mean this far from the long run's restarts the evidence.
const CHANGE_MIN_RATINGS: f64 = 4.0;
const CHANGE_SHIFT: f64 = 0.25;
/// When one backend's quality for a job changed, what is known of the others in that cell counts
/// this much (their means stay, their certainty shrinks): a world that changed for one may have
/// changed for all, so the others are sampled again soon.
const DOUBT_ON_CHANGE: f64 = 0.25;
/// Newer answers after which an answer's latency and success count half.
pub const ANSWER_HALF_LIFE: f64 = 30.0;
/// The most a job type's belief counts for, as ratings, when it stands in for a band's.
const BAND_PRIOR_RATINGS: f64 = 6.0;
/// Job types less likely than this do not enter a job's mixed estimate.
const MIX_FLOOR: f64 = 0.1;
/// Complexity (0..1, from the classifier) from which a job counts as hard.
pub const HARD_COMPLEXITY: f64 = 0.25;

fn fade(half_life: f64) -> f64 {
    0.5f64.powf(1.0 / half_life)
}

/// How hard a job is, coarsely: quality is learned per (job type, band) as well as per type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Band {
    Simple,
    Hard,
}

impl Band {
    pub fn of(complexity: f64) -> Band {
        if complexity >= HARD_COMPLEXITY {
            Band::Hard
        } else {
            Band::Simple
        }
    }
}
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

/// What is known of one (job type, backend, model), or of one band of it (ratings only).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Answers that count for reliability (a request's own 4xx does not).
    pub attempts: u64,
    pub successes: u64,
    /// The same, faded by age.
    attempts_faded: f64,
    successes_faded: f64,
    /// Latency of successful answers, faded by age.
    latency_faded_ms: Option<f64>,
    latencies_ms: VecDeque<f64>,
    latency_ms_sum: f64,
    latency_count: u64,
    ttft_ms_sum: f64,
    ttft_count: u64,
    /// Over successful answers (`successes` is the denominator of cost per job).
    cost_cents_sum: f64,
    pub ratings: u64,
    rating_sum: f64,
    /// Ratings and their sum mapped to 0..1, faded by age: what the quality belief reads.
    ratings_faded: f64,
    rating_quality_faded: f64,
    /// The same over the last few ratings only (`RECENT_HALF_LIFE`), to notice a change.
    ratings_recent: f64,
    rating_quality_recent: f64,
    /// The cell's rating count when `ratings_faded` was last brought up to date: evidence fades
    /// with every rating of the job type, whichever backend it went to, so what is known of a
    /// backend that stopped getting traffic ages and it is tried again in time.
    seen_at: u64,
}

impl Stats {
    /// The faded ratings and their quality sum as of the cell's rating count `clock`.
    fn faded_at(&self, clock: u64) -> (f64, f64) {
        let age = fade(QUALITY_HALF_LIFE).powf(clock.saturating_sub(self.seen_at) as f64);
        (self.ratings_faded * age, self.rating_quality_faded * age)
    }

    /// A rating, the cell's `clock`-th; true when it showed the backend changed.
    fn add_rating(&mut self, rating: u8, clock: u64) -> bool {
        let q = rating_quality(rating);
        let r = fade(RECENT_HALF_LIFE);
        let (n, sum) = self.faded_at(clock.saturating_sub(1));
        self.ratings_faded = n * fade(QUALITY_HALF_LIFE) + 1.0;
        self.rating_quality_faded = sum * fade(QUALITY_HALF_LIFE) + q;
        self.seen_at = clock;
        self.ratings_recent = self.ratings_recent * r + 1.0;
        self.rating_quality_recent = self.rating_quality_recent * r + q;
        // The last ratings say something else than the long run: the backend changed, so the
        // evidence starts again from them rather than waiting for the old to fade.
        let mean = |n: f64, sum: f64| sum / n.max(f64::EPSILON);
        let changed = self.ratings_recent >= CHANGE_MIN_RATINGS
            && (mean(self.ratings_recent, self.rating_quality_recent) - mean(self.ratings_faded, self.rating_quality_faded)).abs() > CHANGE_SHIFT;
        if changed {
            self.ratings_faded = self.ratings_recent;
            self.rating_quality_faded = self.rating_quality_recent;
        }
        self.ratings += 1;
        self.rating_sum += f64::from(rating);
        changed
    }

    /// Hold what is known more loosely (another backend of the cell changed).
    fn doubt(&mut self, clock: u64) {
        let (n, sum) = self.faded_at(clock);
        self.ratings_faded = n * DOUBT_ON_CHANGE;
        self.rating_quality_faded = sum * DOUBT_ON_CHANGE;
        self.seen_at = clock;
    }

    /// A re-rating takes the old one back (at full weight: it is recent, or it hardly counts).
    fn remove_rating(&mut self, rating: u8) {
        self.ratings = self.ratings.saturating_sub(1);
        self.rating_sum -= f64::from(rating);
        self.ratings_faded = (self.ratings_faded - 1.0).max(0.0);
        self.rating_quality_faded = (self.rating_quality_faded - rating_quality(rating)).clamp(0.0, self.ratings_faded);
        self.ratings_recent = (self.ratings_recent - 1.0).max(0.0);
        self.rating_quality_recent = (self.rating_quality_recent - rating_quality(rating)).clamp(0.0, self.ratings_recent);
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
        // An exponentially weighted mean that starts at the first value.
        let n = self.latency_count as f64;
        let weight = (1.0 - fade(ANSWER_HALF_LIFE)).max(1.0 / n);
        self.latency_faded_ms = Some(self.latency_faded_ms.map_or(ms, |m| m + weight * (ms - m)));
    }

    fn push_attempt(&mut self, ok: bool) {
        let f = fade(ANSWER_HALF_LIFE);
        self.attempts += 1;
        self.attempts_faded = self.attempts_faded * f + 1.0;
        self.successes_faded *= f;
        if ok {
            self.successes += 1;
            self.successes_faded += 1.0;
        }
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
    /// None when not known (an old row of the analytics file).
    pub band: Option<Band>,
    pub backend: String,
    pub model: String,
    pub rating: Option<u8>,
    /// A digest of the client key that made the request: only it may rate the answer.
    pub client: Option<String>,
}

impl Served {
    pub fn new(job_type: JobType, band: Option<Band>, backend: &str, model: &str) -> Served {
        Served { job_type, band, backend: backend.to_string(), model: model.to_string(), rating: None, client: None }
    }

    /// The same, made by the client with this key digest (None: an open gateway's caller).
    pub fn by(self, client: Option<String>) -> Served {
        Served { client, ..self }
    }
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

/// A job type, or one complexity band of it.
type Cell = (JobType, Option<Band>);
type Table = HashMap<Cell, HashMap<String, HashMap<String, Stats>>>;

pub struct Learner {
    table: RwLock<Table>,
    /// Ratings per cell so far (what evidence fades by).
    clock: RwLock<HashMap<Cell, u64>>,
    /// Recent requests by id, for POST /feedback, with when they were kept. Written on every
    /// answer: a sharded map with no housekeeping (moka's cost a few % of a busy gateway's CPU).
    served: crate::state::recent::Recent<(Instant, Served)>,
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
            clock: RwLock::new(HashMap::new()),
            // Older requests are looked up in the analytics file instead.
            served: crate::state::recent::Recent::new(SERVED_KEPT),
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
                let s = table.entry((job, None)).or_default().entry(r.backend).or_default().entry(r.model).or_default();
                // The file's totals, as faded counts at most as heavy as a long steady run.
                let cap = |n: u64, half_life: f64| (n as f64).min(1.0 / (1.0 - fade(half_life)));
                let share = |part: f64, n: u64, faded: f64| if n == 0 { 0.0 } else { part / n as f64 * faded };
                s.attempts = r.attempts;
                s.successes = r.successes;
                s.attempts_faded = cap(r.attempts, ANSWER_HALF_LIFE);
                s.successes_faded = share(r.successes as f64, r.attempts, s.attempts_faded);
                s.latency_faded_ms = (r.latency_count > 0).then(|| r.latency_ms_sum / r.latency_count as f64);
                s.latencies_ms = r.recent_latencies_ms.into_iter().collect();
                s.latency_ms_sum = r.latency_ms_sum;
                s.latency_count = r.latency_count;
                s.ttft_ms_sum = r.ttft_ms_sum;
                s.ttft_count = r.ttft_count;
                s.cost_cents_sum = r.cost_cents_sum;
                s.ratings = r.ratings;
                s.rating_sum = r.rating_sum;
                s.ratings_faded = cap(r.ratings, QUALITY_HALF_LIFE);
                s.rating_quality_faded = share((r.rating_sum - r.ratings as f64) / 4.0, r.ratings, s.ratings_faded);
                s.ratings_recent = cap(r.ratings, RECENT_HALF_LIFE);
                s.rating_quality_recent = share((r.rating_sum - r.ratings as f64) / 4.0, r.ratings, s.ratings_recent);
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

    /// The router's view of a backend for this job type, band and model, with a fresh Thompson draw.
    pub fn estimate(&self, job: JobType, band: Band, backend: &str, model: &str, prior: Priors) -> Estimate {
        self.view(job, Some(band), backend, model, prior, true)
    }

    /// `estimate` for a job whose type is uncertain: quality (belief and draw) is the mix of
    /// each likely type's, weighted by how likely it is; speed and reliability are the most
    /// likely type's. Types below `MIX_FLOOR` are left out (they cost a lookup and move little).
    pub fn estimate_mixed(&self, likelihood: &[f64; 6], job: JobType, band: Band, backend: &str, model: &str, prior: Priors) -> Estimate {
        let mut e = self.estimate(job, band, backend, model, prior);
        let main = likelihood[job.index()];
        let (mut weight, mut quality, mut draw) = (main, main * e.quality, main * e.quality_draw);
        for (other, p) in JobType::ALL.iter().zip(likelihood) {
            if *other != job && *p >= MIX_FLOOR {
                let o = self.estimate(*other, band, backend, model, prior);
                weight += p;
                quality += p * o.quality;
                draw += p * o.quality_draw;
            }
        }
        if weight > 0.0 {
            e.quality = quality / weight;
            e.quality_draw = draw / weight;
        }
        e
    }

    /// The job type's view without a draw (for display: it leaves the routing dice untouched).
    pub fn belief(&self, job: JobType, backend: &str, model: &str, prior: Priors) -> Estimate {
        self.view(job, None, backend, model, prior, false)
    }

    fn view(&self, job: JobType, band: Option<Band>, backend: &str, model: &str, prior: Priors, draw: bool) -> Estimate {
        let table = read(&self.table);
        let find = |cell: Cell| table.get(&cell).and_then(|b| b.get(backend)).and_then(|m| m.get(model));
        let (stats, fine) = (find((job, None)), band.and_then(|b| find((job, Some(b)))));
        let clocks = read(&self.clock);
        let now = |cell: Cell| clocks.get(&cell).copied().unwrap_or(0);
        let faded = |s: Option<&Stats>, cell: Cell| s.map_or((0.0, 0.0), |s| s.faded_at(now(cell)));
        let coarse = faded(stats, (job, None));
        let banded = band.and_then(|b| fine.filter(|f| f.ratings > 0).map(|f| faded(Some(f), (job, Some(b)))));
        drop(clocks);
        let (alpha, beta) = quality_belief(prior.quality, coarse, banded);
        let quality = alpha / (alpha + beta);
        // Until this job type has a rating there is nothing to explore on: candidates keep the
        // configured order. From the first rating on, every candidate draws (an untried one from
        // its prior), so the one rated badly by bad luck and its untried twin share the traffic.
        let draw = draw && table.get(&(job, None)).is_some_and(|b| b.values().flat_map(HashMap::values).any(|s| s.ratings > 0));
        let Some(s) = stats else {
            drop(table);
            let quality_draw = if draw { self.draw(alpha, beta) } else { quality };
            return Estimate { quality, speed: prior.speed, reliability: prior.reliability, quality_draw, evidence: false, typical_latency: None };
        };
        let reliability = (PRIOR_ANSWERS * prior.reliability + s.successes_faded) / (PRIOR_ANSWERS + s.attempts_faded);
        let speed = match s.latency_faded_ms {
            Some(ms) => {
                let observed = 1.0 / (1.0 + ms / 1000.0 / SPEED_HALF_SECONDS);
                let n = (s.latency_count as f64).min(1.0 / (1.0 - fade(ANSWER_HALF_LIFE)));
                (PRIOR_SPEED_ANSWERS * prior.speed + n * observed) / (PRIOR_SPEED_ANSWERS + n)
            }
            None => prior.speed,
        };
        let evidence = s.attempts > 0 || s.ratings > 0;
        let typical_latency = s.latency_faded_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0));
        drop(table);
        // Sure enough, the mean ranks: a draw that dips under HERMES_MIN_QUALITY_SCORE now and
        // then would hand a clear winner's jobs to a dearer backend. Evidence fades, so a
        // backend left alone becomes unsure again and is drawn for (explored) once more.
        let quality_draw = if draw && alpha + beta < SURE_RATINGS { self.draw(alpha, beta) } else { quality };
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
        let s = table.entry((o.job_type, None)).or_default().entry(o.backend.to_string()).or_default().entry(o.model.to_string()).or_default();
        if let Some(ok) = o.success {
            s.push_attempt(ok);
            if ok {
                s.push_latency(o.latency.as_secs_f64() * 1000.0);
                if let Some(t) = o.ttft {
                    s.ttft_ms_sum += t.as_secs_f64() * 1000.0;
                    s.ttft_count += 1;
                }
                s.cost_cents_sum += o.cost_cents.unwrap_or(0.0);
            }
        }
    }

    /// Known before the request is sent, so a rating that arrives with the first byte finds it.
    pub fn expect(&self, request_id: &str, served: Served) {
        self.served.insert(request_id, (Instant::now(), served));
    }

    /// Remember where an answered request ran, so a rating can find it; counts its share. A
    /// rating that came while it was still answering, on the same backend, is kept.
    pub fn served(&self, request_id: &str, mut served: Served) {
        push_choice(lock(&self.recent_choices).entry(served.job_type).or_default(), served.backend.clone());
        if let Some((_, known)) = self.served.get(request_id) {
            if known.backend == served.backend && known.model == served.model {
                served.rating = known.rating;
            }
        }
        self.served.insert(request_id, (Instant::now(), served));
    }

    pub fn lookup(&self, request_id: &str) -> Option<Served> {
        self.served.get(request_id).filter(|(at, _)| at.elapsed() < SERVED_FOR).map(|(_, s)| s)
    }

    /// A person's 1-5 verdict; a second rating of the same request replaces the first.
    pub fn rate(&self, request_id: &str, mut served: Served, rating: u8) {
        let previous = served.rating.replace(rating);
        {
            let mut table = write(&self.table);
            let mut clocks = write(&self.clock);
            let cells = [Some((served.job_type, None)), served.band.map(|b| (served.job_type, Some(b)))];
            for cell in cells.into_iter().flatten() {
                let clock = clocks.entry(cell).or_default();
                *clock += 1;
                let backends = table.entry(cell).or_default();
                let s = backends.entry(served.backend.clone()).or_default().entry(served.model.clone()).or_default();
                if let Some(old) = previous {
                    s.remove_rating(old);
                }
                if s.add_rating(rating, *clock) {
                    for (name, models) in backends.iter_mut() {
                        for (model, other) in models.iter_mut() {
                            if (name, model) != (&served.backend, &served.model) && other.ratings_faded > 0.0 {
                                other.doubt(*clock);
                            }
                        }
                    }
                }
            }
        }
        self.served.insert(request_id, (Instant::now(), served));
    }

    /// The learned table, one row per (job type, backend, model), busiest first within a type.
    pub fn table(&self) -> Vec<StatRow> {
        let table = read(&self.table);
        let choices = lock(&self.recent_choices);
        let mut rows = Vec::new();
        for ((job, band), backends) in table.iter() {
            if band.is_some() {
                continue;
            }
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

/// Beta(alpha, beta) over 0..1 quality: the prior as PRIOR_RATINGS pseudo-ratings, plus the
/// job type's faded ratings; a band's own ratings on top of that belief (worth at most
/// BAND_PRIOR_RATINGS), so the band follows the type until it has evidence of its own.
/// `type_evidence` and `band_evidence` are (faded ratings, faded quality sum).
fn quality_belief(prior: f64, type_evidence: (f64, f64), band_evidence: Option<(f64, f64)>) -> (f64, f64) {
    let prior = prior.clamp(0.01, 0.99);
    let (n, sum) = type_evidence;
    let (alpha, beta) = (PRIOR_RATINGS * prior + sum, PRIOR_RATINGS * (1.0 - prior) + (n - sum));
    let Some((bn, bsum)) = band_evidence else { return (alpha, beta) };
    let weight = (alpha + beta).min(BAND_PRIOR_RATINGS);
    let mean = alpha / (alpha + beta);
    (weight * mean + bsum, weight * (1.0 - mean) + (bn - bsum))
}

fn push_choice(ring: &mut VecDeque<String>, backend: String) {
    if ring.len() == SHARE_WINDOW {
        ring.pop_front();
    }
    ring.push_back(backend);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIOR: Priors = Priors { quality: 0.8, speed: 0.6, reliability: 1.0 };

    fn served(backend: &str) -> Served {
        Served::new(JobType::CodeGeneration, Some(Band::Simple), backend, "m")
    }

    #[test]
    fn without_evidence_the_prior_stands() {
        let l = Learner::new(Some(1));
        let e = l.estimate(JobType::CodeGeneration, Band::Simple, "a", "m", PRIOR);
        assert!((e.quality - 0.8).abs() < 1e-9);
        assert_eq!((e.speed, e.reliability, e.evidence), (0.6, 1.0, false));
    }

    #[test]
    fn ratings_move_quality_and_a_rerating_replaces() {
        let l = Learner::new(Some(1));
        for i in 0..8 {
            l.rate(&format!("r{i}"), served("a"), 1);
        }
        let low = l.estimate(JobType::CodeGeneration, Band::Simple, "a", "m", PRIOR).quality;
        assert!(low < 0.3, "{low}");
        // Rating the same request again replaces its rating rather than adding one.
        let again = l.lookup("r0").unwrap();
        l.rate("r0", again, 5);
        let t = l.table();
        assert_eq!(t[0].ratings, 8);
        assert!((t[0].rating.unwrap() - 12.0 / 8.0).abs() < 1e-9);
        // Other job types keep the prior.
        assert!((l.estimate(JobType::General, Band::Simple, "a", "m", PRIOR).quality - 0.8).abs() < 1e-9);
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
        let e = l.estimate(JobType::General, Band::Simple, "a", "m", PRIOR);
        // Half of ten answers failed: about two thirds, with the health prior worth five answers.
        assert!(e.reliability > 0.6 && e.reliability < 0.7, "{e:?}");
        // Measured latency ranks: five 20 s answers outweigh the configured 0.6 five to one.
        assert!((e.speed - (0.6 + 5.0 * 0.2) / 6.0).abs() < 1e-9, "{e:?}");
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
        let (a, b) = (l.belief(JobType::CodeGeneration, "a", "m", PRIOR), live.belief(JobType::CodeGeneration, "a", "m", PRIOR));
        // The file's totals know no order, so they count as unfaded: nearly what live fading gives.
        assert!((a.quality - b.quality).abs() < 0.02, "{} vs {}", a.quality, b.quality);
        assert_eq!(l.table()[0].share, 1.0);
    }

    #[test]
    fn one_bad_rating_leaves_a_fair_chance_and_many_leave_little() {
        let l = Learner::new(Some(3));
        l.rate("r0", served("a"), 1);
        let draw = |b: &str| l.estimate(JobType::CodeGeneration, Band::Simple, b, "m", PRIOR).quality_draw;
        let wins = || (0..2000).filter(|_| draw("a") > draw("b")).count();
        let after_one = wins();
        // Beta(3.2, 1.8) against its untried twin's prior Beta(3.2, 0.8): about one in six, and
        // every try that goes well raises it.
        assert!(after_one > 250, "{after_one} of 2000");
        for i in 1..25 {
            l.rate(&format!("r{i}"), served("a"), 1);
        }
        let after_many = wins();
        assert!(after_many < 40, "{after_many} of 2000");
    }

    #[test]
    fn old_evidence_fades_so_a_change_is_followed() {
        let l = Learner::new(Some(1));
        for i in 0..60 {
            l.rate(&format!("good{i}"), served("a"), 5);
        }
        assert!(l.belief(JobType::CodeGeneration, "a", "m", PRIOR).quality > 0.9);
        for i in 0..8 {
            l.rate(&format!("bad{i}"), served("a"), 1);
        }
        // A change: after a handful of ones the fives no longer hold it up.
        let q = l.belief(JobType::CodeGeneration, "a", "m", PRIOR).quality;
        assert!(q < 0.5, "{q}");
        for i in 8..40 {
            l.rate(&format!("bad{i}"), served("a"), 1);
        }
        // Without fading, 60 fives and 40 ones would still read about 0.6.
        let q = l.belief(JobType::CodeGeneration, "a", "m", PRIOR).quality;
        assert!(q < 0.35, "{q}");
        // The table still counts every rating.
        assert_eq!(l.table()[0].ratings, 100);
    }

    #[test]
    fn a_band_refines_its_job_type_and_follows_it_without_evidence() {
        let l = Learner::new(Some(1));
        let at = |band| Served::new(JobType::CodeGeneration, Some(band), "local", "m");
        for i in 0..20 {
            l.rate(&format!("s{i}"), at(Band::Simple), 5);
            l.rate(&format!("h{i}"), at(Band::Hard), 1);
        }
        let q = |band| l.estimate(JobType::CodeGeneration, band, "local", "m", PRIOR).quality;
        assert!(q(Band::Simple) > 0.8, "{}", q(Band::Simple));
        assert!(q(Band::Hard) < 0.3, "{}", q(Band::Hard));
        // Another job type's bands have no ratings: they read their type's belief.
        l.rate("g", Served::new(JobType::General, None, "local", "m"), 5);
        let coarse = l.belief(JobType::General, "local", "m", PRIOR).quality;
        assert!((l.estimate(JobType::General, Band::Hard, "local", "m", PRIOR).quality - coarse).abs() < 1e-9);
    }

    #[test]
    fn a_rating_that_comes_while_answering_is_kept() {
        let l = Learner::new(Some(1));
        l.expect("r", served("a"));
        let s = l.lookup("r").unwrap();
        l.rate("r", s, 4);
        l.served("r", served("a"));
        assert_eq!(l.lookup("r").unwrap().rating, Some(4));
    }

    #[test]
    fn what_is_known_of_a_backend_ages_while_others_get_the_traffic() {
        let l = Learner::new(Some(1));
        for i in 0..10 {
            l.rate(&format!("b{i}"), served("b"), 1);
        }
        let before = l.belief(JobType::CodeGeneration, "b", "m", PRIOR).quality;
        assert!(before < 0.3, "{before}");
        for i in 0..90 {
            l.rate(&format!("a{i}"), served("a"), 5);
        }
        // Three half-lives of the job type's ratings later, b is back near its prior: worth trying.
        let after = l.belief(JobType::CodeGeneration, "b", "m", PRIOR).quality;
        assert!(after > 0.6, "{before} -> {after}");
    }
}
