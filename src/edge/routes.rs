//! The paths Hermes answers: the API calls go to the pipeline, Hermes's own endpoints to the
//! operator handlers (`ops::admin`), anything else is 404 or 405 in OpenAI's shape.

use crate::doors::openai::Endpoint;
use crate::doors::DoorKind;
use crate::error::ApiError;
use crate::ops::{admin, keys};
use crate::pipeline::answer::{response_head, send_error, send_json, send_whole};
use crate::pipeline::exchange::Exchange;
use crate::pipeline::{admit, attempt, Downstream};
use crate::state::gateway::{Gateway, Live};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// What an operator endpoint answers with.
enum Answer {
    Json(serde_json::Value),
    Bytes(Bytes, &'static str),
}

/// Every path Hermes knows, for the 405 on a wrong method.
const PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/embeddings",
    "/v1/models",
    "/health",
    "/metrics",
    "/feedback",
    "/admin/backends",
    "/admin/reload",
    "/admin/stats",
    "/admin/compare",
    "/admin/migration",
    "/admin/keys",
    "/admin/teams",
    "/admin/export",
];

pub async fn handle<D: Downstream>(gateway: &Arc<Gateway>, live: &Live, down: &mut D, ex: &mut Exchange) {
    let (method, path) = (down.method().to_string(), down.path().to_string());
    if path.starts_with("/v1/messages") {
        // Anthropic's clients read Anthropic's error shape, also for a wrong path or method here.
        ex.door = DoorKind::Messages;
    }
    let api = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/chat/completions") => Some((Endpoint::ChatCompletions, DoorKind::OpenAi)),
        ("POST", "/v1/embeddings") => Some((Endpoint::Embeddings, DoorKind::OpenAi)),
        ("POST", "/v1/responses") => Some((Endpoint::ChatCompletions, DoorKind::Responses)),
        ("POST", "/v1/messages") => Some((Endpoint::ChatCompletions, DoorKind::Messages)),
        _ => None,
    };
    match api {
        Some((endpoint, door)) => attempt::serve(gateway, down, ex, endpoint, door).await,
        // Boxed: the other endpoints' futures (Redis, exports) would otherwise set the size of
        // every API call's future, held streams included.
        None => Box::pin(own_endpoint(gateway, live, down, ex, &method, &path)).await,
    }
}

/// Everything but the API calls: Hermes's own endpoints, and the 404s and 405s.
async fn own_endpoint<D: Downstream>(gateway: &Arc<Gateway>, live: &Live, down: &mut D, ex: &mut Exchange, method: &str, path: &str) {
    let answered: Result<Answer, ApiError> = match (method, path) {
        ("POST", "/v1/messages/count_tokens") => match admit::authorize(gateway, down).await {
            Ok(_) => match down.read_body(gateway.config.max_body_bytes, gateway.config.body_read_timeout).await {
                Ok(raw) => crate::doors::openai::json_object(&raw).and_then(|b| crate::doors::messages::count_tokens(&b)).map(Answer::Json),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        ("GET" | "DELETE", p) if p.starts_with("/v1/responses/") => match admit::authorize(gateway, down).await {
            Ok(_) => stored_response(gateway, method, &p["/v1/responses/".len()..], down.client_key()).map(Answer::Json),
            Err(e) => Err(e),
        },
        ("GET", "/health") => Ok(Answer::Json(admin::health(gateway))),
        ("GET", "/metrics") => Ok(Answer::Bytes(admin::metrics(gateway), "text/plain; version=0.0.4; charset=utf-8")),
        ("GET", "/v1/models") => match admit::authorize(gateway, down).await {
            Ok(_) => Ok(Answer::Bytes(admin::models(gateway).await, "application/json")),
            Err(e) => Err(e),
        },
        ("POST", "/feedback") => match admit::authorize(gateway, down).await {
            Ok(caller) => match small_body(down).await {
                Ok(body) => admin::rate(gateway, &body, admit::client_of(&caller, down).as_deref()).await.map(Answer::Json),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        ("GET", "/admin/backends")
        | ("POST", "/admin/reload")
        | ("GET", "/admin/stats")
        | ("POST", "/admin/compare")
        | ("GET", "/admin/migration")
        | ("POST", "/admin/migration")
        | ("POST", "/admin/export")
        | ("GET" | "POST", "/admin/keys" | "/admin/teams") => operator(gateway, live, down, method, path).await,
        ("GET" | "DELETE", p) if p.starts_with("/admin/keys/") => operator(gateway, live, down, method, path).await,
        (_, p) if PATHS.contains(&p) => Err(ApiError::method_not_allowed(method, path)),
        _ => Err(ApiError::unknown_path(method, path)),
    };
    match answered {
        Ok(Answer::Json(v)) => send_json(gateway, down, ex, 200, Bytes::from(v.to_string())).await,
        Ok(Answer::Bytes(body, content_type)) => {
            let mut head = response_head(gateway, ex, 200);
            head.set("content-type", content_type);
            send_whole(down, ex, head, body).await;
        }
        Err(e) => send_error(gateway, down, ex, &e).await,
    }
}

/// `/admin/*`: HERMES_ADMIN_KEY, or loopback while it is unset.
async fn operator<D: Downstream>(gateway: &Arc<Gateway>, live: &Live, down: &mut D, method: &str, path: &str) -> Result<Answer, ApiError> {
    admin::authorize(gateway, down.bearer(), down.peer_ip())?;
    Ok(Answer::Json(match (method, path) {
        ("POST", "/admin/reload") => admin::reload(live)?,
        ("GET", "/admin/stats") => admin::stats(gateway),
        ("POST", "/admin/compare") => admin::compare(gateway, &small_body(down).await?).await?,
        ("GET", "/admin/migration") => admin::migration(gateway),
        ("POST", "/admin/migration") => admin::steer(gateway, &small_body(down).await?)?,
        ("POST", "/admin/keys") => keys::create_key(gateway, &small_body(down).await?).await?,
        ("GET", "/admin/keys") => keys::list_keys(gateway),
        ("POST", "/admin/teams") => keys::create_team(gateway, &small_body(down).await?).await?,
        ("GET", "/admin/teams") => keys::list_teams(gateway),
        ("POST", "/admin/export") => admin::export(gateway, &small_body(down).await?).await?,
        ("DELETE", p) if p.starts_with("/admin/keys/") => keys::revoke_key(gateway, &p["/admin/keys/".len()..]).await?,
        ("GET", p) if p.starts_with("/admin/keys/") => keys::show_key(gateway, &p["/admin/keys/".len()..])?,
        _ => admin::backends(gateway),
    }))
}

/// `GET` or `DELETE /v1/responses/{id}`: only the key that stored a response sees it.
fn stored_response(gateway: &Gateway, method: &str, id: &str, client_key: Option<&str>) -> Result<serde_json::Value, ApiError> {
    let owner = crate::state::responses::owner(client_key);
    let missing = || ApiError::not_found(format!("Response with id '{id}' not found."), "response_id", "response_not_found");
    let store = &gateway.shared.responses;
    if method == "DELETE" {
        return if store.delete(id, &owner) { Ok(serde_json::json!({"id": id, "object": "response.deleted", "deleted": true})) } else { Err(missing()) };
    }
    store.get(id, &owner).map(|s| s.response.clone()).ok_or_else(missing)
}

/// The small JSON object an operator endpoint takes.
async fn small_body<D: Downstream>(down: &mut D) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let raw = down.read_body(64 * 1024, Duration::from_secs(10)).await?;
    admin::object(&raw)
}
