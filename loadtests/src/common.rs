//! What every `loadgen` command takes: the target, the SQL, the load, the stamp to mint, TLS.
//! Below the commands (`cli`) and the protocols (`http`, `flight`) that all read it.

use std::net::ToSocketAddrs;
use std::path::PathBuf;

use clap::Args;
use identity::{AuthMethod, Principal, PrincipalKind, StampSigner};

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

    pub(crate) fn check_loopback(&self) -> Result<(), String> {
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
