//! OpenAI's wire shapes: the error body every answer uses, and the checks a request passes before
//! Hermes spends anything on it. Requests stay JSON values so unknown fields travel untouched.

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// An error in OpenAI's shape `{"error": {"message", "type", "param", "code"}}`, with its status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds, sent as `retry-after` on 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, code: Option<&'static str>, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code, retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> ApiError {
        let mut e = ApiError::new(400, "invalid_request_error", None, message);
        e.param = param.map(str::to_string);
        e
    }

    pub fn invalid_json() -> ApiError {
        ApiError::new(
            400,
            "invalid_request_error",
            None,
            "We could not parse the JSON body of your request. The body must be a JSON object.",
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "invalid_request_error", Some("invalid_api_key"), "Incorrect or missing API key. Send `Authorization: Bearer <key>` with a key from HERMES_API_KEYS.")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "invalid_request_error", Some("forbidden"), message)
    }

    pub fn model_not_found(model: &str) -> ApiError {
        let mut e = ApiError::new(
            404,
            "invalid_request_error",
            Some("model_not_found"),
            format!("The model `{model}` does not exist or no enabled backend serves it. GET /v1/models lists what is available."),
        );
        e.param = Some("model".into());
        e
    }

    pub fn unknown_path(method: &str, path: &str) -> ApiError {
        ApiError::new(404, "invalid_request_error", Some("unknown_url"), format!("Unknown request URL: {method} {path}."))
    }

    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::new(405, "invalid_request_error", Some("method_not_allowed"), format!("{method} is not allowed on {path}."))
    }

    pub fn request_timeout(within: std::time::Duration) -> ApiError {
        ApiError::new(408, "invalid_request_error", Some("request_timeout"), format!("The request body did not arrive within {}s (HERMES_BODY_READ_TIMEOUT_SECONDS).", within.as_secs_f64()))
    }

    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(413, "invalid_request_error", Some("request_too_large"), format!("The request body is larger than the limit of {limit} bytes (HERMES_MAX_BODY_BYTES)."))
    }

    /// Nothing could answer. 503 when no backend was even tried, 502 when every try failed.
    pub fn no_backend_answered(tried: &[String], any_tried: bool) -> ApiError {
        let (status, message) = if any_tried {
            (502, format!("No backend could answer; tried: {}.", tried.join("; ")))
        } else {
            (503, "No backend is available for this request.".to_string())
        };
        ApiError::new(status, "api_error", Some("backend_unavailable"), message)
    }

    /// 402: every backend that could answer would cost more than the budget allows.
    pub fn over_budget(budget_cents: f64, rejected: &[(String, String)]) -> ApiError {
        let why: Vec<String> = rejected.iter().map(|(b, w)| format!("{b}: {w}")).collect();
        ApiError::new(
            402,
            "insufficient_quota",
            Some("budget_exceeded"),
            format!("Every backend that serves this request would cost more than the budget of {budget_cents}¢ ({}). Raise x-hermes-budget-cents or HERMES_MAX_COST_PER_JOB_CENTS, or ask for a cheaper model.", why.join("; ")),
        )
    }

    /// 429 from Hermes's own limits.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> ApiError {
        let mut e = ApiError::new(429, "requests", Some("rate_limit_exceeded"), message);
        e.retry_after = Some(retry_after.max(1));
        e
    }

    /// 404 for a thing the request names (a request id, a backend) that Hermes does not know.
    pub fn not_found(message: impl Into<String>, param: &str, code: &'static str) -> ApiError {
        let mut e = ApiError::new(404, "invalid_request_error", Some(code), message);
        e.param = Some(param.to_string());
        e
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "api_error", None, message)
    }

    pub fn body(&self) -> Bytes {
        Bytes::from(self.to_value().to_string())
    }

    pub fn to_value(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

/// The API calls Hermes routes to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
}

impl Endpoint {
    /// Path below a backend's API base.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }
}

/// A checked request: the JSON object as the client sent it, plus what routing needs from it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub endpoint: Endpoint,
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
}

impl ApiRequest {
    /// The body to send upstream: the client's bytes when nothing changed, else re-encoded.
    pub fn body_for(&self, original: &Bytes, model: &str) -> Bytes {
        if model == self.model {
            return original.clone();
        }
        let mut body = self.body.clone();
        body.insert("model".into(), Value::String(model.to_string()));
        Bytes::from(Value::Object(body).to_string())
    }

