//! Prometheus metrics, served as text at `/metrics`.
//!
//! One [`Metrics`] per process owns its registry (no global state), so tests
//! can run several servers side by side. The decision hot path records
//! without allocating or hashing: [`DecisionMetrics`] keeps a table indexed
//! by route, and a route's (outcome, front end) counters are resolved into
//! it once, at its first decision. Routes nobody asks about cost no series
//! and no memory (a policy of 10,000 routes would otherwise export 120,000
//! zeros). Everything else (logins, refreshes,
//! errors) is rare enough to go through the label families directly, with
//! labels from closed enums only: a route id is the one label that comes
//! from the configuration, never a URL or a user.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::policy::{Policy, RouteId};

/// The `Content-Type` of [`Metrics::render`]'s output (OpenMetrics text,
/// which Prometheus negotiates and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the decision latency buckets, in seconds. A decision
/// from the session cache takes microseconds; one that refreshes a session
/// with the provider or reads Redis takes milliseconds, so the buckets span
/// 5 µs to 1 s.
const LATENCY_BUCKETS: [f64; 17] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Defines a closed label enum whose values are the given snake_case names.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value (also used in log lines).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

label_enum! {
    /// Which protocol asked for the decision.
    FrontEnd {
        /// `GET /oauth2/auth` (nginx `auth_request`, ingress-nginx).
        Nginx => "nginx",
        /// `/forward-auth` (Envoy HTTP, Traefik, Caddy).
        ForwardAuth => "forward_auth",
        /// Envoy `ext_authz` over gRPC.
        Grpc => "grpc",
        /// HAProxy's SPOE agent protocol on `spoe_address`.
        Haproxy => "haproxy",
    }
}

label_enum! {
    /// What the decision was.
    Outcome {
        Allow => "allow",
        /// No session: 401 / redirect to sign in.
        SignIn => "sign_in",
        /// 403.
        Deny => "deny",
        /// The session store failed: 503, fail closed.
        Unavailable => "unavailable",
    }
}

label_enum! {
    /// Why a login did not complete.
    LoginFailure {
        /// The callback carried no login-state cookie (expired, another
        /// browser, or login CSRF).
        MissingState => "missing_state",
        /// The login-state cookie did not open or its state did not match.
        BadState => "bad_state",
        /// The attempt took longer than its time limit.
        Expired => "expired",
        /// The provider answered `error=…` (the user cancelled, access denied).
        ProviderDenied => "provider_denied",
        /// The provider refused the code exchange.
        ProviderRejected => "provider_rejected",
        /// The ID token failed verification.
        InvalidToken => "invalid_token",
        /// The provider could not be reached.
        ProviderUnavailable => "provider_unavailable",
        /// The session could not be stored.
        StoreUnavailable => "store_unavailable",
        /// The request was malformed (no code, a refused `rd`).
        BadRequest => "bad_request",
        /// A fault of ours.
        Internal => "internal",
    }
}

label_enum! {
    /// How a session refresh ended.
    RefreshOutcome {
        /// The provider confirmed the identity; the session goes on.
        Refreshed => "refreshed",
        /// The provider refused the refresh token: the session ended.
        Refused => "refused",
        /// The provider answered for another subject: the session ended.
        SubjectChanged => "subject_changed",
        /// The provider was unreachable; the session is kept and retried.
        Deferred => "deferred",
        /// The provider was unreachable past the grace period: ended.
        Expired => "expired",
        /// The session store failed during the refresh.
        StoreError => "store_error",
    }
}

label_enum! {
    /// What was being done when the provider failed.
    ProviderOperation {
        Discovery => "discovery",
        Login => "login",
        Refresh => "refresh",
    }
}

label_enum! {
    /// What was being done when the session store failed.
    StoreOperation {
        Decision => "decision",
        Login => "login",
        SignOut => "sign_out",
        Refresh => "refresh",
        Readiness => "readiness",
    }
}

