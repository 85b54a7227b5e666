//! Moving traffic from one backend to another on a running gateway, the spec's three ways:
//! `immediate_cutover`, `gradual_migration` (10%, 50%, 100% with checks between stages) and
//! `parallel_testing` (shadow traffic, compared). Plans are pure; `apply` carries them out through
//! `/admin/migration` (steering) and `/admin/stats` (the learned statistics the checks read), and
//! every step lands in the analytics file's `migration_steps`.

use crate::ops::remote::{Asked, Remote};
use crate::ops::steering::{ShadowTarget, StageTally, Steering};
use crate::state::analytics::record::MigrationStepRecord;
use crate::state::config::Config;
use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    ImmediateCutover,
    GradualMigration,
    ParallelTesting,
}

impl Strategy {
    pub fn parse(s: &str) -> Result<Strategy, String> {
        match s {
            "immediate_cutover" => Ok(Strategy::ImmediateCutover),
            "gradual_migration" => Ok(Strategy::GradualMigration),
            "parallel_testing" => Ok(Strategy::ParallelTesting),
            other => Err(format!("--strategy: '{other}' is not immediate_cutover, gradual_migration or parallel_testing")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::ImmediateCutover => "immediate_cutover",
            Strategy::GradualMigration => "gradual_migration",
            Strategy::ParallelTesting => "parallel_testing",
        }
    }
}

/// What carrying out a step means.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// Put this steering in force.
    Steer(Steering),
    /// Wait until the backend has no request in flight.
    WaitIdle(String),
    /// Let a stage run, then check the new backend against the old one.
    Check,
    /// Let the shadow run, then report how the answers compared.
    Report,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub step: u32,
    pub action: &'static str,
    pub description: String,
    pub act: Act,
}

fn share(to: &str, share: f64) -> HashMap<String, f64> {
    HashMap::from([(to.to_string(), share)])
}

pub fn plan(from: &str, to: &str, strategy: Strategy) -> Vec<Step> {
    let steps: Vec<(&'static str, String, Act)> = match strategy {
        Strategy::ImmediateCutover => {
            let drained = Steering { drained: vec![from.into()], ..Steering::default() };
            let cut = Steering { primary: Some(to.into()), ..drained.clone() };
            vec![
                ("disable_new_jobs_on_old_backend", format!("Stop sending new jobs to {from}"), Act::Steer(drained.clone())),
                ("wait_for_current_jobs_completion", format!("Wait for running jobs on {from} to complete"), Act::WaitIdle(from.into())),
                ("enable_new_backend", format!("Enable {to} for new jobs"), Act::Steer(drained)),
                ("update_default_backend", format!("Set {to} as primary backend"), Act::Steer(cut)),
                ("monitor_performance", format!("Monitor {to} performance for one stage, then check it against {from}"), Act::Check),
            ]
        }
        Strategy::GradualMigration => {
            let full = Steering { shares: share(to, 1.0), primary: Some(to.into()), ..Steering::default() };
            vec![
                ("enable_parallel_backends", format!("Enable both {from} and {to}"), Act::Steer(Steering::default())),
                ("route_10_percent_to_new", format!("Send 10% of traffic to {to}"), Act::Steer(Steering { shares: share(to, 0.1), ..Steering::default() })),
                ("monitor_and_validate", format!("Monitor {to} performance and quality; go on only if it is not worse than {from}"), Act::Check),
                (
                    "increase_traffic_50_percent",
                    format!("Shift 50% of traffic to {to}"),
                    Act::Steer(Steering { shares: share(to, 0.5), ..Steering::default() }),
                ),
                ("validate_and_monitor", "Continue monitoring at 50% traffic; go on only if the checks pass".to_string(), Act::Check),
                ("complete_cutover", format!("Send 100% of traffic to {to}"), Act::Steer(full.clone())),
                ("disable_old_backend", format!("Decommission {from}: it takes no new jobs"), Act::Steer(Steering { drained: vec![from.into()], ..full })),
                ("wait_for_current_jobs_completion", format!("Wait for the jobs still running on {from} to complete"), Act::WaitIdle(from.into())),
            ]
        }
        Strategy::ParallelTesting => vec![
            (
                "start_parallel_testing",
                format!("Send a copy of every request {from} answers to {to} as shadow traffic (never returned to clients)"),
                Act::Steer(Steering { shadow: Some(ShadowTarget { backend: to.into(), share: 1.0 }), ..Steering::default() }),
            ),
            ("compare_results", format!("Compare {to}'s answers with {from}'s for one stage: errors, latency, similarity"), Act::Report),
            ("stop_parallel_testing", "Stop the shadow traffic; routing is as configured again".to_string(), Act::Steer(Steering::default())),
        ],
    };
    steps.into_iter().enumerate().map(|(i, (action, description, act))| Step { step: i as u32 + 1, action, description, act }).collect()
}

