//! One request from admission to its record, whatever HTTP stack carries it: [`admit`] (the
//! client's key, its rate limit, its routing hints), [`keyed`] (a virtual key's allowlist,
//! tokens and budget), [`attempt`] (read and check the body,
//! classify, plan, then try backends in order, failing over before the first byte), [`relay`]
//! (the winning answer, whole or streamed), [`record`] (metrics, the learner, the analytics
//! file), [`traced`] (the request's spans, when traces are exported), [`timer`] (their timeouts, on pingora's shared timer). [`exchange`] is the story of one request as it goes; [`answer`] writes Hermes's own
//! answers. The client's side is a [`Downstream`]: the edge implements it on pingora's session.

pub mod admit;
pub mod answer;
pub mod attempt;
pub mod exchange;
pub mod keyed;
pub mod record;
pub mod relay;
pub mod timer;
pub mod traced;

use crate::error::ApiError;
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;

/// The head of an answer: status and headers.
pub struct Head {
    pub status: u16,
    pub headers: http::HeaderMap,
}

impl Head {
    pub fn new(status: u16) -> Head {
        Head { status, headers: http::HeaderMap::with_capacity(12) }
    }

    /// Sets a header (replacing one of the same name); values that are not valid header text are
    /// left out rather than sent.
    pub fn set(&mut self, name: &'static str, value: impl AsRef<str>) {
        if let Ok(v) = http::HeaderValue::from_str(value.as_ref()) {
            self.headers.insert(name, v);
        }
    }
}

/// The client's side of one request.
pub trait Downstream: Send {
    fn method(&self) -> &str;
    fn path(&self) -> &str;
    /// Every value the client sent under this header name.
    fn headers(&self, name: &str) -> http::header::GetAll<'_, http::HeaderValue>;
    fn peer_ip(&self) -> Option<std::net::IpAddr>;
    /// The whole body, refused with 413 from Content-Length alone when it is larger than
    /// `limit`; a client that takes longer than `within` to send it gets 408.
    fn read_body(&mut self, limit: usize, within: Duration) -> impl Future<Output = Result<Bytes, ApiError>> + Send;
    /// The head and the body's first bytes, in one write; `end` when `body` is all of it.
    /// False when the client is gone.
    fn write_head(&mut self, head: Head, body: Bytes, end: bool) -> impl Future<Output = bool> + Send;
    /// More of the body (empty with `end`, to close it); false when the client is gone.
    fn write_body(&mut self, chunk: Bytes, end: bool) -> impl Future<Output = bool> + Send;
    /// The connection is not reused after this answer.
    fn close_after(&mut self);
    /// Resolves when the client has closed its connection (after its body was read).
    fn gone(&mut self) -> impl Future<Output = ()> + Send;

    /// The first value of a header, if it is text.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).iter().next().and_then(|v| v.to_str().ok())
    }

    /// The token of an `Authorization: Bearer` header.
    fn bearer(&self) -> Option<&str> {
        let v = self.header("authorization")?;
        v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim)
    }

    /// The client's key: a bearer token, or Anthropic's `x-api-key` (what Anthropic's SDKs send).
    fn client_key(&self) -> Option<&str> {
        self.bearer().or_else(|| self.header("x-api-key").map(str::trim))
    }
}