label_enum! {
    /// A configuration reload's result.
    ReloadResult {
        Success => "success",
        Failure => "failure",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    route: String,
    outcome: Outcome,
    front_end: FrontEnd,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrontEndLabels {
    front_end: FrontEnd,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    event: LoginEvent,
    reason: Option<LoginFailure>,
}

label_enum! {
    /// A step of a login.
    LoginEvent {
        Started => "started",
        Completed => "completed",
        Failed => "failed",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    outcome: RefreshOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    operation: ProviderOperation,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: StoreOperation,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: ReloadResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily = Family<FrontEndLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every series authgate exports, under the prefix `authgate_`.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    decision_seconds: HistogramFamily,
    logins: Family<LoginLabels, Counter>,
    refreshes: Family<RefreshLabels, Counter>,
    provider_errors: Family<ProviderLabels, Counter>,
    store_errors: Family<StoreLabels, Counter>,
    config_reloads: Family<ReloadLabels, Counter>,
    config_last_reload_success: Gauge,
    ready: Gauge,
    logins_without_groups: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every series registered. The login, refresh and
    /// reload series start at zero for every label value, so a dashboard's
    /// `rate()` has a baseline before the first event.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("authgate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions by route id (empty: no route), outcome and front end",
            decisions.clone(),
        );
        let decision_seconds: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "decision_duration_seconds",
            "Time to decide one request, by front end",
            decision_seconds.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Logins started, completed, and failed by reason",
            logins.clone(),
        );
        let refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "session_refreshes",
            "Session refreshes with the provider, by outcome",
            refreshes.clone(),
        );
        let provider_errors = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "provider_errors",
            "Identity provider unreachable or failing, by operation",
            provider_errors.clone(),
        );
        let store_errors = Family::<StoreLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Session store failures, by operation",
            store_errors.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads, by result",
            config_reloads.clone(),
        );
        let logins_without_groups = Counter::default();
        registry.register(
            "logins_without_groups",
            "Logins whose ID token had no groups claim although a route asks for groups",
            logins_without_groups.clone(),
        );
        let config_last_reload_success = Gauge::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (Unix time)",
            config_last_reload_success.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while this replica is ready (what /readyz answers), 0 before and while draining",
            ready.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );

        for &event in LoginEvent::ALL {
            if event == LoginEvent::Failed {
                for &reason in LoginFailure::ALL {
                    let _ = logins.get_or_create(&LoginLabels {
                        event,
                        reason: Some(reason),
                    });
                }
            } else {
                let _ = logins.get_or_create(&LoginLabels {
                    event,
                    reason: None,
                });
            }
        }
        for &outcome in RefreshOutcome::ALL {
            let _ = refreshes.get_or_create(&RefreshLabels { outcome });
        }
        for &operation in ProviderOperation::ALL {
            let _ = provider_errors.get_or_create(&ProviderLabels { operation });
        }
        for &operation in StoreOperation::ALL {
            let _ = store_errors.get_or_create(&StoreLabels { operation });
        }
        for &result in ReloadResult::ALL {
            let _ = config_reloads.get_or_create(&ReloadLabels { result });
        }
        let metrics = Metrics {
            registry,
            decisions,
            decision_seconds,
            logins,
            refreshes,
            provider_errors,
            store_errors,
            config_reloads,
            config_last_reload_success,
            ready,
            logins_without_groups,
        };
        metrics.set_last_reload_now();
        metrics
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn login_started(&self) {
        self.logins
            .get_or_create(&LoginLabels {
                event: LoginEvent::Started,
                reason: None,
            })
            .inc();
    }

    pub fn login_completed(&self) {
        self.logins
            .get_or_create(&LoginLabels {
                event: LoginEvent::Completed,
                reason: None,
            })
            .inc();
    }

    /// A login whose ID token had no `groups` claim while routes ask for
    /// groups: those routes will refuse the user.
    pub fn login_without_groups(&self) {
        self.logins_without_groups.inc();
    }

    pub fn login_failed(&self, reason: LoginFailure) {
        self.logins
            .get_or_create(&LoginLabels {
                event: LoginEvent::Failed,
                reason: Some(reason),
            })
            .inc();
    }

    pub fn refreshed(&self, outcome: RefreshOutcome) {
        self.refreshes
            .get_or_create(&RefreshLabels { outcome })
            .inc();
    }

    pub fn provider_error(&self, operation: ProviderOperation) {
        self.provider_errors
            .get_or_create(&ProviderLabels { operation })
            .inc();
    }

    pub fn store_error(&self, operation: StoreOperation) {
        self.store_errors
            .get_or_create(&StoreLabels { operation })
            .inc();
    }

    /// Records the readiness verdict (`authgate_ready`): the alert on no
    /// ready replica reads it, so it follows `/readyz` and the drain.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Counts a configuration reload; a successful one also sets
    /// `config_last_reload_success_timestamp_seconds` to now. For the reload
    /// machinery to call after each attempt.
    pub fn config_reloaded(&self, ok: bool) {
        let result = if ok {
            self.set_last_reload_now();
            ReloadResult::Success
        } else {
            ReloadResult::Failure
        };
        self.config_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    fn set_last_reload_now(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.config_last_reload_success.set(now);
    }
}

