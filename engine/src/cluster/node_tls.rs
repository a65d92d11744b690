//! The cluster's mTLS: every node serves with its certificate and requires a client
//! certificate from the cluster's own CA, and every node (and the coordinator) presents its
//! certificate when it connects to another. Ballista 55 has no server-side TLS, so the
//! servers here are tonic over a rustls acceptor of ours (the workspace's one rustls and
//! aws-lc-rs provider); clients get tonic's TLS through Ballista's endpoint hook.
//!
//! The files are read again when they change (polled every few seconds): a rotated
//! certificate serves the next connection, and a broken set is refused with the old one
//! kept, as the gateway does with its own certificates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use ballista_core::extension::EndpointOverrideFn;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once per listener: a flood of connections that never finish
/// one waits here instead of holding a task and a descriptor each.
const HANDSHAKES_IN_FLIGHT: usize = 128;
/// How often the files are checked for a change.
const POLL: Duration = Duration::from_secs(5);

/// The three files a node's mTLS is made of.
#[derive(Debug, Clone)]
pub struct NodeTlsFiles {
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl NodeTlsFiles {
    fn all(&self) -> [&Path; 3] {
        [&self.ca, &self.certificate, &self.key]
    }

    /// When and how big each file is: a change to any of them means a reload.
    fn fingerprint(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.all()
            .iter()
            .map(|path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
            .collect()
    }
}

/// What one read of the files gives.
struct Material {
    server: Arc<rustls::ServerConfig>,
    client: ClientTlsConfig,
    /// The node certificate's `notAfter` (Unix seconds).
    not_after: i64,
}

/// A node's mTLS, reloaded when its files change.
pub struct NodeTls {
    files: NodeTlsFiles,
    current: ArcSwap<Material>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Reads the files; the error names the file that is wrong.
    pub fn load(files: NodeTlsFiles) -> Result<Arc<Self>, String> {
        let material = read(&files)?;
        Ok(Arc::new(Self { files, current: ArcSwap::from_pointee(material) }))
    }

    /// Seconds until the node certificate expires (negative once it has).
    pub fn expires_in(&self) -> i64 {
        let now = process::unix_secs();
        self.current.load().not_after - i64::try_from(now).unwrap_or(i64::MAX)
    }

    /// Ballista's hook for every gRPC client it creates (to the scheduler, to executors):
    /// TLS with this node's certificate, verified against the cluster CA. It takes the
    /// current files, so a rotation reaches the next connection.
    pub fn endpoint_override(self: &Arc<Self>) -> EndpointOverrideFn {
        let tls = Arc::clone(self);
        Arc::new(move |endpoint: Endpoint| {
            endpoint.tls_config(tls.current.load().client.clone()).map_err(|e| Box::new(e) as _)
        })
    }

    /// The TLS client settings as they are now (for the executor's own scheduler channel).
    pub fn client(&self) -> ClientTlsConfig {
        self.current.load().client.clone()
    }

    /// Checks the files every few seconds; reloads on a change, keeps the old set if the
    /// new one is broken. Runs until the process ends.
    pub async fn watch(self: Arc<Self>) {
        let mut seen = self.files.fingerprint();
        loop {
            tokio::time::sleep(POLL).await;
            let now = self.files.fingerprint();
            if now == seen {
                continue;
            }
            // Let a burst of writes (certificate, then key) settle before reading.
            tokio::time::sleep(Duration::from_millis(300)).await;
            seen = self.files.fingerprint();
            match read(&self.files) {
                Ok(material) => {
                    self.current.store(Arc::new(material));
                    tracing::info!(expires_in_secs = self.expires_in(), "node certificates reloaded");
                }
                Err(error) => {
                    tracing::error!(%error, "node certificates rejected; the previous ones stay in use");
                }
            }
        }
    }

    /// Accepts connections on `listener` and hands on those that complete a TLS handshake
    /// with a client certificate from the cluster CA; the rest are closed and logged.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
    ) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
        let (tx, rx) = mpsc::channel(64);
        let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else { return };
                let (tcp, peer) = process::accept(&listener).await;
                let acceptor = TlsAcceptor::from(Arc::clone(&self.current.load().server));
                let sender = tx.clone();
                tokio::spawn(async move {
                    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                    drop(permit);
                    match accepted {
                        Ok(Ok(tls)) => {
                            let _ = sender.send(Ok(tls)).await;
                        }
                        Ok(Err(error)) => refused(peer, &error.to_string()),
                        Err(_) => refused(peer, "no TLS handshake within 10 s"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

fn refused(peer: SocketAddr, why: &str) {
    tracing::warn!(%peer, error = why, "node connection refused (the cluster's ports require mTLS)");
}

fn read(files: &NodeTlsFiles) -> Result<Material, String> {
    let bytes = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let (ca_pem, cert_pem, key_pem) = (bytes(&files.ca)?, bytes(&files.certificate)?, bytes(&files.key)?);
    let certs = |pem: &[u8], path: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate", path.display()));
        }
        Ok(certs)
    };
    let ca = certs(&ca_pem, &files.ca)?;
    let chain = certs(&cert_pem, &files.certificate)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("{}: {e}", files.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots.add(cert).map_err(|e| format!("{}: {e}", files.ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .map_err(|e| format!("{}: {e}", files.ca.display()))?;
    let not_after = not_after(chain.first().map(AsRef::as_ref).unwrap_or_default())
        .map_err(|e| format!("{}: {e}", files.certificate.display()))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} and {}: {e}", files.certificate.display(), files.key.display()))?;
    // gRPC is HTTP/2 only.
    server.alpn_protocols = vec![b"h2".to_vec()];
    let client = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca_pem))
        .identity(Identity::from_pem(&cert_pem, &key_pem));
    Ok(Material { server: Arc::new(server), client, not_after })
}

fn not_after(der: &[u8]) -> Result<i64, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    Ok(cert.validity().not_after.timestamp())
}
