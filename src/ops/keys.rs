//! `/admin/keys` and `/admin/teams`: make, list, show and revoke virtual keys; make and list
//! teams. A new key's secret is in the creation answer and nowhere else; every change is written
//! to the analytics file before it is answered.

use crate::error::{ApiError, Kind};
use crate::state::analytics::Event;
use crate::state::gateway::Gateway;
use crate::state::keys::{Budget, KeyRecord, KeySpec, OnBudget, Scope, TeamRecord, Window};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

type Body = Map<String, Value>;

fn bad(message: String, field: &str) -> ApiError {
    ApiError::bad_request(message, Some(field))
}

fn text(body: &Body, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Some(_) => Err(bad(format!("`{field}` must be a non-empty string."), field)),
    }
}

fn whole(body: &Body, field: &str) -> Result<Option<u32>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0) {
            Some(n) => Ok(Some(n)),
            None => Err(bad(format!("`{field}` must be a whole number above 0."), field)),
        },
    }
}

/// `budget_usd` and `budget_window` as a budget.
fn budget(body: &Body) -> Result<Option<Budget>, ApiError> {
    let window = match text(body, "budget_window")? {
        None => Window::default(),
        Some(w) => Window::parse(&w).ok_or_else(|| bad(format!("`budget_window` '{w}' is not day, week or month."), "budget_window"))?,
    };
    match body.get("budget_usd") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64().filter(|d| d.is_finite() && *d >= 0.0) {
            Some(usd) => Ok(Some(Budget { cents: usd * 100.0, window })),
            None => Err(bad("`budget_usd` must be a number of dollars, 0 or more.".into(), "budget_usd")),
        },
    }
}

fn key_spec(body: &Body) -> Result<KeySpec, ApiError> {
    let name = text(body, "name")?.ok_or_else(|| bad("`name` is required: what logs, metrics and the analytics file call this key.".into(), "name"))?;
    let models = match body.get("models") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_string).collect(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(_) => return Err(bad("`models` must be a list of model names.".into(), "models")),
    };
    let privacy_local = match text(body, "privacy")?.as_deref() {
        None => false,
        Some("local") => true,
        Some(p) => return Err(bad(format!("`privacy` '{p}' is not `local`."), "privacy")),
    };
    let on_budget = match text(body, "on_budget")? {
        None => OnBudget::default(),
        Some(o) => OnBudget::parse(&o).ok_or_else(|| bad(format!("`on_budget` '{o}' is not refuse or local."), "on_budget"))?,
    };
    Ok(KeySpec { name, team: text(body, "team")?, budget: budget(body)?, rpm: whole(body, "rpm")?, tpm: whole(body, "tpm")?, models, privacy_local, on_budget })
}

/// Writes the change and waits (briefly) until the file has it.
async fn persist(gateway: &Gateway, event: Event) -> Result<(), ApiError> {
    let analytics = gateway.analytics().clone();
    let written = analytics.offer(event) && tokio::task::spawn_blocking(move || analytics.flush(Duration::from_secs(10))).await.unwrap_or(false);
    if written {
        Ok(())
    } else {
        Err(ApiError::new(Kind::Internal, "The change is in force but could not be written to the analytics file; it will not survive a restart."))
    }
}

/// Tells the other replicas (through Redis); while Redis is away they learn of it when it
/// returns (the key book's follower puts there what only this replica has).
async fn share_key(gateway: &Gateway, k: &KeyRecord) {
    if let Some(r) = &gateway.shared.replicas {
        if r.publish_key(k).await.is_err() {
            log::warn!("key '{}': Redis is away; the other replicas learn of it when it is back", k.spec.name);
        }
    }
}

fn spend_view(gateway: &Gateway, scope: &Scope) -> Value {
    match gateway.shared.keys.spend(scope) {
        None => Value::Null,
        Some((spent, b)) => {
            let (start, end) = b.window.around(chrono::Utc::now());
            json!({"window": b.window.as_str(), "window_start": start.to_rfc3339(), "resets_at": end.to_rfc3339(),
                   "budget_usd": b.cents / 100.0, "spent_usd": spent / 100.0, "remaining_usd": b.left_after(spent) / 100.0})
        }
    }
}