/// The decision counters of one compiled policy: per route (plus one row
/// for "no route") a fixed array over outcome × front end, resolved at the
/// route's first decision. Recording is then an index and an atomic add.
/// Built again for each policy (a reload); series of the same route id
/// continue counting.
#[derive(Clone, Debug)]
pub struct DecisionMetrics {
    decisions: Family<DecisionLabels, Counter>,
    /// `names[route]`: the route's label; the last is "" (no route).
    names: Arc<[Box<str>]>,
    /// `rows[route]`, parallel to `names`.
    rows: Arc<[OnceLock<Row>]>,
    latency: [Histogram; FRONT_ENDS],
}

const FRONT_ENDS: usize = FrontEnd::ALL.len();
const OUTCOMES: usize = Outcome::ALL.len();
type Row = [Counter; FRONT_ENDS * OUTCOMES];

impl DecisionMetrics {
    /// The table for `policy`'s routes, recording into `metrics`.
    pub fn new(metrics: &Metrics, policy: &Policy) -> DecisionMetrics {
        let names: Arc<[Box<str>]> = policy
            .route_names()
            .map(Into::into)
            .chain(std::iter::once("".into()))
            .collect();
        let latency = std::array::from_fn(|i| {
            metrics
                .decision_seconds
                .get_or_create_owned(&FrontEndLabels {
                    front_end: FrontEnd::ALL[i],
                })
        });
        DecisionMetrics {
            decisions: metrics.decisions.clone(),
            rows: names.iter().map(|_| OnceLock::new()).collect(),
            names,
            latency,
        }
    }

    /// Every series of the route named `route`, created (at 0) if new.
    fn row(&self, route: &str) -> Row {
        std::array::from_fn(|i| {
            self.decisions.get_or_create_owned(&DecisionLabels {
                route: route.to_owned(),
                outcome: Outcome::ALL[i % OUTCOMES],
                front_end: FrontEnd::ALL[i / OUTCOMES],
            })
        })
    }

