//! Command line. Exit codes: 0 success, 1 failure (the message names the field or file),
//! 2 bad usage, 3 denied (`gateway policy check`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "Portcullis security gateway")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve: TLS listeners for the API and Flight, plain health listener.
    Run(commands::ConfigArgs),
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
    /// Browser session keys: a new key that seals the sign-in cookie.
    #[command(subcommand)]
    SessionKey(commands::session_key::SessionKeyCommand),
    /// Exec probe for shell-less images: GET a loopback health URL, exit 0 on 2xx.
    Health(commands::health::HealthArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    process::init_logging();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Tls(command) => commands::tls::run(command),
        Command::Up(args) => commands::up::run(args),
        Command::Apikey(command) => commands::apikey::run(command),
        Command::Health(args) => commands::health::run(args),
        Command::Stamp(command) => commands::stamp::run(command),
        Command::SessionKey(command) => commands::session_key::run(command),
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
