//! authgate: an external-auth decision service.
//!
//! nginx (`auth_request`), Envoy (`ext_authz`), Traefik, Caddy and HAProxy
//! (SPOE) ask it one
//! question per request — may this request through, and as whom? — and it
//! answers from the session cookie and the compiled policy, without network
//! I/O in the common case. It also hosts the OpenID Connect login.
//!
//! # Layout
//! - [`config`]: YAML + environment → validated [`config::Config`].
//! - [`policy`]: routes parsed with the configuration ([`policy::route`]),
//!   indexed once, evaluated without allocation.
//! - [`redirect`]: the `rd` allow-list (open-redirect defence).
//! - [`handoff`]: one-time tokens carrying a session to hosts outside the
//!   cookie domain.
//! - [`session`]: the sealed cookie, the session store and its cache.
//! - [`oidc`]: discovery, login, callback, ID-token verification.
//! - [`refresh`]: re-validating due sessions with the provider, once each.
//! - [`backchannel`]: the provider's back-channel logout token, checked.
//! - [`bearer`]: `Authorization: Bearer` tokens from the provider, for API clients.
//! - [`claims`]: the claim checks ID tokens and Bearer tokens share.
//! - [`decision`]: the core every front end asks — request facts in, the
//!   verdict and its [`decision::Answer`] out; no protocol, metric or log.
//! - [`in_force`]: the policy in force, and each decision's count and log line.
//! - [`app`]: the assembled service state the front ends share.
//! - [`assertion`]: the signed `X-Auth-Request-Jwt` header and its JWKS.
//! - [`http`]: axum routes (nginx, forward-auth, login host).
//! - [`templates`]: the pages' templates, loaded with the configuration.
//! - [`grpc`]: Envoy `ext_authz` over gRPC (`Check`, health, reflection).
//! - [`spoe`]: HAProxy's SPOE agent (SPOP on `spoe_address`).
//! - [`devidp`]: the development OpenID provider behind `authgate demo`.
//! - [`demo`]: `authgate demo`, wiring the development provider.
//! - [`server`]: binds and runs the listeners, drains them together.
//! - [`listener`]: the accept loop of every listener: connection caps,
//!   timeouts, drain.
//! - [`reload`]: live reload of the routes on SIGHUP and file change.
//! - [`admin`]: `authgate sessions list|revoke` and the embedded store's
//!   admin socket.
//! - [`print`]: `authgate print nginx|envoy|haproxy`, proxy config from the routes.
//! - [`metrics`]: the Prometheus series behind `/metrics`.
//! - [`telemetry`]: log setup and the log lines of decisions.
//! - [`traces`]: OpenTelemetry traces over OTLP, continuing the proxy's trace.
//! - [`identity`], [`clock`], [`fault`]: shared small pieces.

pub mod admin;
pub mod app;
pub mod assertion;
pub mod backchannel;
pub mod bearer;
pub mod claims;
pub mod clock;
pub mod config;
pub mod decision;
pub mod demo;
pub mod devidp;
pub mod explain;
pub mod fault;
pub mod grpc;
pub mod handoff;
pub mod http;
pub mod identity;
pub mod in_force;
pub mod listener;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod print;
pub mod redirect;
pub mod refresh;
pub mod reload;
pub mod server;
pub mod session;
pub mod spoe;
pub mod telemetry;
pub mod templates;
pub mod traces;
