//! The `authgate` binary: parse the command line, load the config, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use authgate::app::App;
use authgate::clock::SystemClock;
use authgate::config;
use authgate::reload::Reloader;
use authgate::server;
use authgate::telemetry;

/// Exit status for an invalid configuration (as linkerd does).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "authgate",
    version,
    about = "External-auth decision service for nginx and Envoy, with an OpenID Connect login"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (for `serve`, the default command).
    #[arg(
        long,
        short,
        global = true,
        env = "AUTHGATE_CONFIG",
        default_value = "authgate.yaml"
    )]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Validate the configuration; print every problem with file, line and column.
    CheckConfig,
    /// The whole flow on this machine: a development identity provider,
    /// in-memory sessions, loopback only. NOT FOR PRODUCTION.
    Demo(authgate::demo::DemoArgs),
    /// What the routes make of one request, rule by rule: exit 0 allowed,
    /// 1 refused (denied or sent to sign in), 2 bad invocation.
    Explain(authgate::explain::ExplainArgs),
    /// Print the nginx or Envoy configuration for the routes in the
    /// configuration file, to stdout.
    Print(authgate::print::PrintArgs),
    /// List or revoke sessions in the configured session store.
    Sessions(authgate::admin::SessionsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.config),
        Command::CheckConfig => check_config(&cli.config),
        Command::Demo(args) => run_async(authgate::demo::run(args)),
        Command::Print(args) => print(&cli.config, &args),
        Command::Explain(args) => explain(&cli.config, args),
        Command::Sessions(args) => match load(&cli.config) {
            Ok(loaded) => run_async(authgate::admin::run(loaded.config, args)),
            Err(code) => code,
        },
    }
}

fn explain(path: &std::path::Path, args: authgate::explain::ExplainArgs) -> ExitCode {
    let Ok(loaded) = load(path) else {
        return ExitCode::from(2);
    };
    let now = chrono::Utc::now().timestamp();
    match authgate::explain::run(&loaded.config, args, now) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

fn print(path: &std::path::Path, args: &authgate::print::PrintArgs) -> ExitCode {
    match load(path) {
        Ok(loaded) => {
            print!("{}", authgate::print::render(&loaded.config, args));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn load(path: &std::path::Path) -> Result<config::Loaded, ExitCode> {
    config::load_file(path, &|name| std::env::var(name).ok()).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "{}: ok ({} routes)",
                path.display(),
                loaded.config.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn serve(path: &std::path::Path) -> ExitCode {
    let loaded = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let path = path.to_owned();
    run_async(async move {
        // On the runtime: the trace exporter's channel lives there.
        telemetry::init(
            loaded.config.log_format,
            &loaded.config.log_level,
            loaded.config.tracing.as_ref(),
        )?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        let config = loaded.config;
        let address = config.address;
        let app = App::new(config, std::sync::Arc::new(SystemClock))
            .map_err(|e| format!("cannot start: {e}"))?;
        // Installed before binding, so a SIGHUP never finds the default
        // action (terminate) once the ports answer.
        let reloader = std::sync::Arc::new(Reloader::new(app.clone(), path.to_owned()));
        let reloading = reloader
            .spawn(std::future::pending())
            .map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?;
        let listeners = server::Listeners::bind(app.config())
            .await
            .map_err(|e| e.to_string())?;
        let _admin_socket = authgate::admin::listen(&app)
            .map_err(|e| format!("cannot open the session store's admin socket: {e}"))?;
        let login = app.login_base().to_owned();
        tracing::info!(
            %address,
            grpc_address = %app.config().grpc_address,
            metrics_address = app.config().metrics_address.map(tracing::field::display),
            spoe_address = app.config().spoe_address.map(tracing::field::display),
            "authgate listening"
        );
        tracing::info!(
            sign_in = %format!("{login}/oauth2/start"),
            redirect_uri = %format!("{login}/oauth2/callback"),
            "login host {login}: register the redirect_uri with the provider \
             (Dex: staticClients[].redirectURIs); users sign in at sign_in"
        );
        let served = server::run(app, listeners, server::shutdown_signal()).await;
        reloading.abort();
        // Send the spans still buffered (blocking: off the workers).
        let _ = tokio::task::spawn_blocking(authgate::traces::shutdown).await;
        served.map_err(|e| format!("server: {e}"))?;
        tracing::info!("shut down cleanly");
        Ok(())
    })
}

fn run_async(fut: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("authgate: {message}");
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}
