//! The shapes requests arrive in. Each door decodes its request into the one internal request
//! (an OpenAI chat completions body, which every backend adapter speaks) and encodes the
//! internal answer (a chat completion, whole or streamed) back into its own shape, errors
//! included. Routing, privacy, budgets, failover and the records never see which door it was.
//!
//! - [`openai`]: Chat Completions and Embeddings, passed through as they came;
//! - [`responses`]: OpenAI's Responses API;
//! - [`messages`]: Anthropic's Messages API;
//! - [`answer`]: the internal answer, read into the parts the doors re-encode.

pub mod answer;
pub mod messages;
pub mod openai;
pub mod responses;

use crate::error::ApiError;
use bytes::Bytes;
use serde_json::{Map, Value};

/// Which door a request came in by: what its answers and errors look like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DoorKind {
    #[default]
    OpenAi,
    Responses,
    Messages,
}

impl DoorKind {
    /// The error in this door's shape.
    fn error_value(self, err: &ApiError) -> Value {
        match self {
            DoorKind::Messages => err.to_anthropic(),
            DoorKind::OpenAi | DoorKind::Responses => err.to_value(),
        }
    }

    pub fn error_body(self, err: &ApiError) -> Bytes {
        Bytes::from(self.error_value(err).to_string())
    }

    /// The `error` event that ends a stream broken after its first byte, for a stream that
    /// passed through without an encoder (OpenAI's, or Anthropic's own on the Messages door).
    pub fn stream_error(self, err: &ApiError) -> Bytes {
        Bytes::from(format!("event: error\ndata: {}\n\n", self.error_value(err)))
    }
}

/// What a decoded request needs to have its answer encoded.
#[derive(Debug, Clone, Default)]
pub enum Door {
    #[default]
    OpenAi,
    /// Shared with the stream's encoder rather than copied into it: it holds the request's
    /// echoed fields and the conversation so far.
    Responses(std::sync::Arc<responses::Context>),
    /// The message id to answer with and the model the client asked for (Anthropic echoes it).
    Messages { id: String, model: String },
}

impl Door {
    pub fn kind(&self) -> DoorKind {
        match self {
            Door::OpenAi => DoorKind::OpenAi,
            Door::Responses(_) => DoorKind::Responses,
            Door::Messages { .. } => DoorKind::Messages,
        }
    }

    /// A whole chat completion in this door's shape; `Err` when it is not one. For the
    /// Responses door the response object comes back too, to be stored.
    pub fn encode(&self, chat: &Bytes, model: &str) -> Result<(Bytes, Option<Value>), String> {
        let parse = || serde_json::from_slice::<Value>(chat).map_err(|e| format!("the backend's answer is not JSON: {e}"));
        match self {
            Door::OpenAi => Ok((chat.clone(), None)),
            Door::Messages { id, model: asked } => Ok((Bytes::from(messages::encode(&parse()?, id, shown(asked, model)).to_string()), None)),
            Door::Responses(ctx) => {
                let response = ctx.encode(&parse()?, model);
                Ok((Bytes::from(response.to_string()), Some(response)))
            }
        }
    }

    /// The stream encoder for this door; None for OpenAI's, whose stream passes through.
    pub fn stream_encoder(&self, model: &str) -> Option<StreamEncoder> {
        match self {
            Door::OpenAi => None,
            Door::Messages { id, model: asked } => {
                Some(StreamEncoder::Messages(Box::new(messages::StreamEncoder::new(id.clone(), shown(asked, model).to_string()))))
            }
            Door::Responses(ctx) => Some(StreamEncoder::Responses(Box::new(responses::StreamEncoder::new(ctx.clone(), model.to_string())))),
        }
    }
}

/// One named SSE event whose JSON starts with its `type` (as OpenAI and Anthropic write theirs),
/// then `data`'s fields in their order.
fn named_event(name: &str, data: &Value, out: &mut Vec<u8>) {
    EventWriter::new(name, out).fields_of(data).end();
}

