//! `loadgen http ...` and `loadgen flight ...`.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use identity::{AuthMethod, Principal, PrincipalKind, StampSigner};

use crate::{cpu, flight, http, report};

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Bounded loopback load for the Portcullis engine and gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// POST SQL to an HTTP `/v1/sql` endpoint (keep-alive, one connection per worker).
    Http(Common),
    /// Run SQL over Flight SQL (GetFlightInfo + DoGet per request).
    Flight(Common),
}

#[derive(Debug, Args)]
pub struct Common {
    /// Base URL, e.g. http://127.0.0.1:8091 (HTTP) or http://127.0.0.1:50052 (Flight).
    #[arg(long)]
    pub target: String,
    #[arg(long, default_value = "SELECT 1")]
    pub sql: String,
    /// Requests to send (after the warm-up).
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub requests: usize,
    /// Concurrent workers.
    #[arg(short = 'c', long, default_value_t = 4)]
    pub concurrency: usize,
    /// Requests sent before measuring.
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Gateway stamp private key: requests carry a stamp minted with it (engine direct).
    #[arg(long)]
    pub stamp_key: Option<PathBuf>,
    #[arg(long, default_value = "portcullis-engine")]
    pub audience: String,
    #[arg(long, default_value = "alice")]
    pub principal: String,
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// HTTP Accept header.
    #[arg(long, default_value = "application/json")]
    pub accept: String,
    /// Report this process's CPU time per request (the server under test).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

impl Common {
    pub fn stamp(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.stamp_key else { return Ok(None) };
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let signer = StampSigner::from_pem(&pem, self.audience.clone()).map_err(|e| e.to_string())?;
        let mut principal = Principal::new(PrincipalKind::User, &self.principal, &self.principal, AuthMethod::Oidc);
        principal.groups = self.groups.clone();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
        // The longest allowed stamp; runs longer than a minute would need re-minting.
        signer.sign(&principal, now.as_secs(), 60).map(Some).map_err(|e| e.to_string())
    }

    fn check_loopback(&self) -> Result<(), String> {
        let without_scheme = self.target.split("://").nth(1).unwrap_or(&self.target);
        let authority = without_scheme.split('/').next().unwrap_or("");
        let addrs = authority.to_socket_addrs().map_err(|e| format!("--target {authority}: {e}"))?;
        for addr in addrs {
            if !addr.ip().is_loopback() {
                return Err(format!("--target {addr} is not a loopback address; loadgen only loads this machine"));
            }
        }
        Ok(())
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    let (label, common) = match &command {
        Command::Http(c) => ("http", c),
        Command::Flight(c) => ("flight", c),
    };
    common.check_loopback()?;
    let stamp = common.stamp()?;
    if common.warmup > 0 {
        drive(&command, stamp.clone(), common.warmup).await?;
    }
    let cpu_before = common.server_pid.map(cpu::process_cpu_secs).transpose()?;
    let start = Instant::now();
    let sample = drive(&command, stamp, common.requests).await?;
    let elapsed = start.elapsed();
    let cpu = match (common.server_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu::process_cpu_secs(pid)? - before),
        _ => None,
    };
    let title = format!(
        "{label} {} | {} requests, concurrency {} | {}",
        common.target, common.requests, common.concurrency, common.sql
    );
    report::print(&title, sample, elapsed, cpu);
    Ok(())
}

async fn drive(command: &Command, stamp: Option<String>, requests: usize) -> Result<report::Sample, String> {
    match command {
        Command::Http(c) => http::run(c, stamp, requests).await,
        Command::Flight(c) => flight::run(c, stamp, requests).await,
    }
}
