//! Command line: parse, run the command, exit with its [`Exit`] code (0 success, 1 failure
//! naming the field or file, 2 bad usage, 3 denied or a decision that flips).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::commands::exit::Exit;

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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version are printed to stdout and are not a failure.
            let _ = error.print();
            return if error.use_stderr() { Exit::Usage } else { Exit::Success }.into();
        }
    };
    process::init_logging();
    let done = |result: Result<(), String>| result.map(|()| Exit::Success);
    let result = match cli.command {
        Command::Run(args) => done(commands::run::run(args)),
        Command::Check(args) => done(commands::check::run(args)),
        Command::Tls(command) => done(commands::tls::run(command)),
        Command::Up(args) => done(commands::up::run(args)),
        Command::Apikey(command) => done(commands::apikey::run(command)),
        Command::Health(args) => done(commands::health::run(args)),
        Command::Stamp(command) => done(commands::stamp::run(command)),
        Command::SessionKey(command) => done(commands::session_key::run(command)),
        Command::Policy(command) => commands::policy::run(command),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(message) => {
            eprintln!("gateway: {message}");
            Exit::Failure.into()
        }
    }
}
