//! Command line. Exit codes: 0 success, 1 failure (the message names the field or file),
//! 2 bad usage, 3 denied (`gateway policy check`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands;

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "Portcullis security gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: TLS listeners for the API and Flight, plain health listener.
    Run(ConfigArgs),
    /// Validate the config and every file it names without binding a port.
    Check(commands::check::CheckArgs),
    /// Development PKI: a CA and certificates signed by it.
    #[command(subcommand)]
    Tls(commands::tls::TlsCommand),
    /// API keys: generate one (the config keeps only its hash).
    #[command(subcommand)]
    Apikey(commands::apikey::ApiKeyCommand),
    /// Cedar policies: validate, run their tests, decide one request.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// Development stack in one command: PKI, stamp keys, the engine as a child, the gateway.
    Up(commands::up::UpArgs),
    /// Identity stamp keys: a new Ed25519 pair for the gateway and the engine.
    #[command(subcommand)]
    Stamp(commands::stamp::StampCommand),
    /// Exec probe for shell-less images: GET a loopback health URL, exit 0 on 2xx.
    Health(commands::health::HealthArgs),
}

/// `-c FILE` plus the TLS flags that override the file.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[arg(short, long)]
    pub config: PathBuf,
    /// Server certificate chain file (PEM), overriding tls.certificate(_file).
    #[arg(long)]
    pub tls_certificate_file: Option<PathBuf>,
    /// Server private key file (PEM), overriding tls.key(_file).
    #[arg(long)]
    pub tls_key_file: Option<PathBuf>,
    /// Server certificate chain as PEM text (or ${env:..} / ${file:..}).
    #[arg(long)]
    pub tls_certificate: Option<String>,
    /// Server private key as PEM text (or ${env:..} / ${file:..}).
    #[arg(long)]
    pub tls_key: Option<String>,
}

impl ConfigArgs {
    /// The config file with the flags applied on top.
    pub fn load(&self) -> Result<crate::config::Config, String> {
        let mut config = crate::config::Config::from_file(&self.config).map_err(|e| e.to_string())?;
        if self.tls_certificate_file.is_some() || self.tls_certificate.is_some() {
            config.tls.certificate_file = self.tls_certificate_file.clone();
            config.tls.certificate = self.tls_certificate.clone();
        }
        if self.tls_key_file.is_some() || self.tls_key.is_some() {
            config.tls.key_file = self.tls_key_file.clone();
            config.tls.key = self.tls_key.clone();
        }
        Ok(config)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Tls(command) => commands::tls::run(command),
        Command::Up(args) => commands::up::run(args),
        Command::Apikey(command) => commands::apikey::run(command),
        Command::Health(args) => commands::health::run(args),
        Command::Stamp(command) => commands::stamp::run(command),
        Command::Policy(command) => match commands::policy::run(command) {
            Ok(code) => return code,
            Err(message) => Err(message),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gateway: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A multi-threaded runtime for the serving commands.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| format!("async runtime: {e}"))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: a signal right after startup (a pod stopped as it
/// comes up, a script) then shuts down cleanly instead of killing the process. Call it
/// inside the runtime, before serving.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate()).ok().zip(signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        if let Some((mut term, mut interrupt)) = handlers {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
