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
    /// Full TLS handshakes (no resumption), one new connection per request.
    Handshakes(Common),
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
    /// A dataset (`catalog.schema.table`) the stamp lets the statement touch, as the gateway
    /// scopes it; repeat for each (engine direct).
    #[arg(long = "scope")]
    pub scope: Vec<String>,
    /// HTTP Accept header.
    #[arg(long, default_value = "application/json")]
    pub accept: String,
    /// Report this process's CPU time per request (the server under test).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// CA bundle to trust for an https:// target.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
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
        let grant = identity::Grant { scope: &self.scope, ..identity::Grant::default() };
        signer.sign_with(&principal, grant, now.as_secs(), 60).map(Some).map_err(|e| e.to_string())
    }

    /// Whether the target is https://, and its `host:port`.
    pub fn authority(&self) -> Result<(bool, String), String> {
        let (scheme, rest) = self.target.split_once("://").ok_or("--target needs a scheme (http:// or https://)")?;
        let authority = rest.split('/').next().unwrap_or("").to_string();
        match scheme {
            "http" => Ok((false, authority)),
            "https" => Ok((true, authority)),
            other => Err(format!("--target scheme {other}: use http or https")),
        }
    }

    pub fn tls_config(&self, alpn: &[&[u8]], resumption: bool) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
        let ca = self.ca.as_deref().ok_or("--ca is required for an https:// target")?;
        let identity = self.cert.as_deref().zip(self.key.as_deref());
        crate::tls::client_config(ca, identity, alpn, resumption)
    }

    fn check_loopback(&self) -> Result<(), String> {
        let (_, authority) = self.authority()?;
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
        Command::Handshakes(c) => ("handshakes", c),
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
        Command::Handshakes(c) => handshakes(c, requests).await,
    }
}

/// New TLS connections with resumption off: each one a full handshake.
async fn handshakes(common: &Common, requests: usize) -> Result<report::Sample, String> {
    let (_, authority) = common.authority()?;
    let config = common.tls_config(&[b"http/1.1"], false)?;
    let remaining = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(requests));
    let mut workers = Vec::new();
    for _ in 0..common.concurrency.max(1) {
        let (config, authority, remaining) = (config.clone(), authority.clone(), remaining.clone());
        workers.push(tokio::spawn(async move {
            let mut sample = report::Sample::default();
            while remaining
                .fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, |n| {
                    n.checked_sub(1)
                })
                .is_ok()
            {
                let start = Instant::now();
                match crate::tls::connect(&authority, config.clone()).await {
                    Ok(_) => sample.latencies.push(start.elapsed()),
                    Err(_) => sample.errors += 1,
                }
            }
            sample
        }));
    }
    let mut total = report::Sample::default();
    for worker in workers {
        total.merge(worker.await.map_err(|e| e.to_string())?);
    }
    Ok(total)
}
