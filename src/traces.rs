//! Traces over OTLP/gRPC (`tracing_provider: otlp`), continuing the proxy's
//! W3C `traceparent`.
//!
//! Off (the default) it costs a decision one load of [`TRACER`]: no header
//! is read, no span is made. The spans of logins, refreshes and store
//! operations are `tracing` spans of target [`TARGET`], which only the
//! OpenTelemetry layer takes (the log layer leaves them out), so with no
//! such layer their call sites are disabled once and for all. A decision's
//! span is made here with the OpenTelemetry API instead, backdated to when
//! the decision started, because most decisions are only known to need no
//! I/O once they are done.
//!
//! Attributes carry front ends, route ids, outcomes, user ids and store
//! operations; never a cookie, a token, a code or a secret.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use crate::config::TracingConfig;
use crate::decision::Decision;
use crate::metrics::FrontEnd;
use crate::policy::Policy;

/// The `tracing` target of the spans only the OpenTelemetry layer takes.
pub const TARGET: &str = "authgate::otel";

/// The tracer, once traces are on; its absence is the "off" switch.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether traces are on (one atomic load).
#[inline]
pub fn on() -> bool {
    TRACER.get().is_some()
}

/// Builds the exporter and the tracer (needs a Tokio runtime: the gRPC
/// channel lives on it). Sampling is parent-based: a trace the proxy
/// sampled is followed, a new one kept at `sample_ratio`.
pub fn start(config: &TracingConfig) -> Result<SdkTracer, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .build()
        .map_err(|e| format!("tracing_otlp_endpoint {}: {e}", config.endpoint))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_service_name(config.service_name.clone())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        )
        .build();
    let tracer = provider.tracer("authgate");
    let _ = PROVIDER.set(provider);
    let _ = TRACER.set(tracer.clone());
    Ok(tracer)
}

/// Sends the spans still buffered and stops the exporter: for a graceful
/// shutdown (blocks up to the exporter's timeout; call off the runtime's
/// workers).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "traces: the last spans were not all sent");
    }
}

/// The proxy's `traceparent` and `tracestate`, read only when traces are on.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceHeaders<'a> {
    traceparent: Option<&'a [u8]>,
    tracestate: Option<&'a [u8]>,
}

impl<'a> TraceHeaders<'a> {
    /// Reads the two headers with `get` (by lower-case name), or nothing
    /// when traces are off.
    #[inline]
    pub fn read(get: impl Fn(&'static str) -> Option<&'a [u8]>) -> TraceHeaders<'a> {
        if !on() {
            return TraceHeaders::default();
        }
        TraceHeaders {
            traceparent: get("traceparent"),
            tracestate: get("tracestate"),
        }
    }

    /// The remote parent they name (W3C trace context), or an empty
    /// context when absent or malformed (a new trace starts).
    pub fn parent(&self) -> Context {
        TraceContextPropagator::new().extract(self)
    }
}

impl Extractor for TraceHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = match key {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }?;
        std::str::from_utf8(value).ok()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Makes `span` (a [`TARGET`] span) a child of the proxy's trace, if any.
pub fn continue_trace(span: &tracing::Span, headers: TraceHeaders<'_>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if on() && headers.traceparent.is_some() {
        let _ = span.set_parent(headers.parent());
    }
}

/// `span`, a login step's, under the proxy's trace in `headers` (nginx and
/// the others forward `traceparent` to the login host too).
pub fn request_span(span: tracing::Span, headers: &http::HeaderMap) -> tracing::Span {
    continue_trace(
        &span,
        TraceHeaders::read(|name| headers.get(name).map(http::HeaderValue::as_bytes)),
    );
    span
}

/// Marks the current [`TARGET`] span failed, with `reason` (a closed
/// label, never a secret).
pub fn failed(reason: &'static str) {
    let span = tracing::Span::current();
    span.record("otel.status_code", "ERROR");
    span.record("authgate.failure", reason);
}

/// The span of one decision; empty when traces are off.
#[derive(Debug, Default)]
pub struct DecisionSpan {
    cx: Option<Context>,
    /// Sampled: attributes to set, a span to end, a trace id to log.
    recording: bool,
}

impl DecisionSpan {
    /// Opens the decision's span, started at `started`, under the proxy's
    /// trace. Nothing at all when traces are off.
    #[inline]
    pub fn start(front_end: FrontEnd, headers: TraceHeaders<'_>, started: Instant) -> DecisionSpan {
        match TRACER.get() {
            None => DecisionSpan::default(),
            Some(tracer) => open(tracer, front_end, headers, started),
        }
    }