fn key_view(gateway: &Gateway, k: &KeyRecord) -> Value {
    let s = &k.spec;
    let on_budget = match s.on_budget {
        OnBudget::Refuse => "refuse",
        OnBudget::Local => "local",
    };
    json!({
        "name": s.name,
        "team": s.team,
        "budget_usd": s.budget.map(|b| b.cents / 100.0),
        "budget_window": s.budget.map(|b| b.window.as_str()),
        "rpm": s.rpm,
        "tpm": s.tpm,
        "models": s.models,
        "privacy": s.privacy_local.then_some("local"),
        "on_budget": on_budget,
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
        "spend": spend_view(gateway, &Scope::Key(s.name.clone())),
    })
}

fn team_view(gateway: &Gateway, t: &TeamRecord) -> Value {
    let members: Vec<String> = gateway.shared.keys.keys().iter().filter(|k| k.spec.team.as_deref() == Some(&t.name)).map(|k| k.spec.name.clone()).collect();
    json!({
        "name": t.name,
        "budget_usd": t.budget.map(|b| b.cents / 100.0),
        "budget_window": t.budget.map(|b| b.window.as_str()),
        "created_at": t.created_at,
        "keys": members,
        "spend": spend_view(gateway, &Scope::Team(t.name.clone())),
    })
}

/// `POST /admin/keys`: the new key, shown this once.
pub async fn create_key(gateway: &Gateway, body: &Body) -> Result<Value, ApiError> {
    let spec = key_spec(body)?;
    let (record, secret) = gateway.shared.keys.create(spec).map_err(|e| bad(e, "name"))?;
    persist(gateway, Event::Key(Arc::new(record.clone()))).await?;
    share_key(gateway, &record).await;
    let mut view = key_view(gateway, &record);
    view["key"] = secret.into();
    Ok(view)
}

pub fn list_keys(gateway: &Gateway) -> Value {
    json!({"keys": gateway.shared.keys.keys().iter().map(|k| key_view(gateway, k)).collect::<Vec<_>>()})
}

fn no_key(name: &str) -> ApiError {
    ApiError::not_found(format!("There is no key named '{name}'."), "name", "key_not_found")
}

pub fn show_key(gateway: &Gateway, name: &str) -> Result<Value, ApiError> {
    gateway.shared.keys.named(name).map(|k| key_view(gateway, &k)).ok_or_else(|| no_key(name))
}

/// `DELETE /admin/keys/{name}`: refused from the next request on.
pub async fn revoke_key(gateway: &Gateway, name: &str) -> Result<Value, ApiError> {
    let record = gateway.shared.keys.revoke(name).ok_or_else(|| no_key(name))?;
    persist(gateway, Event::Key(Arc::new(record.clone()))).await?;
    share_key(gateway, &record).await;
    Ok(key_view(gateway, &record))
}

/// `POST /admin/teams` `{"name", "budget_usd"?, "budget_window"?}`; posting an existing team's
/// name changes its budget.
pub async fn create_team(gateway: &Gateway, body: &Body) -> Result<Value, ApiError> {
    let name = text(body, "name")?.ok_or_else(|| bad("`name` is required.".into(), "name"))?;
    let team = gateway.shared.keys.create_team(&name, budget(body)?).map_err(|e| bad(e, "name"))?;
    persist(gateway, Event::Team(Arc::new(team.clone()))).await?;
    if let Some(r) = &gateway.shared.replicas {
        if r.publish_team(&team).await.is_err() {
            log::warn!("team '{}': Redis is away; the other replicas learn of it when it is back", team.name);
        }
    }
    Ok(team_view(gateway, &team))
}

pub fn list_teams(gateway: &Gateway) -> Value {
    json!({"teams": gateway.shared.keys.teams().iter().map(|t| team_view(gateway, t)).collect::<Vec<_>>()})
}
