//! Operations beside the request path: the admin API (virtual keys and teams among it), active health checks, migrations
//! (steering, shadow traffic, comparisons), handing back start-up's memory, and the `hermes`
//! subcommands with their client for a running gateway.

pub mod admin;
pub mod checks;
pub mod cli;
pub mod compare;
pub mod keys;
pub mod log_batch;
pub mod memory;
pub mod migrate;
pub mod remote;
pub mod shadow;
pub mod steering;
