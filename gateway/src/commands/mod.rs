//! One module per subcommand, and what the serving ones share (the config flags, the
//! runtime, the shutdown signal).

pub(crate) mod apikey;
pub(crate) mod check;
pub(crate) mod exit;
pub(crate) mod health;
pub(crate) mod policy;
pub(crate) mod replay;
pub(crate) mod run;
pub(crate) mod session_key;
pub(crate) mod stamp;
pub(crate) mod tls;
pub(crate) mod up;

use std::path::PathBuf;

use clap::Args;

use crate::config::Reference;

/// `-c FILE` plus the TLS flags that override the file.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
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
    pub(crate) fn load(&self) -> Result<crate::config::Config, String> {
        let mut config = crate::config::Config::from_file(&self.config).map_err(|e| e.to_string())?;
        if self.tls_certificate_file.is_some() || self.tls_certificate.is_some() {
            config.tls.certificate_file = self.tls_certificate_file.clone().map(Into::into);
            config.tls.certificate = self.tls_certificate.clone().map(Reference::new);
        }
        if self.tls_key_file.is_some() || self.tls_key.is_some() {
            config.tls.key_file = self.tls_key_file.clone().map(Into::into);
            config.tls.key = self.tls_key.clone().map(Reference::new);
        }
        Ok(config)
    }
}

/// A multi-threaded runtime for the serving commands: `worker_threads` of them, or one per CPU.
pub(crate) fn runtime(worker_threads: Option<usize>) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.thread_stack_size(process::THREAD_STACK_BYTES);
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads);
    }
    builder.enable_all().build().map_err(|e| format!("async runtime: {e}"))
}