/// A named SSE event written straight into the answer's bytes, field by field: no JSON tree is
/// built for it, nor text formatted and copied (the Responses door writes several per chunk).
struct EventWriter<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> EventWriter<'o> {
    /// `event: NAME`, then the data's JSON up to and including its `type`.
    fn new(name: &str, out: &'o mut Vec<u8>) -> EventWriter<'o> {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":");
        json_into(out, name);
        EventWriter { out }
    }

    fn field(mut self, key: &str, value: &(impl serde::Serialize + ?Sized)) -> Self {
        self.key(key);
        json_into(self.out, value);
        self
    }

    /// A field whose value is JSON already.
    fn raw(mut self, key: &str, json: &[u8]) -> Self {
        self.key(key);
        self.out.extend_from_slice(json);
        self
    }

    /// Every field of a JSON object but its `type`.
    fn fields_of(mut self, data: &Value) -> Self {
        for (key, value) in data.as_object().into_iter().flatten().filter(|(k, _)| *k != "type") {
            self = self.field(key, value);
        }
        self
    }

    fn key(&mut self, key: &str) {
        self.out.push(b',');
        json_into(self.out, key);
        self.out.push(b':');
    }

    fn end(self) {
        self.out.extend_from_slice(b"}\n\n");
    }
}

/// `value` as JSON at the end of `out`. Writing into memory cannot fail, and these values
/// (text, numbers, JSON trees with text keys) always serialize.
fn json_into(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(out, value);
}

/// `temperature` and `top_p` into the chat request as they are; `wrong(key)` when not a number.
fn copy_sampling(body: &Map<String, Value>, chat: &mut Map<String, Value>, wrong: impl Fn(&str) -> ApiError) -> Result<(), ApiError> {
    for key in ["temperature", "top_p"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(v @ Value::Number(_)) => {
                chat.insert(key.into(), v.clone());
            }
            Some(_) => return Err(wrong(key)),
        }
    }
    Ok(())
}

/// `stream`: a streamed internal request always asks for usage, which the doors' last events report.
fn copy_stream(body: &Map<String, Value>, chat: &mut Map<String, Value>, wrong: impl Fn() -> ApiError) -> Result<(), ApiError> {
    match body.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) => {
            chat.insert("stream".into(), Value::Bool(true));
            chat.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
            Ok(())
        }
        Some(_) => Err(wrong()),
    }
}

/// Anthropic answers name the model asked for; for `auto`, the one Hermes chose.
fn shown<'a>(asked: &'a str, answered: &'a str) -> &'a str {
    if asked == "auto" && !answered.is_empty() {
        answered
    } else {
        asked
    }
}

/// A streamed chat answer re-encoded event by event.
pub enum StreamEncoder {
    Messages(Box<messages::StreamEncoder>),
    Responses(Box<responses::StreamEncoder>),
}

impl StreamEncoder {
    /// Whole chat events in, this door's events out.
    pub fn feed(&mut self, chat: &[u8]) -> Bytes {
        Bytes::from(match self {
            StreamEncoder::Messages(e) => e.feed(chat),
            StreamEncoder::Responses(e) => e.feed(chat),
        })
    }

    /// The events that end a stream that broke after its first byte.
    pub fn broke(&mut self, err: &ApiError) -> Bytes {
        Bytes::from(match self {
            StreamEncoder::Messages(e) => e.broke(err),
            StreamEncoder::Responses(e) => e.broke(err),
        })
    }

    /// The finished response object of a Responses stream, to be stored.
    pub fn completed(&mut self) -> Option<Value> {
        match self {
            StreamEncoder::Messages(_) => None,
            StreamEncoder::Responses(e) => e.completed.take(),
        }
    }
}

/// The body of a request that came in by `kind`, decoded into the internal request. `earlier`
/// finds the conversation a `previous_response_id` continues (None: no such response for
/// this client).
pub fn decode(
    kind: DoorKind,
    endpoint: openai::Endpoint,
    raw: &[u8],
    request_id: &str,
    earlier: impl FnOnce(&str) -> Option<Vec<Value>>,
) -> Result<openai::ApiRequest, ApiError> {
    let id = request_id.trim_start_matches("req_");
    match kind {
        DoorKind::OpenAi => openai::parse_request(endpoint, raw),
        DoorKind::Messages => {
            let chat = messages::decode(&openai::json_object(raw)?)?;
            let model = chat.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
            openai::checked(openai::Endpoint::ChatCompletions, chat, Door::Messages { id: format!("msg_{id}"), model })
        }
        DoorKind::Responses => {
            let body = openai::json_object(raw)?;
            let before = match body.get("previous_response_id") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(previous)) => earlier(previous).ok_or_else(|| {
                    ApiError::not_found(format!("Previous response with id '{previous}' not found."), "previous_response_id", "previous_response_not_found")
                })?,
                Some(_) => return Err(ApiError::bad_request("Invalid type for 'previous_response_id': expected a string.", Some("previous_response_id"))),
            };
            let (chat, context) = responses::decode(&body, format!("resp_{id}"), before)?;
            openai::checked(openai::Endpoint::ChatCompletions, chat, Door::Responses(std::sync::Arc::new(context)))
        }
    }
}