/// The plan for the real configuration, as `hermes migrate plan` prints it.
pub fn render_plan(config: &Config, from: &str, to: &str, strategy: Strategy) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(out, "migration plan: {from} → {to}, {}", strategy.as_str());
    for name in [from, to] {
        let b = config.backend(name).ok_or_else(|| format!("'{name}' is not an enabled backend (HERMES_BACKENDS_ENABLED)"))?;
        let models: Vec<String> = b
            .models
            .iter()
            .map(|m| {
                let p = config.price(b, m);
                format!("{m} (${}/M in, ${}/M out)", p.input_per_mtok, p.output_per_mtok)
            })
            .collect();
        let _ = writeln!(
            out,
            "  {:<5} {name}: {} at {}, models {}",
            if name == from { "from" } else { "to" },
            b.kind.as_str(),
            crate::state::config::redact_url(&b.base_url),
            if models.is_empty() { "any".to_string() } else { models.join(", ") }
        );
    }
    if from == to {
        return Err("--from and --to name the same backend".into());
    }
    for s in plan(from, to, strategy) {
        let _ = writeln!(out, "  {}. {:<34} {}", s.step, s.action, s.description);
    }
    if strategy == Strategy::GradualMigration {
        let _ = writeln!(
            out,
            "  checks: {to}'s error rate, p50 latency and rating must not be worse than {from}'s by the margin (--margin); a failed check rolls back"
        );
    }
    Ok(out)
}

/// How a stage's check compares the two backends, from the learned statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    pub jobs: u64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub rating: Option<f64>,
}

/// One backend's figures over the stage just run (what it did since the steering last changed).
pub fn stage_standing(tally: Option<&StageTally>) -> Standing {
    let Some(t) = tally else { return Standing { jobs: 0, error_rate: 0.0, p50_ms: None, rating: None } };
    let mut latencies = t.latencies_ms.clone();
    latencies.sort_by(f64::total_cmp);
    Standing {
        jobs: t.jobs,
        error_rate: if t.jobs > 0 { t.failures as f64 / t.jobs as f64 } else { 0.0 },
        p50_ms: latencies.get(latencies.len() / 2).copied(),
        rating: (t.ratings > 0).then(|| t.rating_sum / t.ratings as f64),
    }
}

/// Latency jitter allowed on top of the relative margin (fast backends differ by noise).
const LATENCY_SLACK_MS: f64 = 20.0;

/// Whether the new backend is no worse than the old by `margin` (0.1 = 10 points of error rate,
/// 10% of latency, 0.4 of a rating star); Err says which check failed.
pub fn verdict(old: &Standing, new: &Standing, margin: f64) -> Result<String, String> {
    if new.jobs == 0 {
        return Err("the new backend answered no request during the stage: no evidence".into());
    }
    if new.error_rate > old.error_rate + margin {
        return Err(format!("error rate {:.1}% against {:.1}%", new.error_rate * 100.0, old.error_rate * 100.0));
    }
    if let (Some(n), Some(o)) = (new.p50_ms, old.p50_ms) {
        if n > o * (1.0 + margin) + LATENCY_SLACK_MS {
            return Err(format!("p50 latency {n:.1} ms against {o:.1} ms"));
        }
    }
    if let (Some(n), Some(o)) = (new.rating, old.rating) {
        if n < o - 4.0 * margin {
            return Err(format!("rating {n:.2} against {o:.2}"));
        }
    }
    Ok(format!(
        "{} jobs, error rate {:.1}% (old {:.1}%), p50 {} (old {}), rating {} (old {})",
        new.jobs,
        new.error_rate * 100.0,
        old.error_rate * 100.0,
        new.p50_ms.map_or("-".into(), |v| format!("{v:.1} ms")),
        old.p50_ms.map_or("-".into(), |v| format!("{v:.1} ms")),
        new.rating.map_or("-".into(), |v| format!("{v:.2}")),
        old.rating.map_or("-".into(), |v| format!("{v:.2}")),
    ))
}

