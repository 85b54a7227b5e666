//! OpenAI's request shapes: the checks a request passes before Hermes spends anything on it.
//! Requests stay JSON values so unknown fields travel untouched. A chat completions body is also
//! the internal request the other doors decode into.

use super::Door;
use crate::error::ApiError;
use bytes::Bytes;
use serde_json::{Map, Value};

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
    /// The door it came in by, and what its answer needs to be encoded.
    pub door: Door,
}

impl ApiRequest {
    /// The body to send upstream: the client's bytes when nothing changed, else re-encoded.
    pub fn body_for(&self, original: &Bytes, model: &str) -> Bytes {
        if model == self.model && matches!(self.door, Door::OpenAi) {
            return original.clone();
        }
        let mut body = self.body.clone();
        body.insert("model".into(), Value::String(model.to_string()));
        Bytes::from(Value::Object(body).to_string())
    }

    pub fn include_usage(&self) -> bool {
        self.body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false)
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
    checked(endpoint, json_object(raw)?, Door::OpenAi)
}

/// The body as a JSON object with distinct keys, whichever door it came in by.
pub fn json_object(raw: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match strict_json(raw) {
        Ok(Value::Object(body)) => Ok(body),
        Err(Some(key)) => Err(ApiError::bad_request(format!("The JSON body has the key `{key}` more than once; send each key once."), Some(&key))),
        _ => Err(ApiError::invalid_json()),
    }
}

/// A chat completions (or embeddings) body checked as a request: what every door ends in.
pub fn checked(endpoint: Endpoint, body: Map<String, Value>, door: Door) -> Result<ApiRequest, ApiError> {
    let known = Known::of(&body);
    let model = match known.model {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        None | Some(Value::Null) => return Err(ApiError::bad_request("You must provide a model parameter.", Some("model"))),
        Some(_) => return Err(ApiError::bad_request("`model` must be a non-empty string.", Some("model"))),
    };
    let stream = match known.stream {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("`stream` must be a boolean.", Some("stream"))),
    };
    match endpoint {
        Endpoint::ChatCompletions => check_chat(&known)?,
        Endpoint::Embeddings => check_embeddings(&known)?,
    }
    Ok(ApiRequest { endpoint, body, model, stream, door })
}

/// The numeric parameters checked, and whether each must be a whole non-negative number.
const NUMBERS: [(&str, bool); 7] = [
    ("temperature", false),
    ("top_p", false),
    ("presence_penalty", false),
    ("frequency_penalty", false),
    ("max_tokens", true),
    ("max_completion_tokens", true),
    ("n", true),
];

/// The top-level fields the checks read, picked out in one pass over the body. serde_json's map
/// hashes the key of every `get` (SipHash): thirteen lookups were about 2% of the request path's
/// instructions (`benches/load/instructions.sh`), for bodies that mostly hold two or three keys.
#[derive(Default)]
struct Known<'a> {
    model: Option<&'a Value>,
    stream: Option<&'a Value>,
    messages: Option<&'a Value>,
    input: Option<&'a Value>,
    stream_options: Option<&'a Value>,
    /// In the order of `NUMBERS`.
    numbers: [Option<&'a Value>; NUMBERS.len()],
}

impl<'a> Known<'a> {
    fn of(body: &'a Map<String, Value>) -> Known<'a> {
        let mut known = Known::default();
        for (key, value) in body {
            let slot = match key.as_str() {
                "model" => &mut known.model,
                "stream" => &mut known.stream,
                "messages" => &mut known.messages,
                "input" => &mut known.input,
                "stream_options" => &mut known.stream_options,
                other => match NUMBERS.iter().position(|(name, _)| *name == other) {
                    Some(i) => &mut known.numbers[i],
                    None => continue,
                },
            };
            *slot = Some(value);
        }
        known
    }
}

/// JSON with every object's keys distinct, at any depth. Parsers disagree about repeated keys
/// (the first or the last wins), so the text Hermes scans for personal data could differ from what
/// a backend reads: such a body is refused. `Err(Some(key))` names the repeated key.
pub fn strict_json(raw: &[u8]) -> Result<Value, Option<String>> {
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;
    struct Strict<'r>(&'r RefCell<Option<String>>);
    impl<'de> DeserializeSeed<'de> for Strict<'_> {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Strict<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(v) = seq.next_element_seed(Strict(self.0))? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    *self.0.borrow_mut() = Some(key);
                    return Err(A::Error::custom("repeated key"));
                }
                let v = map.next_value_seed(Strict(self.0))?;
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
    }
    let repeated = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(raw);
    let v = Strict(&repeated).deserialize(&mut de).and_then(|v| de.end().map(|_| v));
    v.map_err(|_| repeated.take())
}

