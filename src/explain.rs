//! `authgate explain`: what the configured routes make of one request, rule
//! by rule, without serving it.

use std::net::IpAddr;

use clap::Args;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::policy::Policy;
use crate::policy::check::{Case, Expect, test_user};

/// The request to explain.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The request's URL, as the browser asked for it.
    #[arg(long)]
    pub url: String,
    /// The request's method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The signed-in user's (verified) email; without it and without
    /// --groups/--claim, nobody is signed in.
    #[arg(long)]
    pub email: Option<String>,
    /// The user's groups, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Another ID-token claim, `name=value` (a JSON value, else a string);
    /// repeatable.
    #[arg(long = "claim", value_parser = parse_claim)]
    pub claims: Vec<(String, Value)>,
    /// The client's address as the proxy reports it.
    #[arg(long)]
    pub source_ip: Option<IpAddr>,
}

fn parse_claim(text: &str) -> Result<(String, Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not name=value"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

/// Prints the explanation; `Ok(true)` when the request would be allowed,
/// `Err` when the URL cannot be asked about.
pub fn run(config: &Config, args: ExplainArgs, now: i64) -> Result<bool, String> {
    let signed_in = args.email.is_some() || !args.groups.is_empty() || !args.claims.is_empty();
    let claims: Map<String, Value> = args.claims.into_iter().collect();
    let case = Case {
        url: args.url,
        method: args.method,
        source_ip: args.source_ip,
        user: signed_in.then(|| test_user(args.email.as_deref(), args.groups, claims)),
    };
    let policy = Policy::compile(config.routes.clone());
    let report = case.ask(&policy, now)?;
    println!("{}", report.text);
    Ok(report.outcome == Expect::Allow)
}
