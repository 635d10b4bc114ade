//! Integration tests: one test binary (each `tests/*.rs` would be linked
//! separately), one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod stack_selftest;

mod assertion;
mod bad_input;
mod bearer;
mod caddy_flow;
mod cli;
mod dex_browser;
mod dex_refresh;
mod envoy_examples;
mod fixture;
mod forward_auth;
mod grpc_authz;
mod grpcurl;
mod handoff;
mod login_flow;
mod logs;
mod metrics;
mod nginx_flow;
mod packaging;
mod pages;
mod print;
mod reload;
mod sessions;
