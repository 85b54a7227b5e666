//! The HTTP edge: pingora's HTTP/1 server hands Hermes each request's session, and Hermes answers
//! it itself, so Hermes owns the attempt loop (failover, streaming, bodies of any size); [`routes`]
//! sends each path to the pipeline or to an operator endpoint, and [`session`] is how the pipeline
//! reads and writes. Nothing outside this folder names pingora's session.
//!
//! Why pingora's server app rather than its proxy (`pingora-proxy`): the proxy's machinery (a
//! cache, compression and module contexts, its phase state machine) was built for every request
//! and held for as long as a stream stayed open, and Hermes used none of it.

pub mod routes;
pub mod session;

use crate::error::ApiError;
use crate::pipeline::exchange::Exchange;
use crate::state::gateway::Live;
use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub struct HermesApp {
    pub live: Arc<Live>,
}

#[async_trait]
impl HttpServerApp for HermesApp {
    // Written out rather than `async fn`: `#[async_trait]` boxes an `async move` block that
    // holds its arguments and then the future they are moved into, the session twice. This
    // boxes one future, which a held stream keeps for as long as it is open.
    fn process_new_http<'life0, 'life1, 'async_trait>(
        self: &'life0 Arc<Self>,
        mut session: ServerSession,
        shutdown: &'life1 ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let live = &self.live;
        Box::pin(async move {
            if !answer(live, &mut session, shutdown).await {
                return None;
            }
            let settings = HttpPersistentSettings::for_session(&session);
            // Boxed: pingora's finish is kilobytes too.
            Box::pin(session.finish()).await.ok().flatten().map(|s| ReusedHttpStream::from_reusable_stream(s, settings))
        })
    }
}

/// One request on a connection: its head, its answer, its record. False when the connection
/// is not to be reused (the client is gone, or there was no request to answer).
async fn answer(live: &Live, session: &mut ServerSession, shutdown: &ShutdownWatch) -> bool {
    // Boxed: pingora's read future is kilobytes, and unboxed this future would keep room for it
    // while the answer streams.
    if !Box::pin(read_head(session, shutdown)).await {
        return false;
    }
    if *shutdown.borrow() {
        // Stopping: this answer is the connection's last.
        session.set_keepalive(None);
    }
    let gateway = live.current();
    let mut ex = Exchange::new();
    ex.in_flight = Some(gateway.enter());
    ex.send_timeout = gateway.config.send_timeout;
    // pingora's own writes (the last chunk, a flush) are bounded too: a client that stopped
    // reading cannot hold the request after Hermes has let it go.
    session.set_write_timeout(Some(gateway.config.send_timeout));
    routes::handle(&gateway, live, session, &mut ex).await;
    let head = session.req_header();
    crate::pipeline::record::finish(&mut ex, head.method.as_str(), head.uri.path());
    // Finishing the answer (a last chunk, a flush) would wait on a client that is gone or
    // stopped reading: the connection is dropped instead.
    !ex.abandoned
}

/// Reads the next request's head; false when there is none to answer: the client closed, the
/// gateway is stopping while the connection waited idle, or the head was not HTTP (answered 400
/// in OpenAI's shape, then closed).
async fn read_head(session: &mut ServerSession, shutdown: &ShutdownWatch) -> bool {
    let mut stopping = shutdown.clone();
    let read = tokio::select! {
        // Biased: a request already buffered is read before the stop is seen.
        biased;
        read = session.read_request() => read,
        _ = stopping.wait_for(|stop| *stop) => return false,
    };
    match read {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            if matches!(e.etype, pingora::ErrorType::InvalidHTTPHeader) {
                refuse(session, &ApiError::bad_request("The request is not valid HTTP/1.1.", None)).await;
            } else {
                session.shutdown().await;
            }
            return false;
        }
    }
    if session.req_header().method == http::Method::CONNECT {
        // CONNECT frames its body differently from every other method; it is refused and the
        // connection closed rather than read on.
        let err = ApiError::method_not_allowed("CONNECT", session.req_header().uri.path());
        refuse(session, &err).await;
        return false;
    }
    true
}

/// An error in OpenAI's shape (no door is known yet), then the connection is closed:
/// `write_error_response` turns keep-alive off, so pingora's head says `Connection: close`.
async fn refuse(session: &mut ServerSession, err: &ApiError) {
    let body = err.body();
    if let Ok(mut head) = pingora::http::ResponseHeader::build(err.status(), Some(4)) {
        let _ = head.insert_header("content-type", "application/json");
        let _ = head.insert_header("content-length", body.len());
        let _ = session.write_error_response(head, body).await;
    }
    session.shutdown().await;
}
