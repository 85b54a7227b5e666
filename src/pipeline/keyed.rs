//! What a virtual key adds to a request: its requests per minute first, its model allowlist and
//! tokens per minute when the body is read, its budget on the plan (a reservation of the plan's
//! most expensive try, or only the free local backends once the budget is spent), and the
//! settlement when the request ends. With replicas, the limits and the budget are one round
//! trip to Redis, on the plan.

use super::admit::shared;
use super::exchange::{Caller, Exchange};
use crate::decide::route::{Ask, Decision};
use crate::error::ApiError;
use crate::state::gateway::Gateway;
use crate::state::keys::{KeySpec, OnBudget, Scope};
use crate::state::replicas::budgets::Admitted;
use std::time::Duration;

/// A virtual key's requests per minute, before anything else is done for it. With replicas
/// they are counted with the rest of its admission, in one round trip to Redis (`plan`).
pub fn requests(gateway: &Gateway, caller: &Caller) -> Result<(), ApiError> {
    match caller.key() {
        Some(key) if gateway.shared.replicas.is_none() => requests_here(gateway, &key.spec),
        _ => Ok(()),
    }
}

/// The key's requests per minute as this process counts them.
fn requests_here(gateway: &Gateway, key: &KeySpec) -> Result<(), ApiError> {
    let Some(rpm) = key.rpm else { return Ok(()) };
    gateway.shared.key_limits.request(&key.name, rpm).map_err(|wait| too_many_requests(key, rpm, wait))
}

fn too_many_requests(key: &KeySpec, rpm: u32, wait: Duration) -> ApiError {
    metrics::counter!("hermes_rate_limited_total", "scope" => "key").increment(1);
    ApiError::rate_limited(format!("The key '{}' may send {rpm} requests per minute.", key.name), wait.as_secs_f64().ceil() as u64)
}

fn too_many_tokens(key: &KeySpec, tpm: u32, wait: Duration) -> ApiError {
    metrics::counter!("hermes_rate_limited_total", "scope" => "key").increment(1);
    ApiError::rate_limited(format!("The key '{}' may use {tpm} tokens per minute.", key.name), wait.as_secs_f64().ceil() as u64)
}

/// The model is one the key may use, and (on one replica) its prompt fits the key's tokens per
/// minute: the estimate is taken now, the rest of the real usage when the request ends.
pub fn admit(gateway: &Gateway, ex: &mut Exchange, key: &KeySpec, model: &str, prompt_tokens: u64) -> Result<(), ApiError> {
    if !allowed(key, model) && model != "auto" {
        return Err(ApiError::model_not_allowed(&key.name, model));
    }
    if gateway.shared.replicas.is_none() {
        tokens_here(gateway, ex, key, prompt_tokens)?;
    }
    Ok(())
}

/// The prompt's tokens from the key's minute, as this process counts them.
fn tokens_here(gateway: &Gateway, ex: &mut Exchange, key: &KeySpec, prompt_tokens: u64) -> Result<(), ApiError> {
    let Some(tpm) = key.tpm else { return Ok(()) };
    gateway.shared.key_limits.take_tokens(&key.name, tpm, prompt_tokens).map_err(|wait| too_many_tokens(key, tpm, wait))?;
    ex.tokens_held = prompt_tokens;
    Ok(())
}

fn allowed(key: &KeySpec, model: &str) -> bool {
    key.models.is_empty() || key.models.iter().any(|m| m == model)
}

