//! One request's trace, when traces are exported (`state::traces`): a server span from
//! admission to record that continues the client's `traceparent`; inside it a span for classify
//! and one for route, and a client span per attempt whose context that backend receives as its
//! own `traceparent`, so the failover chain shows. Attributes follow OpenTelemetry's GenAI
//! conventions and are set from the same story the analytics get; no prompt or answer text
//! unless HERMES_LOG_CONTENT is on, never a key.

use super::exchange::Exchange;
use super::Downstream;
use crate::decide::route::retry::Reason;
use crate::state::analytics::record::AttemptRecord;
use crate::state::gateway::Gateway;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};
use std::time::{Instant, SystemTime};

/// The W3C trace-context headers passed on to a backend.
pub type TraceHeaders = Vec<(&'static str, String)>;

pub struct RequestTrace {
    tracer: &'static SdkTracer,
    /// Holds the request span; the parent of every other span of the request.
    cx: Context,
    /// The wall-clock time of `Exchange::started`: spans carry wall-clock times, stages Instants.
    began: (Instant, SystemTime),
    /// The attempt under way, until its record is written.
    attempt: Option<Span>,
}

impl RequestTrace {
    /// The request span, started at `started`; None when traces are off.
    pub fn start<D: Downstream>(down: &D, started: Instant) -> Option<Box<RequestTrace>> {
        let tracer = crate::state::traces::tracer()?;
        let parent = TraceContextPropagator::new().extract(&Incoming(down));
        let began = (started, SystemTime::now().checked_sub(started.elapsed()).unwrap_or_else(SystemTime::now));
        let span = tracer
            .span_builder(format!("{} {}", down.method(), down.path()))
            .with_kind(SpanKind::Server)
            .with_start_time(began.1)
            .start_with_context(tracer, &parent);
        Some(Box::new(RequestTrace { tracer, cx: parent.with_span(span), began, attempt: None }))
    }

    fn at(&self, instant: Instant) -> SystemTime {
        self.began.1 + instant.saturating_duration_since(self.began.0)
    }

    /// Whether this request's spans are recorded (sampled); an unsampled request builds none
    /// beyond its own, and passes its own context on.
    fn sampled(&self) -> bool {
        self.cx.span().span_context().is_sampled()
    }

    /// A finished stage of the request (classify, route), from `from` until now.
    pub fn stage(&self, name: &'static str, from: Instant, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if !self.sampled() {
            return;
        }
        let attributes = attributes();
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(self.at(from))
            .with_attributes(attributes)
            .start_with_context(self.tracer, &self.cx);
        span.end();
    }

    /// An attempt begins: its span, and the `traceparent` the backend gets.
    pub fn attempt(&mut self, n: u32, operation: &'static str, backend: &str, provider: &'static str, model: &str) -> TraceHeaders {
        let mut headers = Outgoing(Vec::with_capacity(2));
        if !self.sampled() {
            TraceContextPropagator::new().inject_context(&self.cx, &mut headers);
            return headers.0;
        }
        let span = self
            .tracer
            .span_builder(format!("{operation} {model}"))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("hermes.attempt", i64::from(n)),
                KeyValue::new("hermes.backend", backend.to_string()),
                KeyValue::new("gen_ai.operation.name", operation),
                KeyValue::new("gen_ai.request.model", model.to_string()),
                KeyValue::new("gen_ai.provider.name", provider),
            ])
            .start_with_context(self.tracer, &self.cx);
        TraceContextPropagator::new().inject_context(&self.cx.with_remote_span_context(span.span_context().clone()), &mut headers);
        self.attempt = Some(span);
        headers.0
    }

    /// The attempt ended as its record says; `reason` when it failed.
    pub fn attempt_ended(&mut self, record: &AttemptRecord, status: Option<u16>, reason: Option<Reason>) {
        let Some(mut span) = self.attempt.take() else { return };
        if let Some(s) = status {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(s)));
        }
        if let Some(r) = reason {
            span.set_attribute(KeyValue::new("hermes.failure_reason", r.as_str()));
            span.set_attribute(KeyValue::new("error.type", r.as_str()));
        }
        if reason.is_some() || record.success == Some(false) {
            span.set_status(Status::error(record.error.clone().unwrap_or_default()));
        }
        if let Some(ttft) = record.ttft {
            span.set_attribute(KeyValue::new("hermes.ttft_ms", ttft.as_secs_f64() * 1000.0));
        }
        span.end();
    }

    /// The request is over: its attributes, from the finished story, and its end.
    pub fn finish(self, gateway: &Gateway, ex: &Exchange, method: &str, path: &str) {
        if !self.sampled() {
            return;
        }
        let span = self.cx.span();
        let backend = ex.backend.and_then(|i| gateway.config.backends.get(i));
        let mut a = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("url.path", path.to_string()),
            KeyValue::new("http.response.status_code", i64::from(ex.status)),
            KeyValue::new("gen_ai.operation.name", operation(ex.endpoint)),
            KeyValue::new("hermes.request_id", ex.request_id.clone()),
            KeyValue::new("hermes.attempts", i64::from(ex.attempts)),
            KeyValue::new("hermes.cache_hit", ex.cache_hit),
            KeyValue::new("hermes.stream", ex.stream),
        ];
        let mut add = |k: &'static str, v: Option<opentelemetry::Value>| {
            if let Some(v) = v {
                a.push(KeyValue::new(k, v));
            }
        };
        add("gen_ai.request.model", ex.model_requested.clone().map(Into::into));
        add("gen_ai.response.model", ex.model.clone().map(Into::into));
        add("gen_ai.provider.name", backend.map(|b| b.kind.as_str().into()));
        add("gen_ai.system", backend.map(|b| b.kind.as_str().into()));
        add("hermes.backend", backend.map(|b| b.name.clone().into()));
        add("gen_ai.usage.input_tokens", ex.usage.map(|u| (u.prompt_tokens as i64).into()));
        add("gen_ai.usage.output_tokens", ex.usage.map(|u| (u.completion_tokens as i64).into()));
        add("hermes.job_type", ex.job_type.map(|j| j.as_str().into()));
        add("hermes.complexity", ex.complexity.map(Into::into));
        add("hermes.criteria", ex.selection.as_ref().map(|s| s.criteria.into()));
        add("hermes.cost_cents", ex.cost_cents.map(Into::into));
        add("hermes.key.name", ex.caller.key().map(|k| k.spec.name.clone().into()));
        if gateway.config.log_content {
            add("gen_ai.input.messages", ex.prompt.clone().map(Into::into));
            add("gen_ai.output.messages", ex.answer.clone().map(Into::into));
        }
        if ex.status >= 400 {
            // The error's own code when Hermes answered it, else (an upstream's 4xx relayed) the
            // status, as OpenTelemetry's HTTP conventions have it.
            a.push(KeyValue::new("error.type", ex.error_code.map_or_else(|| ex.status.to_string().into(), opentelemetry::Value::from)));
        }
        span.set_attributes(a);
        // A server span is in error for the server's faults only, not for the client's 4xx.
        if ex.status >= 500 {
            span.set_status(Status::error(ex.error.clone().unwrap_or_default()));
        }
        span.end();
    }
}

/// `gen_ai.operation.name` of a door's endpoint.
pub fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "/embeddings" => "embeddings",
        _ => "chat",
    }
}

/// The client's trace context, read from its headers.
struct Incoming<'a, D>(&'a D);

impl<D: Downstream> Extractor for Incoming<'_, D> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.header(key)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

struct Outgoing(TraceHeaders);

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        let name = match key {
            "traceparent" => "traceparent",
            "tracestate" => "tracestate",
            _ => return,
        };
        self.0.push((name, value));
    }
}

/// With traces off, a client's `traceparent` reaches the backends unchanged.
pub fn passed_through<D: Downstream>(down: &D) -> TraceHeaders {
    ["traceparent", "tracestate"].into_iter().filter_map(|h| down.header(h).map(|v| (h, v.to_string()))).collect()
}
