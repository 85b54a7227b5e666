//! OpenTelemetry export: the tracer the pipeline's spans come from, and the thread that sends
//! them on. Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set; configured by
//! the standard OTEL_* variables, read by the opentelemetry crates themselves (endpoint, headers,
//! timeout, service name, resource attributes, sampler).
//!
//! A finished span is handed over with a `try_send` into a bounded queue and nothing else: a
//! slow or dead collector fills the queue, and what does not fit is counted as dropped
//! (`hermes_trace_spans_dropped_total`) rather than waited for. The SDK's own batch processor
//! drops silently, which is why this one is ours; encoding and transport are the crates'.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter as _, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::mpsc;

static TRACES: OnceLock<Traces> = OnceLock::new();

struct Traces {
    tracer: SdkTracer,
    /// Keeps the provider (and so the processor) alive for the process's life.
    _provider: SdkTracerProvider,
    /// Asks the export thread to send what is queued; it answers on the enclosed channel.
    flush: mpsc::UnboundedSender<std::sync::mpsc::Sender<()>>,
}

/// The tracer, when traces are exported.
pub fn tracer() -> Option<&'static SdkTracer> {
    TRACES.get().map(|t| &t.tracer)
}

/// Whether the environment asks for traces: an OTLP endpoint, and not switched off.
pub fn wanted() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let off = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !off && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// What is wrong with the OTEL_* settings, if anything (start-up and `hermes check-config`).
pub fn check() -> Result<(), String> {
    if !wanted() {
        return Ok(());
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"));
    match protocol.as_deref().map(str::trim) {
        Err(_) | Ok("") | Ok("http/protobuf") => {}
        Ok(other) => return Err(format!("OTEL_EXPORTER_OTLP_PROTOCOL={other}: Hermes exports traces as OTLP over HTTP/protobuf only (http/protobuf)")),
    }
    if let Ok(t) = std::env::var("OTEL_TRACES_EXPORTER") {
        if !matches!(t.trim(), "" | "otlp" | "none") {
            return Err(format!("OTEL_TRACES_EXPORTER={t}: Hermes exports traces with otlp only"));
        }
    }
    Ok(())
}

/// Starts the export thread and the tracer, once per process. Off (Ok) when no endpoint is set.
pub fn start() -> Result<(), String> {
    if !wanted() || TRACES.get().is_some() {
        return Ok(());
    }
    check()?;
    let timeout = env_ms(&["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"], 10_000);
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| format!("the OTLP client: {e}"))?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(Client(client))
        .build()
        .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
    // service.name is "hermes" unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) names it.
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.split(',').any(|kv| kv.trim_start().starts_with("service.name=")));
    let resource = if named { Resource::builder().build() } else { Resource::builder().with_service_name("hermes").build() };
    exporter.set_resource(&resource);

    let queue = env_usize("OTEL_BSP_MAX_QUEUE_SIZE", 2048);
    let batch = env_usize("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512).min(queue);
    let every = env_ms(&["OTEL_BSP_SCHEDULE_DELAY"], 5_000);
    let (spans, received) = mpsc::channel(queue);
    let (flush, flushes) = mpsc::unbounded_channel();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("the trace exporter's runtime: {e}"))?;
    std::thread::Builder::new()
        .name("hermes-traces".into())
        .spawn(move || runtime.block_on(export(exporter, received, flushes, batch, every)))
        .map_err(|e| format!("the trace exporter's thread: {e}"))?;
    // The sampler comes from OTEL_TRACES_SAMPLER / _ARG (the SDK's default configuration).
    let provider = SdkTracerProvider::builder().with_span_processor(Queue { spans }).with_resource(resource).build();
    let tracer = provider.tracer("hermes");
    let _ = TRACES.set(Traces { tracer, _provider: provider, flush });
    describe();
    Ok(())
}