    /// The context to run the decision's I/O in, so its store and refresh
    /// spans are its children (and share its sampling decision).
    pub fn context(&self) -> Option<&Context> {
        self.cx.as_ref()
    }

    /// The context whose trace id the decision's log line carries: only a
    /// sampled one (a dropped trace is nowhere to be found).
    pub fn logged(&self) -> Option<&Context> {
        self.cx.as_ref().filter(|_| self.recording)
    }

    /// Records what was decided and ends the span (a dropped one has
    /// nothing to record).
    pub fn end(self, policy: &Policy, decision: &Decision) {
        if let Some(cx) = self.cx.filter(|_| self.recording) {
            close(&cx, policy, decision);
        }
    }
}

fn open(
    tracer: &SdkTracer,
    front_end: FrontEnd,
    headers: TraceHeaders<'_>,
    started: Instant,
) -> DecisionSpan {
    let parent = match headers.traceparent {
        Some(_) => headers.parent(),
        None => Context::new(),
    };
    let start = SystemTime::now()
        .checked_sub(started.elapsed())
        .unwrap_or_else(SystemTime::now);
    let span = tracer
        .span_builder("authgate.decision")
        .with_kind(SpanKind::Server)
        .with_start_time(start)
        .with_attributes([KeyValue::new("authgate.front_end", front_end.as_str())])
        .start_with_context(tracer, &parent);
    let recording = span.is_recording();
    DecisionSpan {
        cx: Some(parent.with_span(span)),
        recording,
    }
}

fn close(cx: &Context, policy: &Policy, decision: &Decision) {
    let span = cx.span();
    let (outcome, route, session) = match decision {
        Decision::Allow { route, session, .. } => ("allow", Some(*route), session.as_deref()),
        Decision::SignIn { route, .. } => ("sign_in", Some(*route), None),
        Decision::Deny { route, session, .. } => ("deny", *route, session.as_deref()),
        Decision::Unavailable => ("unavailable", None, None),
    };
    span.set_attribute(KeyValue::new("authgate.outcome", outcome));
    if let Some(route) = route {
        span.set_attribute(KeyValue::new(
            "authgate.route",
            policy.route_name(route).to_owned(),
        ));
    }
    if let Some(session) = session {
        span.set_attribute(KeyValue::new(
            "enduser.id",
            session.identity.subject.clone(),
        ));
    }
    if matches!(decision, Decision::Unavailable) {
        span.set_status(Status::error("session store unavailable"));
    }
    span.end();
}

/// The OpenTelemetry layer for the log subscriber, taking only
/// [`TARGET`] spans (not events: a log line goes to the log).
pub fn layer<S>(tracer: SdkTracer) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.target() == TARGET
        }))
}

/// The trace id of the current span, for the log line (`trace_id`); none
/// when traces are off or no sampled span is current.
pub fn current_trace_id() -> Option<opentelemetry::trace::TraceId> {
    if !on() {
        return None;
    }
    let cx = Context::current();
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| context.trace_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Off (no unit test turns traces on): a decision reads no header and
    /// opens no span.
    #[test]
    fn off_reads_nothing_and_makes_no_span() {
        assert!(!on());
        let headers = TraceHeaders::read(|name| panic!("read {name} with traces off"));
        assert!(headers.traceparent.is_none());
        let span = DecisionSpan::start(FrontEnd::Nginx, headers, Instant::now());
        assert!(span.context().is_none());
    }

    /// A W3C `traceparent` names the remote parent; a malformed one names
    /// none (a new trace starts, nothing fails).
    #[test]
    fn traceparent_is_the_remote_parent() {
        let parent = |value: &'static [u8]| {
            TraceHeaders {
                traceparent: Some(value),
                tracestate: Some(b"vendor=1"),
            }
            .parent()
        };
        let cx = parent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let remote = cx.span().span_context().clone();
        assert!(remote.is_valid() && remote.is_remote() && remote.is_sampled());
        assert_eq!(
            remote.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(remote.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(remote.trace_state().get("vendor"), Some("1"));
        for bad in [
            &b"garbage"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"\xff",
        ] {
            let cx = parent(bad);
            assert!(!cx.span().span_context().is_valid(), "{bad:?}");
        }
    }
}
