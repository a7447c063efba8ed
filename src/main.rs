//! The `sluice` binary: parse arguments, set up logging, run a command, map
//! the outcome to an exit code (0 ok, 1 failure, 2 bad usage or config).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use sluice::cli::{self, Cli, Command, ServeArgs};
use sluice::config::Config;
use sluice::server::{self, Listeners};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // The daemon itself makes no TLS connections: it ignores --ca-file.
    let client =
        !matches!(cli.command, Command::Serve(_) | Command::CheckConfig { .. } | Command::PackageAssets { .. });
    if let Some(ca_file) = cli.ca_file.as_deref().filter(|_| client)
        && let Err(e) = cli::http::trust_ca_file(ca_file)
    {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig { file, json } => check_config(&file, json),
        Command::Apikeys(cmd) => cli::apikeys::run(&cmd),
        Command::Export(args) => cli::export::run(&args),
        Command::Tail(args) => cli::tail::run(&args),
        Command::Bench(cmd) => cli::bench::run(&cmd, cli.ca_file.as_deref()),
        Command::Setup(args) => cli::login::setup(&args),
        Command::Login(args) => cli::login::login(&args),
        Command::Logout(args) => cli::login::logout(&args),
        Command::Status(args) => cli::status::run(&args),
        Command::Top(args) => cli::top::run(&args),
        Command::Users(cmd) => cli::users::run(&cmd),
        Command::Backup(args) => cli::backup::backup(&args),
        Command::Restore(args) => cli::backup::restore(&args),
        Command::PackageAssets { dir } => cli::manual::write_assets(&dir).map(|files| {
            for f in files {
                println!("{}", dir.join(f).display());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<sluice::config::ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default `info` level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

fn check_config(file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let config = Config::load(file)?;
    sluice::server::load_tls(&config)?;
    let listeners = config.listeners();
    if json {
        let listeners: Vec<_> =
            listeners.iter().map(|(name, address)| serde_json::json!({"name": name, "address": address})).collect();
        let line = serde_json::json!({"file": file, "ok": true, "data_dir": config.data_dir, "listeners": listeners});
        println!("{line}");
        return Ok(());
    }
    let listeners: Vec<String> = listeners.iter().map(|(name, address)| format!("{name} on {address}")).collect();
    println!(
        "{}: ok (data_dir {}; listeners: {})",
        file.display(),
        config.data_dir.display(),
        if listeners.is_empty() { "none".into() } else { listeners.join(", ") }
    );
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    config.data_dir = server::data_dir_for(args.data_dir, &config);
    // Before the runtime opens descriptors of its own.
    let mut passed = sluice::net::activation::Passed::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-io")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listeners = Listeners::bind(&config, &mut passed).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        server::run(config, listeners, shutdown).await?;
        Ok(())
    })
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL only after draining clients");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}
