//! Command line: `engine [--config FILE] [flags]`. Flags override the config file.
//!
//! Exit codes: 0 after a clean shutdown (or a passing `--check`), 1 when the configuration
//! or startup fails (the message names the field or file), 2 for bad command-line usage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use identity::{AuthMethod, Principal, PrincipalKind, StampVerifier};

use crate::caller::Authenticator;
use crate::config::Config;
use crate::query::QueryEngine;

#[derive(Debug, Parser)]
#[command(name = "engine", version, about = "Portcullis SQL engine (DataFusion, HTTP /v1/sql, Arrow Flight SQL)")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// A cluster node instead of the engine (docs/engine.md, "Scaling out").
    #[command(subcommand)]
    pub role: Option<crate::cluster::Role>,
    /// YAML config; without it the embedded demo configuration is used.
    #[arg(short, long, env = "PORTCULLIS_ENGINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// PEM Ed25519 public key of the gateway's stamp signer (repeat during a key rotation).
    #[arg(long = "stamp-public-key")]
    pub stamp_public_keys: Vec<PathBuf>,
    /// HTTP listen address (default 127.0.0.1:8091).
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Flight SQL listen address (default 127.0.0.1:50052).
    #[arg(long)]
    pub flight_listen: Option<SocketAddr>,
    /// INSECURE: serve every request as this principal, without any stamp. For local
    /// development only; logs a warning at start and on every request.
    #[arg(long, value_name = "ID")]
    pub dangerous_dev_principal: Option<String>,
    /// Groups of the development principal (with --dangerous-dev-principal).
    #[arg(long = "dev-group", value_name = "GROUP", requires = "dangerous_dev_principal")]
    pub dev_groups: Vec<String>,
    /// Email of the development principal (with --dangerous-dev-principal).
    #[arg(long, value_name = "EMAIL", requires = "dangerous_dev_principal")]
    pub dev_email: Option<String>,
    /// The memory this process may use, as its container's resources state it (the chart
    /// sets it from `limits.memory` through the downward API). The default memory pool is
    /// half of the smaller of this and the process's cgroup limit.
    #[arg(long, value_name = "BYTES", env = "PORTCULLIS_MEMORY_LIMIT_BYTES")]
    pub memory_limit_bytes: Option<u64>,
    /// Validate the configuration, keys, datasets and views, then exit.
    #[arg(long)]
    pub check: bool,
    /// Shut down when standard input closes. `gateway up` holds the other end of the pipe,
    /// so the engine goes with it even when the gateway is killed (SIGKILL, OOM).
    #[arg(long)]
    pub exit_with_stdin: bool,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    process::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(process::THREAD_STACK_BYTES)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("engine: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.role {
        Some(role) => runtime.block_on(crate::cluster::run(role)),
        None => runtime.block_on(run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("engine: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config with flags applied, and the authenticator it calls for.
pub fn load(args: &Args) -> Result<(Config, Authenticator), String> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path),
        None => Config::embedded_default(),
    }
    .map_err(|e| e.to_string())?;
    if !args.stamp_public_keys.is_empty() {
        config.stamp.public_key_files = args.stamp_public_keys.clone();
    }
    if let Some(addr) = args.http_listen {
        config.http_listen = addr;
    }
    if let Some(addr) = args.flight_listen {
        config.flight_listen = addr;
    }
    config.limits.memory_limit_bytes = args.memory_limit_bytes;
    let auth = match (&args.dangerous_dev_principal, config.stamp.public_key_files.is_empty()) {
        (Some(_), false) => {
            return Err("--dangerous-dev-principal cannot be combined with stamp public keys".into());
        }
        (Some(id), true) => {
            let mut principal = Principal::new(PrincipalKind::User, id, id, AuthMethod::Development);
            principal.groups = args.dev_groups.clone();
            principal.email = args.dev_email.clone();
            Authenticator::DangerousDevelopment(Arc::new(principal))
        }
        (None, true) => {
            return Err("no stamp public key: set stamp.public_key_files or --stamp-public-key \
                 (or, for local development only, --dangerous-dev-principal)"
                .into());
        }
        (None, false) => {
            let mut pems = Vec::new();
            for (i, path) in config.stamp.public_key_files.iter().enumerate() {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("stamp.public_key_files[{i}] ({}): {e}", path.display()))?;
                pems.push(pem);
            }
            let verifier = StampVerifier::from_pems(
                pems.iter().map(Vec::as_slice),
                config.stamp.audience.clone(),
                config.stamp.leeway_secs,
                config.stamp.cache_capacity,
            )
            .map_err(|e| format!("stamp.public_key_files: {e}"))?;
            Authenticator::Stamps(verifier)
        }
    };
    Ok((config, auth))
}

async fn run(args: Args) -> Result<(), String> {
    let (config, auth) = load(&args)?;
    if args.check {
        QueryEngine::new(&config).await?;
        println!("configuration OK");
        return Ok(());
    }
    match &auth {
        Authenticator::DangerousDevelopment(principal) => tracing::warn!(
            principal = %principal.id,
            "INSECURE development mode: every request runs as this principal without authentication; never expose this engine"
        ),
        Authenticator::Stamps(verifier) => {
            let keys: Vec<&str> = verifier.key_ids().collect();
            tracing::info!(?keys, audience = %config.stamp.audience, "verifying identity stamps");
        }
    }
    let stop = process::shutdown_signal();
    let mut running = crate::server::start(&config, auth).await?;
    if let Some(path) = &args.config {
        running.reload_on_change(path.clone());
    }
    if args.exit_with_stdin {
        tokio::select! {
            _ = stop => {}
            _ = stdin_closed() => tracing::warn!("standard input closed (the parent is gone)"),
        }
    } else {
        stop.await;
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// Resolves when standard input reaches end of file (or fails): read on a thread, as tokio's
/// stdin is a blocking read too.
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
}