fn check_chat(body: &Known<'_>) -> Result<(), ApiError> {
    let messages = match body.messages {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(ApiError::bad_request("`messages` must hold at least one message.", Some("messages"))),
        None | Some(Value::Null) => return Err(ApiError::bad_request("Missing required parameter: 'messages'.", Some("messages"))),
        Some(_) => return Err(ApiError::bad_request("`messages` must be an array of messages.", Some("messages"))),
    };
    for (i, m) in messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::bad_request(format!("messages[{i}] must be an object."), Some(&format!("messages[{i}]"))));
        };
        let (mut role, mut content) = (None, None);
        for (key, value) in m {
            match key.as_str() {
                "role" => role = Some(value),
                "content" => content = Some(value),
                _ => {}
            }
        }
        let role = match role {
            Some(Value::String(r)) if matches!(r.as_str(), "system" | "developer" | "user" | "assistant" | "tool" | "function") => r.as_str(),
            _ => {
                return Err(ApiError::bad_request(
                    format!("messages[{i}].role must be one of system, developer, user, assistant, tool."),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        };
        // Only an assistant's turn may go without content (it may hold tool calls instead).
        match content {
            Some(Value::String(_)) | Some(Value::Array(_)) => {}
            None | Some(Value::Null) if role == "assistant" => {}
            None => {
                return Err(ApiError::bad_request(format!("Missing required parameter: 'messages[{i}].content'."), Some(&format!("messages[{i}].content"))))
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    format!("messages[{i}].content must be a string or an array of content parts."),
                    Some(&format!("messages[{i}].content")),
                ))
            }
        }
    }
    for (&(name, integer), value) in NUMBERS.iter().zip(body.numbers) {
        match value {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if !integer || n.is_u64() => {}
            Some(_) => {
                return Err(ApiError::bad_request(format!("`{name}` must be {}.", if integer { "a non-negative integer" } else { "a number" }), Some(name)))
            }
        }
    }
    match body.stream_options {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(ApiError::bad_request("`stream_options` must be an object.", Some("stream_options"))),
    }
}

fn check_embeddings(body: &Known<'_>) -> Result<(), ApiError> {
    match body.input {
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
        assert_eq!(chat("{").unwrap_err().status(), 400);
        assert_eq!(chat("[1]").unwrap_err().param(), None);
        assert_eq!(chat(r#"{"model":5,"messages":[]}"#).unwrap_err().param(), Some("model"));
        assert_eq!(chat(r#"{"model":"m"}"#).unwrap_err().param(), Some("messages"));
        assert_eq!(chat(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#).unwrap_err().param(), Some("messages[0].role"));
        assert_eq!(chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#).unwrap_err().param(), Some("temperature"));
        assert_eq!(chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#).unwrap_err().param(), Some("max_tokens"));
        assert_eq!(chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#).unwrap_err().param(), Some("stream"));
    }

    /// With several fields wrong, the error names the first in a fixed order (model, stream,
    /// messages, the numbers as listed, stream_options), wherever each sits in the body.
    #[test]
    fn the_first_wrong_field_in_check_order_is_named_whatever_the_body_order() {
        let ok = r#""model":"m","messages":[{"content":"x","role":"user"}]"#;
        assert_eq!(chat(&format!(r#"{{"stream_options":1,"n":1.5,"top_p":"x",{ok}}}"#)).unwrap_err().param(), Some("top_p"));
        assert_eq!(chat(&format!(r#"{{"stream_options":1,"n":1.5,{ok}}}"#)).unwrap_err().param(), Some("n"));
        assert_eq!(chat(&format!(r#"{{"stream_options":1,{ok}}}"#)).unwrap_err().param(), Some("stream_options"));
        assert_eq!(chat(r#"{"temperature":"x","messages":7,"stream":1,"model":"m"}"#).unwrap_err().param(), Some("stream"));
        assert_eq!(chat(r#"{"temperature":"x","messages":7,"model":"m"}"#).unwrap_err().param(), Some("messages"));
        assert_eq!(chat(r#"{"messages":[{"content":5,"role":"wizard"}],"model":"m"}"#).unwrap_err().param(), Some("messages[0].role"));
        assert_eq!(chat(r#"{"messages":[{"content":5,"role":"user"}],"model":"m"}"#).unwrap_err().param(), Some("messages[0].content"));
        assert!(chat(&format!(r#"{{"temperature":null,"max_tokens":5,"stream_options":{{}},{ok}}}"#)).is_ok());
        let embed = |b: &str| parse_request(Endpoint::Embeddings, b.as_bytes());
        assert_eq!(embed(r#"{"input":5,"model":"m"}"#).unwrap_err().param(), Some("input"));
        assert!(embed(r#"{"input":["a"],"model":"m","temperature":"ignored here"}"#).is_ok());
    }

    #[test]
    fn repeated_keys_and_missing_content_are_refused() {
        let e = chat(r#"{"model":"m","messages":[{"role":"user","content":"a"}],"messages":[{"role":"user","content":"b"}]}"#).unwrap_err();
        assert_eq!((e.status(), e.param()), (400, Some("messages")));
        let e = chat(r#"{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}"#).unwrap_err();
        assert_eq!(e.param(), Some("content"));
        assert_eq!(chat(r#"{"model":"m","messages":[{"role":"user"}]}"#).unwrap_err().param(), Some("messages[0].content"));
        assert!(chat(r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[]}]}"#).is_ok());
        assert_eq!(chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}]} trailing"#).unwrap_err().code(), None);
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
}
