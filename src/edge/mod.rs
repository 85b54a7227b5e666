//! The HTTP edge: pingora's hooks. Every request is answered from `request_filter`, so Hermes owns
//! the attempt loop (failover, streaming, bodies of any size); [`routes`] sends each path to the
//! pipeline or to an operator endpoint, and [`session`] is how the pipeline reads and writes.
//! Nothing outside this folder names pingora's `Session`.

pub mod routes;
pub mod session;

use crate::pipeline::exchange::Exchange;
use crate::state::gateway::Live;
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

pub struct HermesProxy {
    pub live: Arc<Live>,
}

#[async_trait]
impl ProxyHttp for HermesProxy {
    type CTX = Exchange;

    fn new_ctx(&self) -> Exchange {
        Exchange::new()
    }

    async fn request_filter(&self, session: &mut Session, ex: &mut Exchange) -> Result<bool> {
        let gateway = self.live.current();
        ex.in_flight = Some(gateway.enter());
        ex.send_timeout = gateway.config.send_timeout;
        // pingora's own writes (the last chunk, a flush) are bounded too: a client that stopped
        // reading cannot hold the request after Hermes has let it go.
        session.downstream_session.set_write_timeout(Some(gateway.config.send_timeout));
        routes::handle(&gateway, &self.live, session, ex).await;
        if ex.abandoned {
            // pingora would finish the answer (a last chunk, a flush) with no bound on the wait:
            // an error makes it drop the connection instead (see `fail_to_proxy`).
            return Err(Error::explain(ErrorType::WriteError, "the client is gone or stopped reading"));
        }
        Ok(true)
    }

    async fn fail_to_proxy(&self, _session: &mut Session, _e: &Error, _ex: &mut Exchange) -> FailToProxy {
        // Only an abandoned client gets here: nothing is written, the connection is not reused.
        FailToProxy { error_code: 0, can_reuse_downstream: false }
    }

    fn suppress_error_log(&self, _session: &Session, ex: &Exchange, _e: &Error) -> bool {
        ex.abandoned
    }

    async fn upstream_peer(&self, _session: &mut Session, _ex: &mut Exchange) -> Result<Box<HttpPeer>> {
        // Never reached: request_filter answers every request.
        Err(Error::new(ErrorType::InternalError))
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ex: &mut Exchange) {
        let head = session.req_header();
        crate::pipeline::record::finish(ex, head.method.as_str(), head.uri.path());
    }
}
