//! What the gateway's and the engine's integration tests share, written once: an HTTP reply
//! as the tests read it, a rustls client for a test CA, and the Python client checks'
//! interpreter and helper module (`python/checks.py`).
// Test code: a broken fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A response as the tests read it: status, headers, the whole body and its trailers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// The trailers after the body, when the server sent any.
    pub trailers: Option<http::HeaderMap>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A TLS client configuration (rustls, aws-lc-rs) trusting the CA in `ca` (PEM), with a
/// client certificate and key when `identity` names them, offering `alpn`.
pub fn client_config(ca: &Path, identity: Option<(PathBuf, PathBuf)>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The Python interpreter the client checks run with (`$PORTCULLIS_PYTHON`, else `python3`),
/// with `python/checks.py` (the check runner and Flight SQL command builders) importable.
/// Async tests wrap it: `tokio::process::Command::from(python_command())`.
pub fn python_command() -> std::process::Command {
    let mut command =
        std::process::Command::new(std::env::var("PORTCULLIS_PYTHON").unwrap_or_else(|_| "python3".into()));
    command.env("PYTHONPATH", concat!(env!("CARGO_MANIFEST_DIR"), "/python"));
    command
}

/// The stdout of a finished Python check, which must have exited 0: else the test fails
/// with `what`, the stdout and the stderr.
pub fn python_stdout(output: &std::process::Output, what: &str) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what} failed\n{stdout}\n{stderr}");
    stdout.into_owned()
}