/// Sends what is queued, waiting at most `within` (shutdown: the last requests' spans).
pub fn flush(within: Duration) -> bool {
    let Some(t) = TRACES.get() else { return true };
    let (done, sent) = std::sync::mpsc::channel();
    t.flush.send(done).is_ok() && sent.recv_timeout(within).is_ok()
}

fn describe() {
    metrics::describe_counter!("hermes_trace_spans_exported_total", "Spans the OTLP collector accepted.");
    metrics::describe_counter!(
        "hermes_trace_spans_dropped_total",
        "Spans that never reached the collector, by reason: queue_full (the export queue was full), export_failed (the collector refused or could not be reached)."
    );
}

fn dropped(reason: &'static str, n: usize) {
    metrics::counter!("hermes_trace_spans_dropped_total", "reason" => reason).increment(n as u64);
}

/// The span processor: a finished span goes into the bounded queue, or is counted as dropped.
#[derive(Debug)]
struct Queue {
    spans: mpsc::Sender<SpanData>,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.spans.try_send(span).is_err() {
            dropped("queue_full", 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The export thread: a batch leaves when it is full, when OTEL_BSP_SCHEDULE_DELAY has passed
/// since the last one, or when a flush asks for it.
async fn export(
    exporter: opentelemetry_otlp::SpanExporter,
    mut received: mpsc::Receiver<SpanData>,
    mut flushes: mpsc::UnboundedReceiver<std::sync::mpsc::Sender<()>>,
    batch: usize,
    every: Duration,
) {
    let mut held: Vec<SpanData> = Vec::with_capacity(batch);
    let timer = tokio::time::sleep(every);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            Some(done) = flushes.recv() => {
                while let Ok(span) = received.try_recv() {
                    held.push(span);
                    if held.len() >= batch {
                        send(&exporter, &mut held).await;
                    }
                }
                send(&exporter, &mut held).await;
                let _ = done.send(());
            }
            n = received.recv_many(&mut held, batch) => {
                if n == 0 {
                    send(&exporter, &mut held).await;
                    return;
                }
                if held.len() >= batch {
                    send(&exporter, &mut held).await;
                    timer.as_mut().reset(tokio::time::Instant::now() + every);
                }
            }
            () = &mut timer => {
                send(&exporter, &mut held).await;
                timer.as_mut().reset(tokio::time::Instant::now() + every);
            }
        }
    }
}

async fn send(exporter: &opentelemetry_otlp::SpanExporter, held: &mut Vec<SpanData>) {
    if held.is_empty() {
        return;
    }
    let spans = std::mem::take(held);
    let n = spans.len();
    match exporter.export(spans).await {
        Ok(()) => metrics::counter!("hermes_trace_spans_exported_total").increment(n as u64),
        Err(e) => {
            dropped("export_failed", n);
            log::debug!("trace export failed: {}", describe_error(&e));
        }
    }
}

/// The export error without the request it failed on (which could carry the collector's headers).
fn describe_error(e: &OTelSdkError) -> &'static str {
    match e {
        OTelSdkError::AlreadyShutdown => "already shut down",
        OTelSdkError::Timeout(_) => "timed out",
        OTelSdkError::InternalFailure(_) => "the collector could not be reached or refused the batch",
    }
}

/// OTLP over the reqwest client the CLI already carries: one client stack in the binary, and
/// none of it on the request path (the export thread alone uses it).
#[derive(Debug)]
struct Client(reqwest::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(&self, request: http::Request<bytes::Bytes>) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let answer = self.0.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
        let mut response = http::Response::builder().status(answer.status().as_u16());
        if let Some(h) = response.headers_mut() {
            *h = answer.headers().clone();
        }
        let body = answer.bytes().await?;
        Ok(response.body(body)?)
    }
}

fn env_ms(names: &[&str], default_ms: u64) -> Duration {
    let ms = names.iter().find_map(|n| std::env::var(n).ok().and_then(|v| v.trim().parse::<u64>().ok())).unwrap_or(default_ms);
    Duration::from_millis(ms)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|n| *n > 0).unwrap_or(default)
}
