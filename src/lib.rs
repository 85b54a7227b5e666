//! Hermes: an OpenAI-compatible LLM gateway.
//!
//! A request's way through: [`proxy`] (pingora glue) → [`dispatch`] (path, auth, body) →
//! [`openai`] (checks) → [`classify`] (job type, from a model fitted to labelled prompts) →
//! [`route`] (who may answer, in which order) → [`backends`] (one adapter
//! per wire type, calling out through [`upstream`], pingora's connector) → back through [`dispatch`] (failover, streaming relay, accounting with [`sse`])
//! → [`telemetry`] (metrics) and [`outcome`]: the [`learn`]er's statistics, which the next
//! decision reads, and the [`analytics`] file (DuckDB). [`config`] turns `.env` and `policies/` into one checked `Config`;
//! [`health`] keeps each backend's state (active checks and real traffic) and [`catalog`] the
//! models each serves; [`server`] runs it all until SIGTERM. [`ollama`] translates Ollama's
//! native API, for the `ollama` backend type and for [`talos`], the agent beside Ollama.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod analytics;
pub mod backends;
pub mod cache;
pub mod catalog;
pub mod classify;
pub mod cli;
pub mod compare;
pub mod config;
pub mod dispatch;
pub mod gateway;
pub mod health;
pub mod learn;
pub mod limits;
pub mod log_batch;
pub mod migrate;
pub mod ollama;
pub mod openai;
pub mod outcome;
pub mod privacy;
pub mod proxy;
pub mod route;
pub mod server;
pub mod shadow;
pub mod sse;
pub mod steering;
pub mod talos;
pub mod telemetry;
pub mod upstream;
