//! Calls to backends over pingora's connector: the same HTTP/1.1 stack as the listener, one pool
//! of keep-alive connections shared by every backend, TCP_NODELAY on connect, TLS by rustls with
//! the system's roots (`SSL_CERT_FILE` names another bundle).

use crate::backends::reply::{AttemptError, Reply};
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures_util::StreamExt;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession};
use pingora::protocols::Stream;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A host that is gone should fail fast, not after the whole attempt timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP and TLS together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an unused connection stays in the pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a resolved address is trusted before DNS is asked again.
const DNS_TTL: Duration = Duration::from_secs(60);
/// Pooled connections the upstream may have closed meanwhile: a request whose writing fails on
/// one is sent again, on another connection, at most this many times.
const STALE_RETRIES: usize = 3;

/// Where a backend's API lives, parsed once from its base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    tls: bool,
    host: String,
    port: u16,
    /// The `Host` header: the host, and the port when it is not the scheme's own.
    authority: String,
    /// The base URL's path, without a trailing slash: `/v1`, `/api/v1`, or empty.
    base_path: String,
}

impl Target {
    pub fn parse(base_url: &str) -> Result<Target, String> {
        let uri: http::Uri = base_url.parse().map_err(|_| "the base URL is not a URL".to_string())?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the base URL is neither http nor https".into()),
        };
        let host = uri.host().ok_or("the base URL names no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
        let default_port = if tls { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        let authority = match uri.port_u16() {
            Some(p) if p != default_port => format!("{}:{p}", uri.host().unwrap_or_default()),
            _ => uri.host().unwrap_or_default().to_string(),
        };
        Ok(Target { tls, host, port, authority, base_path: uri.path().trim_end_matches('/').to_string() })
    }

    /// The full path of an API route below the base, e.g. `/v1` + `/chat/completions`.
    pub fn path(&self, route: &str) -> String {
        format!("{}{route}", self.base_path)
    }
}

/// The shared client: pingora's connector and its pool of keep-alive connections (pooled by
/// address, so every backend on one host shares them).
pub struct Upstream {
    connector: TransportConnector,
    /// HERMES_MAX_ANSWER_BYTES: the most of one whole answer that is held.
    max_answer_bytes: usize,
}

/// One backend's API on the shared client, with the headers every call to it carries. Those may
/// hold its key: they are written to the socket and nowhere else (no Debug, no logs).
pub struct Api {
    upstream: Arc<Upstream>,
    target: Result<Target, String>,
    headers: Vec<(&'static str, String)>,
    /// The target's address, resolved at most every DNS_TTL; read per request without a lock.
    resolved: ArcSwapOption<Resolved>,
}

/// The resolved address, as one peer per tokio runtime that calls it.
struct Resolved {
    addr: std::net::SocketAddr,
    peers: Vec<(tokio::runtime::Id, Arc<HttpPeer>)>,
    until: Instant,
}

/// A connection is registered with the reactor of the runtime that opened it, and its readiness
/// is reported there whoever uses it later. The health checks run on a runtime of their own:
/// a probe's connection, pooled and then taken by a request, made every read of the answer a
/// hop through the checker's thread (strace: its epoll, then a futex wake of the worker). So
/// each runtime pools its own connections, by the peer's group key.
fn runtime_group(runtime: tokio::runtime::Id) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    runtime.hash(&mut h);
    h.finish()
}

impl Api {
    pub fn new(upstream: &Arc<Upstream>, base_url: &str, headers: Vec<(&'static str, String)>) -> Api {
        Api { upstream: upstream.clone(), target: Target::parse(base_url), headers, resolved: ArcSwapOption::empty() }
    }

    /// POST a JSON body to a route below the base URL (`/chat/completions`).
    pub async fn post_json(&self, route: &str, body: Bytes) -> Result<Reply, AttemptError> {
        self.call("POST", route, Some(body)).await
    }

    /// The same, with some of the configured headers replaced (or added) for this call.
    pub async fn post_json_with(&self, route: &str, body: Bytes, replacing: &[(&'static str, String)]) -> Result<Reply, AttemptError> {
        if replacing.is_empty() {
            return self.post_json(route, body).await;
        }
        let target = self.target.as_ref().map_err(|e| AttemptError::Broken(e.clone()))?;
        let peer = self.peer(target).await?;
        let mut headers: Vec<(&'static str, String)> = self.headers.iter().filter(|(n, _)| !replacing.iter().any(|(r, _)| r == n)).cloned().collect();
        headers.extend(replacing.iter().cloned());
        self.upstream.send(peer, target, "POST", &target.path(route), &headers, Some(body)).await
    }

    pub async fn get(&self, route: &str) -> Result<Reply, AttemptError> {
        self.call("GET", route, None).await
    }

    /// GET a JSON document that only a 2xx answer carries (model lists).
    pub async fn get_json(&self, route: &str) -> Result<serde_json::Value, String> {
        let resp = self.get(route).await.map_err(|e| e.to_string())?;
        if !(200..300).contains(&resp.status) {
            return Err(format!("GET {route} answered {}", resp.status));
        }
        resp.json().await
    }

    async fn call(&self, method: &'static str, route: &str, body: Option<Bytes>) -> Result<Reply, AttemptError> {
        let target = self.target.as_ref().map_err(|e| AttemptError::Broken(e.clone()))?;
        let peer = self.peer(target).await?;
        self.upstream.send(peer, target, method, &target.path(route), &self.headers, body).await
    }

    async fn peer(&self, target: &Target) -> Result<Arc<HttpPeer>, AttemptError> {
        let runtime = tokio::runtime::Handle::current().id();
        let cached = self.resolved.load_full().filter(|r| r.until > Instant::now());
        if let Some(r) = &cached {
            if let Some((_, peer)) = r.peers.iter().find(|(id, _)| *id == runtime) {
                return Ok(peer.clone());
            }
        }
        let (addr, mut peers, until) = match &cached {
            Some(r) => (r.addr, r.peers.clone(), r.until),
            None => {
                // Two requests that miss together both resolve; the later store wins, no harm done.
                let addr = tokio::net::lookup_host((target.host.as_str(), target.port)).await.ok().and_then(|mut a| a.next()).ok_or(AttemptError::Connect)?;
                (addr, Vec::new(), Instant::now() + DNS_TTL)
            }
        };
        let mut peer = HttpPeer::new(addr, target.tls, target.host.clone());
        peer.group_key = runtime_group(runtime);
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.total_connection_timeout = Some(HANDSHAKE_TIMEOUT);
        let peer = Arc::new(peer);
        peers.push((runtime, peer.clone()));
        self.resolved.store(Some(Arc::new(Resolved { addr, peers, until })));
        Ok(peer)
    }
}

impl Upstream {
    pub fn new(max_answer_bytes: usize) -> Arc<Upstream> {
        let mut options = ConnectorOptions::new(0);
        // Keep as many idle connections as a busy gateway holds open to its backends.
        options.keepalive_pool_size = 256;
        Arc::new(Upstream { connector: TransportConnector::new(Some(options)), max_answer_bytes })
    }

    /// Send a request and wait for the answer's head. Non-2xx answers are answers; only a missing
    /// one is an error.
    async fn send(
        self: &Arc<Self>,
        peer: Arc<HttpPeer>,
        target: &Target,
        method: &'static str,
        path: &str,
        headers: &[(&'static str, String)],
        body: Option<Bytes>,
    ) -> Result<Reply, AttemptError> {
        let mut tries = 0;
        let mut http = loop {
            // pingora's connect and read futures are boxed: they are kilobytes (TLS included), and
            // this future is held by every request waiting for its answer's head. A pooled
            // connection is taken first, unboxed: its future is small, and moving the connect
            // future into its box was a copy of kilobytes on every request (a twentieth of the
            // request path's instructions, `benches/load/instructions.sh`) that only a new
            // connection needs.
            let (mut stream, reused) = match self.connector.reused_stream(&*peer).await {
                Some(pooled) => (pooled, true),
                None => (Box::pin(self.connector.new_stream(&*peer)).await.map_err(|e| failure(&e))?, false),
            };
            match write_request(&mut stream, target, method, path, headers, body.as_ref()).await {
                Ok(()) => {}
                // A pooled connection the upstream closed meanwhile fails while the request is
                // written, so nothing of it can have been processed: send it on another.
                Err(e) if reused && tries < STALE_RETRIES => {
                    log::debug!("a pooled connection to {} was closed ({}); sending on another", target.authority, e.etype().as_str());
                    tries += 1;
                    continue;
                }
                Err(e) => return Err(failure(&e)),
            }
            // Once the request is written, the upstream may have acted on it: a failure from here
            // on is this attempt's, seen and counted by failover, never sent again in secret.
            let mut http = HttpSession::new_with_options(stream, &*peer);
            Box::pin(http.read_response()).await.map_err(|e| failure(&e))?;
            break http;
        };
        let status = http.get_status().ok_or(AttemptError::Broken("no answer head".into()))?.as_u16();
        // Moved out of the session (patches/pingora-core), not copied: held, it kept both.
        let headers = http.take_resp_headers().unwrap_or_default();
        // The session is boxed, and the reuse below too: the stream's future is sized by its
        // largest state, and a held stream waits in the smallest (a read), so unboxed it kept
        // room for two copies of the session and the reuse, 2 KB of every held stream.
        let body = futures_util::stream::unfold(Some(Box::new((http, self.clone(), peer))), |state| async move {
            let mut state = state?;
            let (http, _, _) = &mut *state;
            match http.read_body_bytes().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(state))),
                Ok(None) => {
                    // Read to the end: the connection may serve the next request.
                    let back = Box::pin(give_back(*state));
                    back.await;
                    None
                }
                Err(e) => Some((Err(AttemptError::Broken(e.etype().as_str().to_string())), None)),
            }
        })
        .filter(|chunk| std::future::ready(!matches!(chunk, Ok(b) if b.is_empty())));
        Ok(Reply { status, headers, body: Box::pin(body), limit: self.max_answer_bytes, native: false })
    }
}

/// An answer read to its end: its connection goes back to the pool for the next request.
async fn give_back((mut http, upstream, peer): (HttpSession, Arc<Upstream>, Arc<HttpPeer>)) {
    http.respect_keepalive();
    if let Some(stream) = http.reuse().await {
        upstream.connector.release_stream(stream, peer.reuse_hash(), Some(IDLE_TIMEOUT));
    }
}

/// Requests up to this size leave in one write (head and body together); larger bodies follow
/// their head in a write of their own rather than being copied.
const ONE_WRITE_BYTES: usize = 64 * 1024;

/// Write the whole request. pingora's client writes and flushes the head before the body: two
/// sends, two wake-ups of the upstream (and on loopback, two passes through its receive path)
/// per request. Written here in one, through pingora's own head encoding.
async fn write_request(
    stream: &mut Stream,
    target: &Target,
    method: &'static str,
    path: &str,
    headers: &[(&'static str, String)],
    body: Option<&Bytes>,
) -> pingora::Result<()> {
    let mut head = RequestHeader::build(method, path.as_bytes(), Some(headers.len() + 4))?;
    head.insert_header("host", &target.authority)?;
    for (name, value) in headers {
        head.append_header(*name, value.as_str())?;
    }
    // Streams must arrive readable, chunk by chunk.
    head.insert_header("accept-encoding", "identity")?;
    if let Some(body) = body {
        head.insert_header("content-type", "application/json")?;
        head.insert_header("content-length", body.len())?;
    }
    let mut wire = http_req_header_to_wire(&head).ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "the request head cannot be written"))?;
    let written = match body {
        Some(body) if body.len() <= ONE_WRITE_BYTES => {
            wire.extend_from_slice(body);
            stream.write_all(&wire).await
        }
        Some(body) => match stream.write_all(&wire).await {
            Ok(()) => stream.write_all(body).await,
            Err(e) => Err(e),
        },
        None => stream.write_all(&wire).await,
    };
    let unwritten = |e| Error::because(ErrorType::WriteError, "while writing the request", e);
    written.map_err(unwritten)?;
    stream.flush().await.map_err(unwritten)
}

fn failure(e: &Error) -> AttemptError {
    use ErrorType::*;
    match e.etype() {
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | BindError | SocketError => AttemptError::Connect,
        // The root cause says which certificate check failed; it carries no request data.
        TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => AttemptError::Broken(format!("TLS handshake failed: {e}")),
        other => AttemptError::Broken(other.as_str().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_become_targets() {
        let t = Target::parse("https://api.openai.com/v1").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port, t.authority.as_str()), (true, "api.openai.com", 443, "api.openai.com"));
        assert_eq!(t.path("/chat/completions"), "/v1/chat/completions");
        let t = Target::parse("http://127.0.0.1:9000/api/v1/").unwrap();
        assert_eq!((t.tls, t.port, t.authority.as_str(), t.path("/models").as_str()), (false, 9000, "127.0.0.1:9000", "/api/v1/models"));
        let t = Target::parse("http://[::1]:11434").unwrap();
        assert_eq!((t.host.as_str(), t.authority.as_str(), t.path("/api/chat").as_str()), ("::1", "[::1]:11434", "/api/chat"));
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("not a url").is_err());
    }
}