    /// Counts one decision and its latency. No allocation, no lock but
    /// the histogram's (one per front end), except at a route's first
    /// decision.
    pub fn record(
        &self,
        front_end: FrontEnd,
        route: Option<RouteId>,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        let last = self.rows.len() - 1;
        let index = route.map_or(last, |r| (r.0 as usize).min(last));
        if let (Some(row), Some(name)) = (self.rows.get(index), self.names.get(index)) {
            let row = row.get_or_init(|| self.row(name));
            row[front_end as usize * OUTCOMES + outcome as usize].inc();
        }
        self.latency[front_end as usize].observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::{RouteConfig, Routes};

    fn policy() -> Policy {
        let routes = vec![
            RouteConfig {
                index: 0,
                id: Some("admin".into()),
                ..RouteConfig::default()
            },
            RouteConfig {
                index: 1,
                ..RouteConfig::default()
            },
        ];
        Policy::compile(Routes::parse(routes).expect("routes"))
    }

    /// The value of the series whose line starts with `prefix` (labels
    /// included), or None when it is not exported.
    fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// A decision lands on its route id's series (configured id or
    /// `route-<index>`), outcome and front end; one without a route on
    /// `route=""`; the histogram counts every decision of its front end.
    #[test]
    fn decisions_are_counted_by_route_outcome_and_front_end() {
        let metrics = Metrics::new();
        let table = DecisionMetrics::new(&metrics, &policy());
        let admin = Some(RouteId(0));
        table.record(
            FrontEnd::Nginx,
            admin,
            Outcome::Allow,
            Duration::from_micros(3),
        );
        table.record(
            FrontEnd::Nginx,
            admin,
            Outcome::Allow,
            Duration::from_micros(30),
        );
        table.record(
            FrontEnd::Grpc,
            Some(RouteId(1)),
            Outcome::SignIn,
            Duration::from_micros(3),
        );
        table.record(
            FrontEnd::ForwardAuth,
            None,
            Outcome::Deny,
            Duration::from_micros(3),
        );
        let text = metrics.render();
        let get = |labels: &str| value(&text, &format!("authgate_decisions_total{{{labels}}}"));
        assert_eq!(
            get(r#"route="admin",outcome="allow",front_end="nginx""#),
            Some(2.0)
        );
        assert_eq!(
            get(r#"route="admin",outcome="deny",front_end="nginx""#),
            Some(0.0)
        );
        assert_eq!(
            get(r#"route="route-1",outcome="sign_in",front_end="grpc""#),
            Some(1.0)
        );
        assert_eq!(
            get(r#"route="",outcome="deny",front_end="forward_auth""#),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"authgate_decision_duration_seconds_count{front_end="nginx"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                r#"authgate_decision_duration_seconds_bucket{le="5e-6",front_end="nginx"}"#
            )
            .or_else(|| value(
                &text,
                r#"authgate_decision_duration_seconds_bucket{le="0.000005",front_end="nginx"}"#
            )),
            Some(1.0),
            "{text}"
        );
    }

    /// A new table for a reloaded policy continues the series of a route id
    /// that is still there.
    #[test]
    fn a_reloaded_policy_keeps_counting_the_same_series() {
        let metrics = Metrics::new();
        for _ in 0..2 {
            DecisionMetrics::new(&metrics, &policy()).record(
                FrontEnd::Nginx,
                Some(RouteId(0)),
                Outcome::Allow,
                Duration::ZERO,
            );
        }
        let text = metrics.render();
        assert_eq!(
            value(
                &text,
                r#"authgate_decisions_total{route="admin",outcome="allow",front_end="nginx"}"#
            ),
            Some(2.0)
        );
    }

    /// Logins, refreshes, errors and reloads are counted under closed
    /// label values, every one exported from the start; build info names
    /// the version.
    #[test]
    fn events_are_counted_with_bounded_labels() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert_eq!(
            value(
                &text,
                r#"authgate_logins_total{event="failed",reason="bad_state"}"#
            ),
            Some(0.0)
        );
        metrics.login_started();
        metrics.login_failed(LoginFailure::BadState);
        metrics.login_completed();
        metrics.refreshed(RefreshOutcome::Refused);
        metrics.provider_error(ProviderOperation::Discovery);
        metrics.store_error(StoreOperation::Decision);
        metrics.config_reloaded(false);
        metrics.config_reloaded(true);
        let text = metrics.render();
        for (series, expected) in [
            (r#"authgate_logins_total{event="started",reason=""}"#, 1.0),
            (r#"authgate_logins_total{event="completed",reason=""}"#, 1.0),
            (
                r#"authgate_logins_total{event="failed",reason="bad_state"}"#,
                1.0,
            ),
            (
                r#"authgate_logins_total{event="failed",reason="expired"}"#,
                0.0,
            ),
            (
                r#"authgate_session_refreshes_total{outcome="refused"}"#,
                1.0,
            ),
            (
                r#"authgate_provider_errors_total{operation="discovery"}"#,
                1.0,
            ),
            (r#"authgate_store_errors_total{operation="decision"}"#, 1.0),
            (r#"authgate_config_reloads_total{result="success"}"#, 1.0),
            (r#"authgate_config_reloads_total{result="failure"}"#, 1.0),
        ] {
            assert_eq!(value(&text, series), Some(expected), "{series}\n{text}");
        }
        assert!(
            value(
                &text,
                "authgate_config_last_reload_success_timestamp_seconds "
            )
            .is_some_and(|t| t > 1.0e9)
        );
        assert!(text.contains(&format!(
            "authgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
