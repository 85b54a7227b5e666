//! The one error a client can get from Hermes. Each kind knows its HTTP status, OpenAI error
//! type and code; an error is built once, with its message, and never changed afterwards. The
//! door a request came in by decides the body's shape (`to_value` is OpenAI's).

use bytes::Bytes;
use serde_json::{json, Value};

/// What went wrong, as a client should read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Malformed JSON or a body that is not an object.
    InvalidJson,
    /// A field, header or value the request got wrong (`param` names it).
    BadRequest,
    /// A reload whose configuration was refused.
    InvalidConfiguration,
    Unauthorized,
    Forbidden,
    /// A virtual key asked for a model outside its allowlist.
    ModelNotAllowed,
    OverBudget,
    ModelNotFound,
    UnknownUrl,
    /// A thing the request names (a request id, a backend) that Hermes does not know.
    NotFound(&'static str),
    MethodNotAllowed,
    RequestTimeout,
    TooLarge,
    RateLimited,
    Internal,
    /// Every backend tried failed (502).
    BackendsFailed,
    /// No backend could be tried (503).
    NoBackend,
    /// The stream broke after its first byte.
    StreamInterrupted,
    /// Redis cannot be reached and HERMES_REDIS_FAIL_MODE=closed (503).
    SharedStateUnavailable,
    /// An upstream's own refusal of the request, relayed with its status.
    Upstream(u16),
}

impl Kind {
    pub fn status(self) -> u16 {
        match self {
            Kind::InvalidJson | Kind::BadRequest | Kind::InvalidConfiguration => 400,
            Kind::Unauthorized => 401,
            Kind::OverBudget => 402,
            Kind::Forbidden | Kind::ModelNotAllowed => 403,
            Kind::ModelNotFound | Kind::UnknownUrl | Kind::NotFound(_) => 404,
            Kind::MethodNotAllowed => 405,
            Kind::RequestTimeout => 408,
            Kind::TooLarge => 413,
            Kind::RateLimited => 429,
            Kind::Internal => 500,
            Kind::BackendsFailed | Kind::StreamInterrupted => 502,
            Kind::NoBackend | Kind::SharedStateUnavailable => 503,
            Kind::Upstream(status) => status,
        }
    }

    /// OpenAI's `error.type`.
    pub fn openai_type(self) -> &'static str {
        match self {
            Kind::OverBudget => "insufficient_quota",
            Kind::RateLimited => "requests",
            Kind::Internal | Kind::BackendsFailed | Kind::NoBackend | Kind::StreamInterrupted | Kind::SharedStateUnavailable => "api_error",
            Kind::Upstream(s) if s >= 500 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// OpenAI's `error.code`.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Kind::InvalidJson | Kind::BadRequest | Kind::Internal | Kind::Upstream(_) => None,
            Kind::InvalidConfiguration => Some("invalid_configuration"),
            Kind::Unauthorized => Some("invalid_api_key"),
            Kind::Forbidden => Some("forbidden"),
            Kind::ModelNotAllowed => Some("model_not_allowed"),
            Kind::OverBudget => Some("budget_exceeded"),
            Kind::ModelNotFound => Some("model_not_found"),
            Kind::UnknownUrl => Some("unknown_url"),
            Kind::NotFound(code) => Some(code),
            Kind::MethodNotAllowed => Some("method_not_allowed"),
            Kind::RequestTimeout => Some("request_timeout"),
            Kind::TooLarge => Some("request_too_large"),
            Kind::RateLimited => Some("rate_limit_exceeded"),
            Kind::BackendsFailed | Kind::NoBackend => Some("backend_unavailable"),
            Kind::StreamInterrupted => Some("stream_interrupted"),
            Kind::SharedStateUnavailable => Some("shared_state_unavailable"),
        }
    }
}

