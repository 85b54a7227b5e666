//! What outlives one request: the checked configuration, the running gateway (one generation
//! per configuration) with its health board, model catalog, rate limits and answer cache, what
//! was learned, the virtual keys and their spend, the analytics file, and the metrics.

pub mod analytics;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod gateway;
pub mod health;
pub mod keys;
pub mod learn;
pub mod limits;
pub mod responses;
pub mod telemetry;
