//! The winning answer on its way to the client: whole answers at once (counted, cached,
//! shadowed), streams event by event with their usage read as they pass. A stream that breaks
//! after its first byte ends with an `error` event.

use super::answer::{response_head, send_error, send_whole};
use super::exchange::Exchange;
use super::timer;
use super::{Downstream, Head};
use crate::backends::reply::Reply;
use crate::backends::sse::{usage_from_json, SseScanner};
use crate::doors::openai::ApiRequest;
use crate::doors::{Door, DoorKind, StreamEncoder};
use crate::error::{ApiError, Kind};
use crate::ops::shadow::{answer_text, Primary};
use crate::state::cache::CachedAnswer;
use crate::state::gateway::Gateway;
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::StreamExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What the relay of a winning answer needs beyond the answer itself.
#[derive(Clone, Copy)]
pub struct Relay {
    pub cache_key: Option<u64>,
    pub shadow: Option<usize>,
}

/// What an attempt received before anything reached the client.
pub enum Received {
    /// A whole answer, in any status that does not fail over; `native` as in [`Reply`].
    Whole { status: u16, headers: http::HeaderMap, body: Bytes, native: bool },
    /// A 200 stream that has sent its first data event; `held` is all of it so far.
    Stream { reply: Reply, held: Vec<Bytes>, scanner: SseScanner },
}

