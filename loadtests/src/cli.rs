//! `loadgen http ...` and `loadgen flight ...`.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::common::Common;
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
