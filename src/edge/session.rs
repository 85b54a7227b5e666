//! pingora's session as the pipeline's [`Downstream`]: the one place that reads the request and
//! writes the answer on the wire.

use crate::error::ApiError;
use crate::pipeline::{Downstream, Head};
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::{HttpTask, ServerSession};
use std::future::Future;
use std::time::Duration;

impl Downstream for ServerSession {
    fn method(&self) -> &str {
        self.req_header().method.as_str()
    }

    fn path(&self) -> &str {
        self.req_header().uri.path()
    }

    fn headers(&self, name: &str) -> http::header::GetAll<'_, http::HeaderValue> {
        self.req_header().headers.get_all(name)
    }

    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
    }

    // The futures below are boxed: pingora's reads and writes are kilobytes each, and unboxed
    // they would sit inside the request's future, which a held stream keeps for as long as it
    // is open. Boxed, that room is taken only while a read or a write is under way.
    fn read_body(&mut self, limit: usize, within: Duration) -> impl Future<Output = Result<Bytes, ApiError>> + Send {
        Box::pin(read_body(self, limit, within))
    }

    fn write_head(&mut self, head: Head, body: Bytes, end: bool) -> impl Future<Output = bool> + Send {
        Box::pin(write_head(self, head, body, end))
    }

    fn write_body(&mut self, chunk: Bytes, end: bool) -> impl Future<Output = bool> + Send {
        Box::pin(async move { self.write_response_body(chunk, end).await.is_ok() })
    }

    fn close_after(&mut self) {
        self.set_keepalive(None);
    }

    fn gone(&mut self) -> impl Future<Output = ()> + Send {
        // The body is read by now, so a read ends only when the client closes.
        Box::pin(async move { while self.read_body_or_idle(true).await.is_ok() {} })
    }
}

/// The answer's head with the body's first bytes behind it; `end` when that is the whole body.
async fn write_head(session: &mut ServerSession, head: Head, body: Bytes, end: bool) -> bool {
    // No case map: pingora writes the names it knows in title case either way (Content-Type),
    // the rest as given, and the map was a second header table kept for the answer's life.
    // The header table is handed over whole: appended one by one, pingora turned each name back
    // into bytes and parsed it again (about 8,500 instructions per request,
    // `benches/load/instructions.sh`).
    let Ok(status) = http::StatusCode::from_u16(head.status) else { return false };
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.headers = head.headers;
    let h = ResponseHeader::from(parts);
    if end {
        // With a Content-Length, pingora holds the head until the body's last byte is written.
        return session.write_response_header(Box::new(h)).await.is_ok() && session.write_response_body(body, true).await.is_ok();
    }
    // A stream's head would be flushed on its own (no Content-Length); handed over with the
    // first events, it goes out in their write (patches/pingora-core), one read for the client.
    session.response_duplex_vec(vec![HttpTask::Header(Box::new(h), false), HttpTask::Body(Some(body), false)]).await.is_ok()
}

/// The request body, refused with 413 from Content-Length alone when it is too large.
/// A client has `within` to send its whole body; one that trickles or stalls frees its slot.
async fn read_body(session: &mut ServerSession, limit: usize, within: Duration) -> Result<Bytes, ApiError> {
    let deadline = tokio::time::Instant::now() + within;
    let declared = session.req_header().headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::body_too_large(limit));
    }
    let expects_continue = session.req_header().headers.get("expect").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        let _ = session.write_continue_response().await;
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    loop {
        let Ok(read) = crate::pipeline::timer::until(deadline, session.read_request_body()).await else {
            session.set_keepalive(None);
            return Err(ApiError::request_timeout(within));
        };
        match read {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::body_too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(_) => return Err(ApiError::bad_request("The request body could not be read.", None)),
        }
    }
}
