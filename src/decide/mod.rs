//! Pure decisions, no I/O: what kind of job a request is, whether it holds personal data, which
//! backends may answer and in which order, whether to try again, and what of an upstream's
//! answer must not leave (keys).

pub mod classify;
pub mod privacy;
pub mod route;
pub mod scrub;