/// An error with its message, the field it is about and, for 429 and 503, when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    kind: Kind,
    message: String,
    param: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(kind: Kind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into(), param: None, retry_after: None }
    }

    /// The same error about one field of the request.
    pub fn about(kind: Kind, message: impl Into<String>, param: &str) -> ApiError {
        ApiError { param: Some(param.to_string()), ..ApiError::new(kind, message) }
    }

    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError { param: param.map(str::to_string), ..ApiError::new(Kind::BadRequest, message) }
    }

    pub fn invalid_json() -> ApiError {
        ApiError::new(Kind::InvalidJson, "We could not parse the JSON body of your request. The body must be a JSON object.")
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(Kind::Unauthorized, "Incorrect or missing API key. Send `Authorization: Bearer <key>` with a key from HERMES_API_KEYS.")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::Forbidden, message)
    }

    pub fn model_not_found(model: &str) -> ApiError {
        ApiError::about(
            Kind::ModelNotFound,
            format!("The model `{model}` does not exist or no enabled backend serves it. GET /v1/models lists what is available."),
            "model",
        )
    }

    pub fn unknown_path(method: &str, path: &str) -> ApiError {
        ApiError::new(Kind::UnknownUrl, format!("Unknown request URL: {method} {path}."))
    }

    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::new(Kind::MethodNotAllowed, format!("{method} is not allowed on {path}."))
    }

    pub fn request_timeout(within: std::time::Duration) -> ApiError {
        ApiError::new(Kind::RequestTimeout, format!("The request body did not arrive within {}s (HERMES_BODY_READ_TIMEOUT_SECONDS).", within.as_secs_f64()))
    }

    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(Kind::TooLarge, format!("The request body is larger than the limit of {limit} bytes (HERMES_MAX_BODY_BYTES)."))
    }

    /// Nothing could answer. 503 when no backend was even tried, 502 when every try failed.
    pub fn no_backend_answered(tried: &[String], any_tried: bool) -> ApiError {
        if any_tried {
            ApiError::new(Kind::BackendsFailed, format!("No backend could answer; tried: {}.", tried.join("; ")))
        } else {
            ApiError::new(Kind::NoBackend, "No backend is available for this request.")
        }
    }

    /// 402: every backend that could answer would cost more than the budget allows.
    pub fn over_budget(budget_cents: f64, rejected: &[(String, String)]) -> ApiError {
        let why: Vec<String> = rejected.iter().map(|(b, w)| format!("{b}: {w}")).collect();
        ApiError::new(
            Kind::OverBudget,
            format!("Every backend that serves this request would cost more than the budget of {budget_cents}¢ ({}). Raise x-hermes-budget-cents or HERMES_MAX_COST_PER_JOB_CENTS, or ask for a cheaper model.", why.join("; ")),
        )
    }

    /// 402: a virtual key (or its team) has spent its budget for the window; `retry-after` says
    /// when it resets.
    pub fn key_budget_spent(whose: &str, spent: &crate::state::keys::Exhausted, local_note: &str) -> ApiError {
        let wait = (spent.resets_at - chrono::Utc::now()).num_seconds().max(1) as u64;
        let state = if spent.left_cents <= 0.0 {
            "is spent".to_string()
        } else {
            format!("has {:.4}¢ left after the requests in flight, less than this one may cost ({:.4}¢)", spent.left_cents, spent.needed_cents)
        };
        let resets = spent.resets_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let message = format!("The budget of {whose} (${:.2} per window) {state}{local_note}; it resets at {resets}.", spent.budget_cents / 100.0);
        ApiError { retry_after: Some(wait), ..ApiError::new(Kind::OverBudget, message) }
    }

    /// 401 for an `hk-` key that no one made, or that was revoked.
    pub fn unknown_virtual_key() -> ApiError {
        ApiError::new(Kind::Unauthorized, "This virtual key (hk-...) is unknown or has been revoked.")
    }

    /// 403: the key may not use this model.
    pub fn model_not_allowed(key: &str, model: &str) -> ApiError {
        ApiError::about(Kind::ModelNotAllowed, format!("The key '{key}' may not use the model `{model}`."), "model")
    }

    /// 503: a virtual key's limits live in Redis, which cannot be reached, and the gateway was
    /// told to refuse rather than count locally.
    pub fn shared_state_unavailable() -> ApiError {
        let message = "Hermes cannot reach its shared state (Redis) and HERMES_REDIS_FAIL_MODE=closed: requests with a virtual key are refused until Redis is back. Retry shortly.";
        ApiError { retry_after: Some(1), ..ApiError::new(Kind::SharedStateUnavailable, message) }
    }

    /// 429 from Hermes's own limits.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError { retry_after: Some(retry_after.max(1)), ..ApiError::new(Kind::RateLimited, message) }
    }

    /// 404 for a thing the request names (a request id, a backend) that Hermes does not know.
    pub fn not_found(message: impl Into<String>, param: &str, code: &'static str) -> ApiError {
        ApiError::about(Kind::NotFound(code), message, param)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::Internal, message)
    }

    /// An upstream's refusal in its own status; a 404 about the model is `model_not_found`.
    pub fn upstream(status: u16, message: impl Into<String>) -> ApiError {
        match status {
            404 => ApiError::about(Kind::ModelNotFound, message, "model"),
            400..=599 => ApiError::new(Kind::Upstream(status), message),
            _ => ApiError::new(Kind::Upstream(502), message),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    pub fn code(&self) -> Option<&'static str> {
        self.kind.code()
    }

    /// Seconds, sent as `retry-after` on 429, 503 and a spent key's 402.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    pub fn body(&self) -> Bytes {
        Bytes::from(self.to_value().to_string())
    }

    /// OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
    pub fn to_value(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind.openai_type(), "param": self.param, "code": self.code()}})
    }

    /// Anthropic's shape, for the Messages door: `{"type": "error", "error": {"type", "message"}}`.
    pub fn to_anthropic(&self) -> Value {
        let kind = match self.status() {
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            500..=599 => "api_error",
            _ => "invalid_request_error",
        };
        // Anthropic names the field at the start of the message ("messages.0.content: ...").
        let message = match &self.param {
            Some(p) if !self.message.contains(p.as_str()) => format!("{p}: {}", self.message),
            _ => self.message.clone(),
        };
        json!({"type": "error", "error": {"type": kind, "message": message}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_openai_shape() {
        let v = ApiError::model_not_found("nope").to_value();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
        assert_eq!(ApiError::rate_limited("slow down", 0).retry_after(), Some(1));
        assert_eq!((ApiError::upstream(422, "x").status(), ApiError::upstream(503, "x").kind().openai_type()), (422, "api_error"));
        assert_eq!(ApiError::no_backend_answered(&[], false).status(), 503);
    }
}
