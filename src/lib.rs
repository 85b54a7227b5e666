//! Hermes: an OpenAI-compatible LLM gateway. The modules, in the order a request travels:
//!
//! - [`edge`]: the HTTP edge, the only code that names pingora's `Session`: the proxy hooks,
//!   reading the request and writing the answer, and the table of paths.
//! - [`doors`]: what a request looks like on the way in (OpenAI's chat and embeddings shapes),
//!   checked before anything is spent on it; [`error`]: the one error a client can get.
//! - [`pipeline`]: one request from admission to record: admit (auth, limits, hints), plan and
//!   attempt (the failover loop), relay (whole answers and streams), record (metrics, learner,
//!   analytics), traced (the request's spans).
//! - [`decide`]: the pure decisions: classify the job, find personal data, rank the backends,
//!   retry or not, and scrub keys out of what upstreams send back.
//! - [`backends`]: one adapter per wire format, the upstream connector (pingora's), the
//!   translations (Ollama, Anthropic) and the SSE readers.
//! - [`state`]: what lives beyond one request: the configuration, the gateway generation and its
//!   health board, catalog, limits and cache, the learner, the analytics file, the metrics and
//!   the OTLP trace export.
//! - [`ops`]: operations beside the request path: the admin API's handlers and background
//!   checks, steering, shadow traffic, comparisons, migrations, and the `hermes` subcommands.
//! - [`server`] runs it all until SIGTERM. The Talos agent beside Ollama is a crate of its own (`talos/`).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod backends;
pub mod decide;
pub mod doors;
pub mod edge;
pub mod error;
pub mod ops;
pub mod pipeline;
pub mod server;
pub mod state;
