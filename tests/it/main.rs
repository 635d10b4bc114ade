//! Integration tests: one test binary (each `tests/*.rs` would be linked
//! separately), one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod advisories;
mod architecture;
mod assertion;
mod attacks;
mod bad_input;
mod bearer;
mod bypass;
mod caddy_flow;
mod canonical;
mod chart_flow;
mod cli;
mod decider;
mod dex_bearer;
mod dex_browser;
mod dex_freeipa;
mod dex_refresh;
mod docs_links;
mod envoy_examples;
mod failover;
mod faults;
mod fixture;
mod forward_auth;
mod grpc_authz;
mod grpcurl;
mod handoff;
mod haproxy_flow;
mod login_flow;
mod logs;
mod metrics;
mod nginx_api;
mod nginx_flow;
mod observability;
mod packaging;
mod pages;
mod ppl_flow;
mod print;
mod reload;
mod schema;
mod serving;
mod sessions;
mod stack_selftest;
mod store_disk;
mod support;
