//! Logging setup and the log line of each decision. Secrets never reach a
//! log line: they live in types whose `Debug` redacts them, and handlers log
//! identities, route ids, hosts and paths (never a query, a cookie, a token
//! or a code).
//!
//! # Fields
//! - decisions (target `authgate::telemetry`): `front_end`, `route`,
//!   `user`, `reason` (refusals), `host`, `path`, `request_id`. A refusal is
//!   logged at info, an allow or a sign-in redirect at debug.
//! - logins (target `authgate::http::login`): `login started`,
//!   `login completed` (`user`, `return_to` without its query), `login
//!   failed` (`reason`, one of the `authgate_logins_total` reasons, and a
//!   `detail` for the operator).
//! - with traces on (`tracing_provider: otlp`), JSON lines written inside a
//!   traced decision or login step carry its `trace_id`.

use std::io::IsTerminal as _;
use tracing::Subscriber;
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, filter::FilterExt as _};

use crate::config::LogFormat;
use crate::decision::{Decision, Refusal};
use crate::metrics::FrontEnd;
use crate::policy::{Policy, Target};

/// Who asked for a decision, for its metrics and its log line.
#[derive(Clone, Copy, Debug)]
pub struct Asker<'a> {
    pub front_end: FrontEnd,
    /// The proxy's request id (`X-Request-Id`: nginx `$request_id`, Envoy's
    /// `x-request-id`), see [`request_id`].
    pub request_id: Option<&'a str>,
    /// The proxy's W3C trace context; empty when traces are off.
    pub trace: crate::traces::TraceHeaders<'a>,
}

/// Longest `X-Request-Id` worth logging; longer ones are left out.
const MAX_REQUEST_ID: usize = 128;

/// Installs the global subscriber, with the OpenTelemetry layer when
/// `tracing` is set (then it must run on the Tokio runtime, which carries
/// the exporter). `RUST_LOG` overrides `level` when set. Calling it twice is
/// harmless (the second call does nothing).
pub fn init(
    format: LogFormat,
    level: &str,
    tracing: Option<&crate::config::TracingConfig>,
) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: not in a file, a pipe or a
    // journal, and not with NO_COLOR set (no-color.org).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let tracer = tracing.map(crate::traces::start).transpose()?;
    let _ = tracing::subscriber::set_global_default(subscriber_with(
        format,
        filter,
        std::io::stderr,
        ansi,
        tracer,
    ));
    if let Some(tracing) = tracing {
        tracing::info!(
            endpoint = %tracing.endpoint,
            sample_ratio = tracing.sample_ratio,
            service_name = %tracing.service_name,
            "traces on: OTLP over gRPC"
        );
    }
    Ok(())
}

/// The subscriber [`init`] installs, writing to `writer`: JSON lines with
/// the event's fields at the top level (for log pipelines), or pretty text,
/// with ANSI colours when `ansi`.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    subscriber_with(format, filter, writer, ansi, None)
}

/// [`subscriber`], plus the OpenTelemetry layer when `tracer` is set. The
/// log layer never sees the spans made for traces ([`crate::traces::TARGET`]).
fn subscriber_with<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let logged = filter.and(tracing_subscriber::filter::filter_fn(|meta| {
        meta.target() != crate::traces::TARGET
    }));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer)
        .with_span_events(FmtSpan::NONE);
    let registry = tracing_subscriber::registry();
    match format {
        LogFormat::Json => {
            let json = fmt
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false);
            let inner = tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false);
            let json = json.event_format(WithTraceId(inner));
            let registry = registry.with(json.with_filter(logged));
            match tracer {
                Some(tracer) => Box::new(registry.with(crate::traces::layer(tracer))),
                None => Box::new(registry),
            }
        }
        LogFormat::Pretty => {
            let registry = registry.with(fmt.with_filter(logged));
            match tracer {
                Some(tracer) => Box::new(registry.with(crate::traces::layer(tracer))),
                None => Box::new(registry),
            }
        }
    }
}

/// A JSON event format that adds `trace_id` when a traced span is current
/// (the formatter it wraps knows nothing of OpenTelemetry).
struct WithTraceId<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(trace_id) = crate::traces::current_trace_id() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_suffix("}\n") {
            Some(object) => writeln!(writer, "{object},\"trace_id\":\"{trace_id}\"}}"),
            None => writer.write_str(&line),
        }
    }
}

/// The request id to log: the header's value when it is short visible
/// ASCII (nginx's `$request_id` is 32 hex digits, Envoy's a UUID), else
/// none, so a client cannot write arbitrary text into the log.
pub fn request_id(value: Option<&[u8]>) -> Option<&str> {
    let value = value?;
    if value.is_empty()
        || value.len() > MAX_REQUEST_ID
        || !value.iter().all(|b| b.is_ascii_graphic())
    {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// Why a refusal happened, as logged.
pub fn refusal_reason(reason: Refusal) -> &'static str {
    match reason {
        Refusal::NoRoute => "no_route",
        Refusal::NotAllowed => "not_allowed",
        Refusal::BadTarget => "bad_target",
        Refusal::MethodNotAllowed => "method_not_allowed",
    }
}

/// One line for one decision: refusals at info, the rest at debug (cheap
/// when debug is off: the level check comes first).
pub fn log_decision(
    policy: &Policy,
    asker: Asker<'_>,
    target: Option<&Target<'_>>,
    decision: &Decision,
) {
    let host = target.map(|t| t.host.as_ref());
    let path = target.map(|t| t.path.as_ref());
    let front_end = asker.front_end.as_str();
    let request_id = asker.request_id;
    match decision {
        Decision::Deny {
            route,
            session,
            reason,
            unmet,
        } => {
            let user = session.as_deref().map(|s| s.identity.display_name());
            tracing::info!(
                front_end,
                route = route.map(|r| policy.route_name(r)),
                route_label = route.map(|r| policy.route_label(r)),
                unmet = unmet.as_deref(),
                user,
                reason = refusal_reason(*reason),
                host,
                path,
                request_id,
                "denied"
            );
        }
        Decision::Allow { route, session, .. } => {
            tracing::debug!(
                front_end,
                route = policy.route_name(*route),
                user = session.as_deref().map(|s| s.identity.display_name()),
                host,
                path,
                request_id,
                "allowed"
            );
        }
        Decision::SignIn { route, .. } => {
            tracing::debug!(
                front_end,
                route = policy.route_name(*route),
                host,
                path,
                request_id,
                "sign-in required"
            );
        }
        Decision::Unavailable => {
            tracing::warn!(
                front_end,
                host,
                path,
                request_id,
                "refused: session store unavailable"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx's and Envoy's request ids pass; empty, overlong or
    /// non-printable values (log injection) are dropped.
    #[test]
    fn request_ids_are_bounded() {
        let nginx = b"f3a0c1b2d4e5f60718293a4b5c6d7e8f";
        assert_eq!(
            request_id(Some(nginx)),
            Some("f3a0c1b2d4e5f60718293a4b5c6d7e8f")
        );
        assert_eq!(
            request_id(Some(b"2b1a3c4d-0000-4000-8000-1234567890ab")),
            Some("2b1a3c4d-0000-4000-8000-1234567890ab")
        );
        assert_eq!(request_id(None), None);
        assert_eq!(request_id(Some(b"")), None);
        assert_eq!(request_id(Some(b"a b")), None);
        assert_eq!(request_id(Some("é".as_bytes())), None);
        assert_eq!(request_id(Some(&[b'a'; MAX_REQUEST_ID + 1])), None);
    }
}