/// The plan as the key's allowlist and budget leave it. The budget holds the cost of the
/// dearest try the plan may make, so that requests in flight together cannot overspend it.
pub async fn plan(
    gateway: &Gateway,
    ex: &mut Exchange,
    key: &KeySpec,
    ask: &Ask<'_>,
    mut decision: Decision,
    attempts: usize,
    prompt_tokens: u64,
) -> Result<Decision, ApiError> {
    decision.candidates.retain(|c| allowed(key, &c.model));
    if decision.candidates.is_empty() {
        return Err(ApiError::model_not_allowed(&key.name, ask.model));
    }
    let estimate = decision.candidates.iter().take(attempts).map(|c| c.estimated_cost_cents).fold(0.0, f64::max);
    let book = &gateway.shared.keys;
    let taken = if key.tpm.is_some() { prompt_tokens } else { 0 };
    let reserved = match shared(gateway, true, |r| r.admit(book, key, estimate, prompt_tokens)).await? {
        None if gateway.shared.replicas.is_none() => book.reserve(key, estimate),
        // Redis is away (fail open): this replica's own counters.
        None => {
            requests_here(gateway, key)?;
            tokens_here(gateway, ex, key, prompt_tokens)?;
            book.reserve(key, estimate)
        }
        Some(Admitted::Requests(wait)) => return Err(too_many_requests(key, key.rpm.unwrap_or(0), wait)),
        Some(Admitted::Tokens(wait)) => return Err(too_many_tokens(key, key.tpm.unwrap_or(0), wait)),
        // Redis took the prompt's tokens from the key's minute (also when a budget refused it).
        Some(Admitted::Held(r)) => {
            ex.tokens_held = taken;
            Ok(r)
        }
        Some(Admitted::Budget(spent)) => {
            ex.tokens_held = taken;
            Err(spent)
        }
    };
    let spent = match reserved {
        Ok(r) => {
            ex.reservation = Some(r);
            return Ok(decision);
        }
        Err(spent) => spent,
    };
    let whose = match &spent.scope {
        Scope::Key(n) => format!("the key '{n}'"),
        Scope::Team(n) => format!("the team '{n}'"),
    };
    if key.on_budget == OnBudget::Refuse {
        return Err(ApiError::key_budget_spent(&whose, &spent, ""));
    }
    // `--on-budget local`: free local backends only, never a paid one.
    let local = Ask {
        model: ask.model,
        job: ask.job,
        criteria: ask.criteria,
        criteria_requested: ask.criteria_requested,
        budget_cents: 0.0,
        local_only: true,
        pinned: None,
    };
    let refused = || ApiError::key_budget_spent(&whose, &spent, &format!(", and no free local backend serves `{}`", ask.model));
    let mut free = gateway.decide(&local).map_err(|_| refused())?;
    free.candidates.retain(|c| allowed(key, &c.model) && c.estimated_cost_cents == 0.0 && gateway.config.backends[c.backend].kind.is_local());
    if free.candidates.is_empty() {
        return Err(refused());
    }
    ex.budget_exhausted = true;
    Ok(free)
}

/// The answer's cost is known (or the request ended without one): its hold on the budget
/// becomes what it cost, at once and only once. Settled before a whole answer's head is
/// written, so that its `x-hermes-budget-remaining-cents` counts every answer settled before it.
pub fn settle_spend(gateway: &Gateway, ex: &mut Exchange) {
    if std::mem::replace(&mut ex.spend_settled, true) {
        return;
    }
    let Some(key) = ex.caller.key() else { return };
    let cost = ex.cost_cents.unwrap_or(0.0);
    if let Some(r) = ex.reservation.take() {
        ex.budget_left = gateway.shared.keys.settle(&r, cost);
        // Off the answer's path: what Redis misses now, the reconciliation writes again.
        if let Some(replicas) = &gateway.shared.replicas {
            let (shared, book) = (replicas.clone(), gateway.shared.keys.clone());
            replicas.spawn(async move {
                let _ = shared.settle(&book, &r).await;
            });
        }
    }
    if cost > 0.0 {
        let team = key.spec.team.clone().unwrap_or_default();
        metrics::gauge!("hermes_key_spend_cents_total", "key" => key.spec.name.clone(), "team" => team).increment(cost);
    }
}

/// The request has ended: its spend is settled if it was not yet, and its answer's tokens
/// count against the key's minute.
pub fn settle(gateway: &Gateway, ex: &mut Exchange) {
    settle_spend(gateway, ex);
    let Some(key) = ex.caller.key() else { return };
    let (Some(tpm), Some(u)) = (key.spec.tpm, ex.usage) else { return };
    let more = (u.prompt_tokens + u.completion_tokens) as i64 - ex.tokens_held as i64;
    gateway.shared.key_limits.charge_tokens(&key.spec.name, more);
    if let Some(replicas) = &gateway.shared.replicas {
        let (shared, name) = (replicas.clone(), key.spec.name.clone());
        replicas.spawn(async move {
            let _ = shared.charge_tokens(&name, tpm, more).await;
        });
    }
}

/// `x-hermes-budget-remaining-cents`: what the tightest budget over the key and its team has
/// left after this answer (its cost when known, else what it holds).
pub fn remaining_after(gateway: &Gateway, ex: &Exchange) -> Option<f64> {
    let key = ex.caller.key()?;
    if let Some(left) = ex.budget_left {
        return Some(left);
    }
    let left = gateway.shared.keys.remaining(&key.spec)?;
    let this = ex.cost_cents.or(ex.reservation.as_ref().map(|r| r.cents)).unwrap_or(0.0);
    Some((left - this).max(0.0))
}
