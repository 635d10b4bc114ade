//! The development OpenID provider alone, for the benchmark harness
//! (`bench/run.sh`): authgate and oauth2-proxy both sign in against it.
//!
//! ```text
//! cargo run --release --example devidp -- --port 5556 \
//!     --client authgate:secret1:http://127.0.0.1:4180/oauth2/callback \
//!     --client oauth2-proxy:secret2:http://127.0.0.1:4181/oauth2/callback
//! ```
//!
//! Issuer `http://127.0.0.1:<port>/dex`; users are the demo's (alice, bob,
//! carol; the password is the name). Loopback only. NOT FOR PRODUCTION.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use authgate::clock::{SharedClock, SystemClock};
use authgate::devidp::{DevClient, DevIdp, DevIdpConfig, DevUser};

#[derive(Parser)]
struct Args {
    /// Loopback port to listen on.
    #[arg(long, default_value_t = 5556)]
    port: u16,
    /// A client as `id:secret:redirect_uri` (repeatable).
    #[arg(long = "client", value_parser = parse_client, required = true)]
    clients: Vec<DevClient>,
}

fn parse_client(text: &str) -> Result<DevClient, String> {
    let mut parts = text.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(secret), Some(redirect)) if !id.is_empty() && !redirect.is_empty() => {
            Ok(DevClient {
                id: id.to_owned(),
                secret: secret.to_owned(),
                redirect_uris: vec![redirect.to_owned()],
            })
        }
        _ => Err("expected id:secret:redirect_uri".to_owned()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("devidp: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("devidp: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let clock: SharedClock = Arc::new(SystemClock);
    let idp = DevIdp::new(
        DevIdpConfig {
            issuer: format!("http://127.0.0.1:{}/dex", args.port),
            clients: args.clients,
            users: DevUser::demo_users("example.com"),
            id_token_ttl: Duration::from_secs(24 * 3600),
            banner: Some("authgate benchmark provider. NOT FOR PRODUCTION.".into()),
        },
        clock,
    )
    .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    eprintln!("devidp: issuer {}", idp.issuer());
    idp.serve(listener, authgate::server::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