impl Remote {
    fn call(&self, path: &str, body: Option<serde_json::Value>) -> Result<serde_json::Value, String> {
        match self.ask(path, body)? {
            Asked::Answer(v) => Ok(v),
            Asked::NoGateway(why) => Err(format!("{why}: migrations run on a live gateway (--url)")),
        }
    }

    fn steer(&self, steering: &Steering, step: MigrationStepRecord) -> Result<serde_json::Value, String> {
        self.call("/admin/migration", Some(serde_json::json!({"steering": steering, "step": step})))
    }
}

/// Carry the plan out step by step; a failed check rolls back to the configuration and errs.
pub fn apply(target: &Remote, from: &str, to: &str, strategy: Strategy, stage: Duration, margin: f64, mut log: impl FnMut(&str)) -> Result<(), String> {
    let id = format!("mig_{:012x}", fastrand::u64(..) >> 16);
    let record = |s: &Step, outcome: &str, detail: Option<String>| MigrationStepRecord {
        migration_id: id.clone(),
        strategy: strategy.as_str().into(),
        from: from.into(),
        to: to.into(),
        step: s.step,
        action: s.action.into(),
        description: s.description.clone(),
        outcome: outcome.into(),
        detail,
        steering: String::new(),
    };
    log(&format!("migration {id}: {from} → {to}, {}", strategy.as_str()));
    let mut steering = Steering::default();
    for s in plan(from, to, strategy) {
        let (outcome, detail) = match &s.act {
            Act::Steer(next) => {
                steering = next.clone();
                ("done", None)
            }
            Act::WaitIdle(backend) => {
                let waited = wait_idle(target, backend)?;
                ("done", Some(format!("{backend} idle after {:.1}s", waited.as_secs_f64())))
            }
            Act::Check => {
                std::thread::sleep(stage);
                // This stage alone: a backend that degrades during it fails however good its past.
                let tallies: HashMap<String, StageTally> =
                    serde_json::from_value(target.call("/admin/migration", None)?["stage"].clone()).map_err(|e| e.to_string())?;
                let (old, new) = (stage_standing(tallies.get(from)), stage_standing(tallies.get(to)));
                // With no traffic on the old backend in the stage, the new one is judged alone.
                let old = if old.jobs == 0 { Standing { jobs: 0, error_rate: new.error_rate.min(1.0), ..new } } else { old };
                match verdict(&old, &new, margin) {
                    Ok(detail) => ("passed", Some(detail)),
                    Err(why) => {
                        target.steer(&steering, record(&s, "failed", Some(why.clone())))?;
                        log(&format!("  {}. {:<34} failed: {why}", s.step, s.action));
                        rollback(target, Some((&id, strategy, from, to)))?;
                        log("  rolled back: routing is as configured again");
                        return Err(format!("migration {id} stopped at step {} ({}): {why}; rolled back", s.step, s.action));
                    }
                }
            }
            Act::Report => {
                std::thread::sleep(stage);
                let tally = target.call("/admin/migration", None)?["shadow"][to].clone();
                ("done", Some(shadow_report(&tally)))
            }
        };
        target.steer(&steering, record(&s, outcome, detail.clone()))?;
        log(&format!("  {}. {:<34} {outcome}{}", s.step, s.action, detail.map(|d| format!(": {d}")).unwrap_or_default()));
    }
    Ok(())
}

