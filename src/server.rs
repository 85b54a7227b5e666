//! Start-up and shutdown: pingora listening on HERMES_LISTEN, and a SIGTERM path that stops
//! accepting, lets in-flight requests finish (at most HERMES_SHUTDOWN_GRACE_SECONDS) and exits 0
//! as soon as they have (analytics flushed), rather than pingora's fixed upgrade grace period.

use crate::edge::HermesApp;
use crate::state::gateway::Live;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

pub fn run(live: Arc<Live>) -> Result<(), String> {
    let gateway = live.current();
    let listen = gateway.config.listen.clone();
    // Fail with a clear line rather than a panic deep inside pingora.
    std::net::TcpListener::bind(&listen).map_err(|e| format!("HERMES_LISTEN: cannot listen on {listen}: {e}"))?;
    crate::state::telemetry::install();
    crate::state::traces::start()?;
    let grace = gateway.config.shutdown_grace;

    let conf = ServerConf {
        threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        grace_period_seconds: Some(grace.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    // Its worker threads are named after it (the first 15 bytes: "Hermes requests").
    let mut service = pingora::services::listening::Service::new("Hermes requests".to_string(), HermesApp { live: live.clone() });
    // pingora reads each connection through a 64 KiB buffer unless told otherwise. Its HTTP/1
    // session reads the head into a buffer of its own and the body into another, so a buffer
    // under them only copies; zero-filled, even 4 KiB of it was resident for every open
    // connection (perf of page faults, 5,000 held streams). Writes stay buffered: a head and
    // the body behind it leave in one send.
    let mut endpoint =
        ListenerConfig::tcp(&listen).tcp_socket_options(TcpSocketOptions::default()).l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE));
    if let Some((cert, key)) = &gateway.config.tls {
        let tls = TlsSettings::intermediate(&cert.to_string_lossy(), &key.to_string_lossy())
            .map_err(|e| format!("HERMES_TLS_CERT / HERMES_TLS_KEY: cannot serve HTTPS with them: {e}"))?;
        endpoint = endpoint.tls(tls);
    }
    service.add_listener(endpoint);
    server.add_service(service);
    server.add_service(pingora::services::background::background_service("health checks", crate::ops::checks::Checker(live.clone())));
    let scheme = if gateway.config.tls.is_some() { "https" } else { "http" };
    for unknown in &gateway.config.unknown_vars {
        log::warn!("{unknown}; it is ignored (`hermes check-config` fails on it)");
    }
    if gateway.config.admin_key.is_none() {
        log::warn!("HERMES_ADMIN_KEY is unset: /admin is open to every client on this machine's loopback (behind a reverse proxy on the same host, that is everyone). Set HERMES_ADMIN_KEY.");
    }
    log::info!("hermes listening on {scheme}://{listen} with {} backend(s)", gateway.config.backends.len());
    server.run(RunArgs { shutdown_signal: Box::new(GracefulStop { live, grace }) });
    Ok(())
}

struct GracefulStop {
    live: Arc<Live>,
    grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for GracefulStop {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup())) else {
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                // SIGHUP: re-read the configuration, keep serving either way.
                _ = hup.recv() => if let Err(why) = self.live.reload() {
                    log::warn!("SIGHUP reload refused, the running configuration stays: {why}");
                },
            }
        }
        let gateway = self.live.clone();
        let deadline = Instant::now() + self.grace;
        log::info!("stopping: {} request(s) in flight, waiting at most {:?}", gateway.in_flight(), self.grace);
        // Pingora stops accepting on GracefulTerminate; this thread ends the process once idle.
        std::thread::spawn(move || {
            while gateway.in_flight() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let left = gateway.in_flight();
            if left > 0 {
                log::warn!("grace period over with {left} request(s) still in flight");
            }
            // Whatever the grace left, the analytics get a moment of their own: nothing accepted is lost.
            let flush_within = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(2));
            let flushed = gateway.flush_analytics(flush_within);
            if !flushed {
                log::error!(
                    "analytics were not fully written within {flush_within:?}: {} record(s) still queued are lost",
                    gateway.current().analytics().queued()
                );
            }
            let lost = gateway.current().analytics().lost();
            if lost > 0 {
                log::error!("{lost} accepted record(s) were not written to the analytics file (see the errors above)");
            }
            if !crate::state::traces::flush(Duration::from_secs(2)) {
                log::warn!("the last spans were not all sent to the OTLP collector before exit");
            }
            let clean = flushed && lost == 0 && left == 0;
            log::info!("hermes stopped{}", if clean { "" } else { " with losses" });
            crate::ops::log_batch::flush();
            // Non-zero so that a supervisor or a deploy script sees what was lost.
            std::process::exit(if clean { 0 } else { 1 });
        });
        ShutdownSignal::GracefulTerminate
    }
}
