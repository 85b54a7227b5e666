//! Admission: the client's key, its rate limit, and the routing hints it sent. Anything wrong
//! here is answered before the body is read.

use super::exchange::Caller;
use super::exchange::Exchange;
use super::Downstream;
use crate::error::ApiError;
use crate::state::config::Criteria;
use crate::state::gateway::Gateway;
use crate::state::keys::{digest, VIRTUAL_PREFIX};
use crate::state::limits::ClientVerdict;
use crate::state::replicas::rates::Counted;
use crate::state::replicas::{Down, Replicas};

/// The client's key (`Authorization: Bearer` or `x-api-key`) against HERMES_API_KEYS and the
/// virtual keys. An `hk-` key must be a live virtual key, even on an open gateway; the gateway
/// is open only while no keys of either kind exist. With replicas, an `hk-` key this one does
/// not know yet is looked up in Redis (it may have been made on another a moment ago).
pub async fn authorize<D: Downstream>(gateway: &Gateway, down: &D) -> Result<Caller, ApiError> {
    let keys = &gateway.config.api_keys;
    let given = down.client_key();
    // Every static key is compared, each in constant time.
    if given.is_some_and(|p| keys.iter().fold(false, |found, k| k.matches(p) | found)) {
        return Ok(Caller::Static);
    }
    let book = &gateway.shared.keys;
    match given {
        Some(k) if k.starts_with(VIRTUAL_PREFIX) => {
            let known = match (book.find(k), &gateway.shared.replicas) {
                (Some(found), _) => Some(found),
                (None, Some(r)) => match r.lookup(book, gateway.analytics(), &digest(k)).await {
                    Ok(_) => book.find(k),
                    Err(Down) if r.fail_closed() => return Err(ApiError::shared_state_unavailable()),
                    Err(Down) => None,
                },
                (None, None) => None,
            };
            let key = known.ok_or_else(ApiError::unknown_virtual_key)?;
            // Fail-closed: a virtual key's limits are in Redis, so without it nothing is let by.
            if gateway.shared.replicas.as_ref().is_some_and(|r| r.fail_closed() && !r.up()) {
                return Err(ApiError::shared_state_unavailable());
            }
            Ok(Caller::Virtual(key))
        }
        _ if keys.is_empty() && !book.any_live() => Ok(Caller::Open),
        _ => Err(ApiError::unauthorized()),
    }
}

/// A shared limit's answer, or what to do without it: Err in fail-closed mode, None (count
/// locally) in fail-open mode or without replicas.
pub(crate) async fn shared<'a, T, F: std::future::Future<Output = Result<T, Down>>>(
    gateway: &'a Gateway,
    keyed: bool,
    ask: impl FnOnce(&'a Replicas) -> F,
) -> Result<Option<T>, ApiError> {
    let Some(r) = &gateway.shared.replicas else { return Ok(None) };
    match ask(r).await {
        Ok(v) => Ok(Some(v)),
        Err(Down) if keyed && r.fail_closed() => Err(ApiError::shared_state_unavailable()),
        Err(Down) => Ok(None),
    }
}

/// Whose a request is (its answers in the cache, its ratings): a digest of a key the gateway
/// checked. None on an open gateway, where any token would do.
pub fn client_of<D: Downstream>(caller: &Caller, down: &D) -> Option<String> {
    match caller {
        Caller::Open => None,
        _ => Some(crate::state::responses::owner(down.client_key())),
    }
}

/// The per-request routing hints a client may send.
pub struct Hints {
    pub criteria: Option<Criteria>,
    pub budget_cents: Option<f64>,
    pub local_only: bool,
    pub pinned: Option<String>,
}

pub fn hints<D: Downstream>(down: &D) -> Result<Hints, ApiError> {
    let criteria = match hint(down, "x-hermes-criteria")? {
        None => None,
        Some(v) => Some(
            Criteria::parse(&v)
                .ok_or_else(|| ApiError::bad_request(format!("x-hermes-criteria: '{v}' is not cost_first, quality_first or speed_first."), None))?,
        ),
    };
    let budget_cents = match hint(down, "x-hermes-budget-cents")? {
        None => None,
        Some(v) => Some(
            v.parse::<f64>()
                .ok()
                .filter(|b| b.is_finite() && *b >= 0.0)
                .ok_or_else(|| ApiError::bad_request(format!("x-hermes-budget-cents: '{v}' is not a number of cents."), None))?,
        ),
    };
    let local_only = match hint(down, "x-hermes-privacy")?.as_deref() {
        None => false,
        Some("local") => true,
        Some(v) => return Err(ApiError::bad_request(format!("x-hermes-privacy: '{v}' is not `local`."), None)),
    };
    Ok(Hints { criteria, budget_cents, local_only, pinned: hint(down, "x-hermes-backend")? })
}

/// A routing hint header, trimmed; one that is not readable text is refused rather than
/// ignored (ignoring `x-hermes-privacy: local` would send the request to a paid remote backend).
pub fn hint<D: Downstream>(down: &D, name: &str) -> Result<Option<String>, ApiError> {
    let mut values = down.headers(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!("{name} is sent more than once."), None));
    }
    let text = value.to_str().map_err(|_| ApiError::bad_request(format!("{name} is not readable: only visible ASCII is allowed in a hint."), None))?;
    Ok(Some(text.trim().to_string()).filter(|s| !s.is_empty()))
}

/// HERMES_CLIENT_RATE_LIMIT, per client key (per address when the gateway is open), over
/// every replica when they share Redis (by a digest of the key: Redis never holds one).
pub async fn client_limit<D: Downstream>(gateway: &Gateway, down: &D, ex: &mut Exchange) -> Result<(), ApiError> {
    let Some(limit) = gateway.limits.client_limit() else { return Ok(()) };
    // Keyed by client key; on an open gateway any token would do, so by address instead.
    let address = || down.peer_ip().map(|ip| ip.to_string()).unwrap_or_default();
    let key = if gateway.config.api_keys.is_empty() { address() } else { down.client_key().map(str::to_string).unwrap_or_else(address) };
    let what = format!("client:{}", digest(&key));
    let verdict = match shared(gateway, false, |r| r.request(&what, limit)).await? {
        Some(Counted::Allowed { remaining }) => ClientVerdict::Allowed { limit, remaining },
        Some(Counted::Refused { retry_after }) => ClientVerdict::Refused { limit, retry_after },
        None => gateway.limits.client(&key),
    };
    match verdict {
        ClientVerdict::Unlimited => Ok(()),
        ClientVerdict::Allowed { limit, remaining } => {
            ex.rate_limit = Some((limit, remaining));
            Ok(())
        }
        ClientVerdict::Refused { limit, retry_after } => {
            ex.rate_limit = Some((limit, 0));
            metrics::counter!("hermes_rate_limited_total", "scope" => "client").increment(1);
            Err(ApiError::rate_limited(format!("Rate limit of {limit} requests per minute reached for this client."), retry_after.as_secs_f64().ceil() as u64))
        }
    }
}