fn shadow_report(tally: &serde_json::Value) -> String {
    let n = tally["requests"].as_f64().unwrap_or(0.0);
    let errors = tally["errors"].as_f64().unwrap_or(0.0);
    let ok = (n - errors).max(1.0);
    format!(
        "{n:.0} shadowed, {errors:.0} errors, similarity {:.2}, {:.1} ms against the answering backend's {:.1} ms",
        tally["similarity_sum"].as_f64().unwrap_or(0.0) / ok,
        tally["seconds_sum"].as_f64().unwrap_or(0.0) / ok * 1000.0,
        tally["primary_seconds_sum"].as_f64().unwrap_or(0.0) / ok * 1000.0
    )
}

/// Wait (at most five minutes) for a backend's in-flight requests to finish.
fn wait_idle(target: &Remote, backend: &str) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let state = target.call("/admin/migration", None)?;
        if state["in_flight"][backend].as_u64().unwrap_or(0) == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!("{backend} still has requests in flight after 5 minutes"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Clear every migration override: routing is exactly what the configuration says.
pub fn rollback(target: &Remote, of: Option<(&str, Strategy, &str, &str)>) -> Result<Steering, String> {
    let before: Steering = serde_json::from_value(target.call("/admin/migration", None)?["steering"].clone()).map_err(|e| e.to_string())?;
    let step = MigrationStepRecord {
        migration_id: of.map_or_else(|| format!("rollback_{:012x}", fastrand::u64(..) >> 16), |o| o.0.to_string()),
        strategy: of.map_or(String::new(), |o| o.1.as_str().to_string()),
        from: of.map_or(String::new(), |o| o.2.to_string()),
        to: of.map_or(String::new(), |o| o.3.to_string()),
        step: 0,
        action: "rollback".into(),
        description: "Return routing to the configuration".into(),
        outcome: "rolled_back".into(),
        detail: Some(format!("undone: {}", serde_json::to_string(&before).unwrap_or_default())),
        steering: String::new(),
    };
    target.steer(&Steering::default(), step)?;
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(jobs: u64, success: f64, p50: f64, rating: Option<f64>) -> Option<StageTally> {
        let ok = (jobs as f64 * success).round() as u64;
        Some(StageTally {
            jobs,
            failures: jobs - ok,
            latencies_ms: vec![p50; ok as usize],
            ratings: u64::from(rating.is_some()) * jobs,
            rating_sum: rating.unwrap_or(0.0) * jobs as f64,
        })
    }

    fn judged(old: Option<StageTally>, new: Option<StageTally>) -> Result<String, String> {
        verdict(&stage_standing(old.as_ref()), &stage_standing(new.as_ref()), 0.1)
    }

    #[test]
    fn gradual_plan_shifts_10_50_100_then_drains_the_old_backend() {
        let steps = plan("old", "new", Strategy::GradualMigration);
        let shares: Vec<Option<f64>> =
            steps.iter().filter_map(|s| if let Act::Steer(st) = &s.act { Some(st.shares.get("new").copied()) } else { None }).collect();
        assert_eq!(shares, vec![None, Some(0.1), Some(0.5), Some(1.0), Some(1.0)]);
        assert_eq!(steps.iter().filter(|s| s.act == Act::Check).count(), 2);
        assert!(matches!(&steps[6].act, Act::Steer(s) if s.drained == vec!["old".to_string()] && s.primary.as_deref() == Some("new")));
        assert_eq!(plan("a", "b", Strategy::ImmediateCutover)[1].act, Act::WaitIdle("a".into()));
    }

    #[test]
    fn checks_pass_when_the_new_backend_is_no_worse_and_name_what_is_worse() {
        assert!(judged(tally(100, 0.99, 200.0, Some(4.0)), tally(20, 1.0, 190.0, Some(4.2))).is_ok());
        assert!(judged(tally(100, 0.99, 200.0, None), tally(20, 0.5, 190.0, None)).unwrap_err().contains("error rate"));
        assert!(judged(tally(100, 1.0, 200.0, None), tally(20, 1.0, 400.0, None)).unwrap_err().contains("latency"));
        assert!(judged(tally(100, 1.0, 200.0, Some(4.5)), tally(20, 1.0, 200.0, Some(3.0))).unwrap_err().contains("rating"));
        assert!(judged(tally(100, 0.99, 200.0, None), None).unwrap_err().contains("no evidence"));
    }
}