/// Relays what was received; the request is done whatever happens on the way to the client.
/// A plain function choosing the future, not an `async fn` around them: that would keep room
/// for what was received beside the relay it was moved into. A whole answer's relay is boxed,
/// so a held stream does not keep room for it either.
pub fn relay_answer<'a, D: Downstream>(
    gateway: &'a Arc<Gateway>,
    down: &'a mut D,
    ex: &'a mut Exchange,
    request: &'a ApiRequest,
    received: Received,
    backend: usize,
    relay: &'a Relay,
) -> impl Future<Output = ()> + Send + 'a {
    match received {
        Received::Stream { reply, held, scanner } => Either::Left(relay_stream(gateway, down, ex, request, reply, held, scanner, backend, relay)),
        Received::Whole { status, headers, body, native } => {
            let relay = if native { Relay { cache_key: None, shadow: relay.shadow } } else { *relay };
            Either::Right(Box::pin(relay_whole(gateway, down, ex, request, status, headers, Answer { body, native }, backend, relay)))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn relay_whole<D: Downstream>(
    gateway: &Arc<Gateway>,
    down: &mut D,
    ex: &mut Exchange,
    request: &ApiRequest,
    status: u16,
    headers: http::HeaderMap,
    answer: Answer,
    backend: usize,
    relay: Relay,
) {
    let Answer { body, native } = answer;
    if !(200..300).contains(&status) {
        // The request's own fault (a 4xx): neutral for health; the body is kept in the door's shape.
        let body = door_shaped(ex.door, status, body);
        let mut head = relay_head(gateway, ex, status, &headers);
        head.set("content-type", "application/json");
        send_whole(down, ex, head, body).await;
        return;
    }
    gateway.record_outcome(backend, true);
    account(gateway, ex, usage_from_json(&body));
    if gateway.config.log_content {
        ex.answer = Some(answer_text(&body));
    }
    if let Some(key) = relay.cache_key {
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
        let answer = CachedAnswer { backend, model: ex.model.clone().unwrap_or_default(), content_type, body: body.clone() };
        gateway.cache.put(key, answer).await;
    }
    if let Some(shadow) = relay.shadow {
        let primary = Primary { backend: gateway.config.backends[backend].name.clone(), status, elapsed: ex.started.elapsed(), text: answer_text(&body) };
        crate::ops::shadow::spawn(gateway.clone(), request.clone(), shadow, ex.request_id.clone(), primary);
    }
    let model = ex.model.clone().unwrap_or_default();
    let body = match native {
        true => body,
        false => match door_body(gateway, down, request, body, &model) {
            Ok(body) => body,
            Err(e) => return send_error(gateway, down, ex, &e).await,
        },
    };
    let mut head = relay_head(gateway, ex, status, &headers);
    if let Some(cost) = ex.cost_cents {
        head.set("x-hermes-cost-cents", format!("{cost:.6}"));
    }
    send_whole(down, ex, head, body).await;
}

/// A whole chat answer in the shape of the request's door; a Responses answer is stored.
pub fn door_body<D: Downstream>(gateway: &Gateway, down: &D, request: &ApiRequest, chat: Bytes, model: &str) -> Result<Bytes, ApiError> {
    let (body, response) = request.door.encode(&chat, model).map_err(|e| ApiError::new(Kind::BackendsFailed, e))?;
    if let Some(response) = response {
        store(gateway, down, request, response);
    }
    Ok(body)
}

/// A finished Responses answer is kept when the request asked (`store`, on by default).
fn store<D: Downstream>(gateway: &Gateway, down: &D, request: &ApiRequest, response: serde_json::Value) {
    let Door::Responses(ctx) = &request.door else { return };
    if ctx.store {
        let owner = crate::state::responses::owner(down.client_key());
        let stored =
            crate::state::responses::Stored { id: ctx.id.clone(), owner, created_at: ctx.created_at, conversation: ctx.continued(&response), response };
        gateway.shared.responses.put(stored);
    }
}

/// A whole answer's body, and whether it is already in the door's shape (not chat completions).
struct Answer {
    body: Bytes,
    native: bool,
}

/// nginx's code for a client that left before the answer was complete.
pub const CLIENT_CLOSED: u16 = 499;

/// A backend's 4xx in the door's error shape.
fn door_shaped(door: DoorKind, status: u16, body: Bytes) -> Bytes {
    let body = openai_shaped(status, body);
    if door != DoorKind::Messages {
        return body;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let message = v["error"]["message"].as_str().unwrap_or("The backend refused the request.");
    door.error_body(&ApiError::upstream(status, message))
}

/// A 4xx body in OpenAI's error shape: kept as is when it already is, wrapped otherwise.
fn openai_shaped(status: u16, body: Bytes) -> Bytes {
    let shaped = serde_json::from_slice::<serde_json::Value>(&body).ok().is_some_and(|v| v.get("error").is_some_and(|e| e.is_object()));
    if shaped {
        return body;
    }
    let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
    ApiError::new(Kind::Upstream(status), format!("The backend refused the request: {}", text.trim())).body()
}

/// The upstream's own status and headers, minus hop-by-hop ones, plus Hermes's.
fn relay_head(gateway: &Gateway, ex: &Exchange, status: u16, headers: &http::HeaderMap) -> Head {
    let mut head = response_head(gateway, ex, status);
    for (name, value) in headers {
        let n = name.as_str();
        let hop = matches!(n, "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "te" | "trailer" | "upgrade" | "proxy-connection");
        // What identifies the upstream account stays behind: cookies, organisation and project
        // ids, and the account's own rate-limit budget.
        let private = matches!(n, "set-cookie" | "openai-organization" | "openai-project" | "anthropic-organization-id")
            || n.starts_with("x-ratelimit-")
            || n.starts_with("anthropic-ratelimit-");
        if !hop && !private && !n.starts_with("x-hermes-") {
            head.headers.append(name.clone(), value.clone());
        }
    }
    head
}

/// Relay a stream as it arrives, whole events at a time: a partial event waits (at most
/// HERMES_MAX_ANSWER_BYTES of it) for the rest, so that when the stream breaks the client's SSE
/// parser sees a clean `error` event rather than one glued to half a line. After the first byte
/// there is no failover: a break becomes that `error` event, so the client never mistakes a cut
/// answer for a whole one.
// A plain function around an `async move` block, not an `async fn`: that would move its
// arguments into locals of its own and keep room for both, the reply and scanner twice in
// every held stream.
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
fn relay_stream<'a, D: Downstream>(
    gateway: &'a Arc<Gateway>,
    down: &'a mut D,
    ex: &'a mut Exchange,
    request: &'a ApiRequest,
    mut reply: Reply,
    held: Vec<Bytes>,
    mut scanner: SseScanner,
    backend: usize,
    relay: &'a Relay,
) -> impl Future<Output = ()> + Send + 'a {
    async move {
        ex.status = reply.status;
        let send_timeout = ex.send_timeout;
        let mut head = relay_head(gateway, ex, reply.status, &reply.headers);
        // Read once, for the head: a held stream need not keep them.
        drop(std::mem::take(&mut reply.headers));
        head.set("transfer-encoding", "chunked");
        let mut events = crate::backends::sse::WholeEvents::new(gateway.config.max_answer_bytes);
        // A native stream (Anthropic's own, for the Messages door) passes as it is.
        let mut encoder = if reply.native { None } else { request.door.stream_encoder(ex.model.as_deref().unwrap_or(&request.model)) };
        // What arrived so far goes out with the head, in one write.
        let mut first = bytes::BytesMut::new();
        for chunk in held {
            if let Some(out) = events.push(chunk) {
                first.extend_from_slice(&encoded(&mut encoder, out));
            }
        }
        if !matches!(timer::within(send_timeout, down.write_head(head, first.freeze(), false)).await, Ok(true)) {
            ex.status = CLIENT_CLOSED;
            ex.abandoned = true;
            return;
        }
        ex.ttft = Some(ex.started.elapsed());
        let idle = gateway.config.backends[backend].timeout;
        let broke = loop {
            // A client that left is seen at the next write (and one that stops reading, at the
            // send timeout): no read of the client's socket per chunk on this path.
            let next = timer::within(idle, reply.body.next()).await;
            match next {
                Ok(Some(Ok(chunk))) => {
                    scanner.feed(&chunk);
                    if let Some(out) = events.push(chunk) {
                        if !write(down, encoded(&mut encoder, out), send_timeout).await {
                            account(gateway, ex, scanner.usage);
                            ex.status = CLIENT_CLOSED;
                            ex.abandoned = true;
                            return;
                        }
                    }
                    if events.overflowed() {
                        break Some(format!("an event longer than HERMES_MAX_ANSWER_BYTES ({} bytes)", gateway.config.max_answer_bytes));
                    }
                    if let Some(e) = scanner.error.take() {
                        break Some(format!("the backend sent an error event: {e}"));
                    }
                }
                Ok(None) if scanner.saw_done => break None,
                Ok(None) => break Some("the backend closed the stream before [DONE]".to_string()),
                Ok(Some(Err(e))) => break Some(e.to_string()),
                Err(_) => break Some(format!("no data for {}s", idle.as_secs_f64())),
            }
        };
        account(gateway, ex, scanner.usage);
        if let Some(why) = broke {
            ex.status = 502;
            gateway.record_outcome(backend, false);
            let name = &gateway.config.backends[backend].name;
            log::warn!("{} stream from {name} broke after the first byte: {why}", ex.request_id);
            ex.error = Some(format!("the stream broke after the first byte: {why}"));
            let err = ApiError::new(Kind::StreamInterrupted, format!("The stream from backend {name} broke off: {why}."));
            ex.error_code = err.code();
            // The unfinished event is dropped, not relayed: it would be half of a JSON line.
            let event = match &mut encoder {
                Some(e) => e.broke(&err),
                None => ex.door.stream_error(&err),
            };
            let _ = write(down, event, send_timeout).await;
        } else {
            if let Some(rest) = events.finish() {
                let _ = write(down, encoded(&mut encoder, rest), send_timeout).await;
            }
            if let Some(response) = encoder.as_mut().and_then(StreamEncoder::completed) {
                store(gateway, down, request, response);
            }
            if let Some(shadow) = relay.shadow {
                let text = scanner.text.clone().unwrap_or_default();
                let primary = Primary { backend: gateway.config.backends[backend].name.clone(), status: reply.status, elapsed: ex.started.elapsed(), text };
                crate::ops::shadow::spawn(gateway.clone(), request.clone(), shadow, ex.request_id.clone(), primary);
            }
        }
        if gateway.config.log_content {
            ex.answer = scanner.text.take();
        }
        let _ = timer::within(send_timeout, down.write_body(Bytes::new(), true)).await;
    }
}

/// Whole chat events in the door's own events (OpenAI's pass as they are).
fn encoded(encoder: &mut Option<StreamEncoder>, chat: Bytes) -> Bytes {
    match encoder {
        Some(e) => e.feed(&chat),
        None => chat,
    }
}

/// Writes a chunk of the answer; false when the client is gone or has not taken it within
/// HERMES_SEND_TIMEOUT_SECONDS (a reader that stopped reading is let go).
async fn write<D: Downstream>(down: &mut D, chunk: Bytes, within: Duration) -> bool {
    // An empty chunk would read as the end of a chunked body.
    if chunk.is_empty() {
        return true;
    }
    matches!(timer::within(within, down.write_body(chunk, false)).await, Ok(true))
}

/// Tokens and cost from the upstream's usage report.
fn account(gateway: &Gateway, ex: &mut Exchange, usage: Option<crate::backends::sse::Usage>) {
    let (Some(u), Some(i), Some(model)) = (usage, ex.backend, ex.model.as_deref()) else { return };
    ex.usage = Some(u);
    let price = gateway.config.price(&gateway.config.backends[i], model);
    ex.cost_cents = Some(price.cost(&u));
    super::keyed::settle_spend(gateway, ex);
}
