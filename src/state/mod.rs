//! What outlives one request: the checked configuration, the running gateway (one generation
//! per configuration) with its health board, model catalog, rate limits and answer cache, what
//! was learned, the virtual keys and their spend, what replicas share through Redis, the analytics file, and
//! the metrics and traces.

pub mod analytics;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod gateway;
pub mod health;
pub mod keys;
pub mod learn;
pub mod limits;
pub mod recent;
pub mod replicas;
pub mod responses;
pub mod telemetry;
pub mod traces;

/// The guard of a lock whose holder panicked is taken as it is: every structure behind these
/// locks stays consistent between statements, and a poisoned lock must not stop the gateway.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn read<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn write<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