    pub fn include_usage(&self) -> bool {
        self.body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Every message's text, for estimates and simulated answers.
    pub fn prompt_text(&self) -> String {
        let mut out = String::new();
        let field = if self.endpoint == Endpoint::Embeddings { "input" } else { "messages" };
        collect_text(self.body.get(field).unwrap_or(&Value::Null), &mut out);
        out
    }
}

fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        Value::Object(o) => {
            if let Some(c) = o.get("content").or_else(|| o.get("text")) {
                collect_text(c, out);
            }
        }
        _ => {}
    }
}

pub fn parse_request(endpoint: Endpoint, raw: &[u8]) -> Result<ApiRequest, ApiError> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(raw) else {
        return Err(ApiError::invalid_json());
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        None | Some(Value::Null) => return Err(ApiError::bad_request("You must provide a model parameter.", Some("model"))),
        Some(_) => return Err(ApiError::bad_request("`model` must be a non-empty string.", Some("model"))),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("`stream` must be a boolean.", Some("stream"))),
    };
    match endpoint {
        Endpoint::ChatCompletions => check_chat(&body)?,
        Endpoint::Embeddings => check_embeddings(&body)?,
    }
    Ok(ApiRequest { endpoint, body, model, stream })
}

fn check_chat(body: &Map<String, Value>) -> Result<(), ApiError> {
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(ApiError::bad_request("`messages` must hold at least one message.", Some("messages"))),
        None | Some(Value::Null) => return Err(ApiError::bad_request("Missing required parameter: 'messages'.", Some("messages"))),
        Some(_) => return Err(ApiError::bad_request("`messages` must be an array of messages.", Some("messages"))),
    };
    for (i, m) in messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::bad_request(format!("messages[{i}] must be an object."), Some(&format!("messages[{i}]"))));
        };
        match m.get("role") {
            Some(Value::String(r)) if matches!(r.as_str(), "system" | "developer" | "user" | "assistant" | "tool" | "function") => {}
            _ => {
                return Err(ApiError::bad_request(
                    format!("messages[{i}].role must be one of system, developer, user, assistant, tool."),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        }
    }
    let number = |name: &str, integer: bool| -> Result<(), ApiError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Number(n)) if !integer || n.is_u64() => Ok(()),
            Some(_) => Err(ApiError::bad_request(
                format!("`{name}` must be {}.", if integer { "a non-negative integer" } else { "a number" }),
                Some(name),
            )),
        }
    };
    for name in ["temperature", "top_p", "presence_penalty", "frequency_penalty"] {
        number(name, false)?;
    }
    for name in ["max_tokens", "max_completion_tokens", "n"] {
        number(name, true)?;
    }
    match body.get("stream_options") {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(ApiError::bad_request("`stream_options` must be an object.", Some("stream_options"))),
    }
}

fn check_embeddings(body: &Map<String, Value>) -> Result<(), ApiError> {
    match body.get("input") {
        Some(Value::String(_)) | Some(Value::Array(_)) => Ok(()),
        None | Some(Value::Null) => Err(ApiError::bad_request("Missing required parameter: 'input'.", Some("input"))),
        Some(_) => Err(ApiError::bad_request("`input` must be a string or an array.", Some("input"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<ApiRequest, ApiError> {
        parse_request(Endpoint::ChatCompletions, body.as_bytes())
    }

    #[test]
    fn wrong_field_types_name_the_field() {
        assert_eq!(chat("{").unwrap_err().status, 400);
        assert_eq!(chat("[1]").unwrap_err().param, None);
        assert_eq!(chat(r#"{"model":5,"messages":[]}"#).unwrap_err().param.as_deref(), Some("model"));
        assert_eq!(chat(r#"{"model":"m"}"#).unwrap_err().param.as_deref(), Some("messages"));
        assert_eq!(
            chat(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#).unwrap_err().param.as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        assert_eq!(
            chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#).unwrap_err().param.as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#).unwrap_err().param.as_deref(),
            Some("stream")
        );
    }

    #[test]
    fn unknown_fields_survive_and_unchanged_bodies_are_not_reencoded() {
        let raw = Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":7,"tools":[{"type":"function"}]}"#);
        let req = chat(std::str::from_utf8(&raw).unwrap()).unwrap();
        assert_eq!(req.body_for(&raw, "m"), raw);
        let swapped: Value = serde_json::from_slice(&req.body_for(&raw, "other")).unwrap();
        assert_eq!(swapped["model"], "other");
        assert_eq!(swapped["seed"], 7);
        assert_eq!(swapped["tools"][0]["type"], "function");
        // key order kept: model still first
        assert!(std::str::from_utf8(&req.body_for(&raw, "other")).unwrap().starts_with(r#"{"model":"other""#));
    }

    #[test]
    fn error_body_has_openai_shape() {
        let v = ApiError::model_not_found("nope").to_value();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    }
}
