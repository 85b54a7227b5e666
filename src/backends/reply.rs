//! What a backend gives back: status and headers as soon as they arrive, the body as it comes,
//! in OpenAI's wire format whatever the backend speaks (or, passed through, in the door's own);
//! or why there was no answer at all.

use crate::decide::scrub::Scrubber;
use bytes::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::sync::Arc;

pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, AttemptError>> + Send>>;

/// A backend's answer: status and headers as soon as they arrive, the body as it comes.
/// The body is OpenAI's wire format (JSON, or SSE for streams) whatever the backend speaks.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: BodyStream,
    /// The most `bytes()` will hold of the body (HERMES_MAX_ANSWER_BYTES for an upstream's).
    pub limit: usize,
    /// Already in the shape of the request's door (a Messages request Anthropic answered as it
    /// is), not OpenAI's: the door passes it on without re-encoding.
    pub native: bool,
}

impl Reply {
    /// The whole body, at most `limit` bytes of it; status and headers stay readable.
    pub async fn bytes(&mut self) -> Result<Bytes, AttemptError> {
        self.bytes_within(self.limit).await
    }

    /// The whole body when it is at most `limit` bytes (and `self.limit`); an error beyond.
    pub async fn bytes_within(&mut self, limit: usize) -> Result<Bytes, AttemptError> {
        use futures_util::StreamExt;
        let limit = limit.min(self.limit);
        let mut first: Option<Bytes> = None;
        let mut all = Vec::new();
        while let Some(chunk) = self.body.next().await {
            let chunk = chunk?;
            let size = first.as_ref().map_or(0, Bytes::len) + all.len() + chunk.len();
            if size > limit {
                return Err(AttemptError::TooLarge(limit));
            }
            // A body in one chunk is handed over as it is.
            match first.take() {
                None if all.is_empty() => first = Some(chunk),
                held => {
                    all.extend_from_slice(&held.unwrap_or_default());
                    all.extend_from_slice(&chunk);
                }
            }
        }
        Ok(first.unwrap_or_else(|| Bytes::from(all)))
    }

    /// The same answer with every key Hermes holds taken out of its headers and body, before
    /// anything relays, logs or stores it. A key split over two chunks is held back until the
    /// next chunk shows whether it is one.
    pub fn scrubbed(mut self, scrubber: &Arc<Scrubber>) -> Reply {
        use futures_util::StreamExt;
        if !scrubber.is_active() {
            return self;
        }
        for value in self.headers.values_mut() {
            if let Ok(text) = value.to_str() {
                if let std::borrow::Cow::Owned(clean) = scrubber.text(text) {
                    *value = http::HeaderValue::from_str(&clean).unwrap_or(http::HeaderValue::from_static(crate::decide::scrub::REDACTED));
                }
            }
        }
        let state = (self.body, Vec::<u8>::new(), scrubber.clone(), false);
        let body = futures_util::stream::unfold(state, |(mut body, mut carry, scrubber, done)| async move {
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    // Only a chunk that follows a held-back tail is copied to join it.
                    let joined = if carry.is_empty() {
                        chunk
                    } else {
                        carry.extend_from_slice(&chunk);
                        Bytes::from(std::mem::take(&mut carry))
                    };
                    let clean = scrubber.bytes(joined);
                    let keep = scrubber.unfinished_tail(&clean);
                    carry.extend_from_slice(&clean[clean.len() - keep..]);
                    Some((Ok(clean.slice(..clean.len() - keep)), (body, carry, scrubber, false)))
                }
                Some(Err(e)) => Some((Err(e), (body, carry, scrubber, true))),
                None if carry.is_empty() => None,
                None => {
                    let rest = scrubber.bytes(Bytes::from(std::mem::take(&mut carry)));
                    Some((Ok(rest), (body, carry, scrubber, true)))
                }
            }
        })
        .filter(|c| std::future::ready(!matches!(c, Ok(b) if b.is_empty())));
        self.body = Box::pin(body);
        self
    }

    pub async fn json(mut self) -> Result<serde_json::Value, String> {
        let bytes = self.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| format!("the answer is not JSON: {e}"))
    }
}

/// Why an attempt produced no answer at all. Messages never carry keys.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttemptError {
    #[error("connection failed")]
    Connect,
    #[error("answer broke off: {0}")]
    Broken(String),
    #[error("the answer is larger than {0} bytes (HERMES_MAX_ANSWER_BYTES)")]
    TooLarge(usize),
}

/// A whole JSON answer made by Hermes (translated, simulated or an error).
pub fn json_reply(status: u16, body: serde_json::Value) -> Reply {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    let bytes = Bytes::from(body.to_string());
    Reply { status, headers, body: Box::pin(futures_util::stream::iter([Ok::<_, AttemptError>(bytes)])), limit: usize::MAX, native: false }
}

/// A 200 stream whose bytes are translated into OpenAI SSE as they arrive.
pub fn translated_stream<F>(resp: Reply, mut translate: F) -> Reply
where
    F: FnMut(&[u8]) -> Result<Vec<u8>, String> + Send + 'static,
{
    use futures_util::StreamExt;
    let limit = resp.limit;
    let body = resp.body.map(move |chunk| translate(&chunk?).map(Bytes::from).map_err(AttemptError::Broken));
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream; charset=utf-8"));
    Reply { status: 200, headers, body: Box::pin(body.filter(|c| std::future::ready(!matches!(c, Ok(b) if b.is_empty())))), limit, native: false }
}
