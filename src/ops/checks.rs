//! Active health checks: every HERMES_HEALTH_CHECK_INTERVAL each backend is probed the way that
//! fits its type; the health board and the model catalog take what the probes found.

use crate::state::gateway::Gateway;
use std::sync::Arc;
use std::time::Duration;

/// Probe every backend once, concurrently; record health and discovered models.
pub async fn check_all(gateway: &Arc<Gateway>) {
    let probes = gateway.registry.all().iter().enumerate().map(|(i, backend)| {
        let gateway = gateway.clone();
        async move {
            let limit = backend.config().timeout.min(gateway.config.health.interval.max(Duration::from_secs(1)));
            let outcome = match tokio::time::timeout(limit, backend.probe()).await {
                Ok(Ok(models)) => {
                    gateway.catalog.discovered(i, &models);
                    Ok(models.len())
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("no answer within {}s", limit.as_secs_f64())),
            };
            if let Err(e) = &outcome {
                log::debug!("health check of {} failed: {e}", backend.config().name);
            }
            gateway.record_check(i, outcome);
        }
    });
    futures_util::future::join_all(probes).await;
}

/// How long after the first round of checks the gateway counts as settled.
const SETTLED: Duration = Duration::from_secs(1);

/// Runs the active checks every HERMES_HEALTH_CHECK_INTERVAL until shutdown, on whichever
/// gateway generation is serving.
pub struct Checker(pub Arc<crate::state::gateway::Live>);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Checker {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut first = true;
        loop {
            let gateway = self.0.current();
            let health = &gateway.config.health;
            if health.enabled {
                check_all(&gateway).await;
            }
            if std::mem::take(&mut first) {
                // The first round was start-up's last step; a second later what it recorded
                // is written too, and the code only start-up ran can go.
                tokio::spawn(async {
                    tokio::time::sleep(SETTLED).await;
                    let _ = tokio::task::spawn_blocking(crate::ops::memory::release_start_up_code).await;
                });
            }
            let pause = if health.enabled { health.interval.max(Duration::from_millis(100)) } else { Duration::from_secs(1) };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {},
                _ = shutdown.changed() => return,
            }
        }
    }
}
