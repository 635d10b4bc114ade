//! Integration tests: one test binary (each `tests/*.rs` would be linked
//! separately), one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod stack_selftest;

mod advisories;
mod attacks;
mod bad_input;
mod canonical;
mod cli;
mod dex_browser;
mod dex_refresh;
mod envoy_examples;
mod faults;
mod fixture;
mod forward_auth;
mod grpc_authz;
mod grpcurl;
mod login_flow;
mod nginx_flow;
mod sessions;
