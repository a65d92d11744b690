//! What every cluster node shares: its command-line arguments (address, mTLS files) and how
//! it serves its gRPC router.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::node_tls::{NodeTls, NodeTlsFiles};

/// Gives each gRPC message room for a wide plan or a big batch (Ballista's own default).
pub(super) const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// What every node is told: where it listens, how others reach it, and its mTLS files.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The cluster CA's certificate (PEM): the only issuer whose client certificates this
    /// node accepts, and whose server certificates it trusts.
    #[arg(long, value_name = "FILE")]
    pub node_mtls_ca_certificate_file: Option<PathBuf>,
    /// This node's certificate (PEM), for both serving and connecting.
    #[arg(long, value_name = "FILE")]
    pub node_mtls_certificate_file: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub node_mtls_key_file: Option<PathBuf>,
    /// Where this node listens (port 0: any free port, logged at start).
    #[arg(long, value_name = "ADDR")]
    pub node_bind_address: SocketAddr,
    /// The host other nodes reach this one at, as its certificate names it (default: the
    /// bind address's IP).
    #[arg(long, value_name = "HOST")]
    pub node_advertise_address: Option<String>,
    /// INSECURE: serve and connect in plaintext, without certificates. Anyone who can
    /// reach the port can submit plans or read results. Development only.
    #[arg(long)]
    pub dangerous_allow_insecure_connections: bool,
    /// Serve `GET /metrics` (Prometheus text) here, e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR")]
    pub metrics_address: Option<SocketAddr>,
    /// The coordinator's `masking.keyed_hash_key_file`, so this node runs the `keyed_hash`
    /// masks of row and column policy as the coordinator would; without it, it refuses plans
    /// that hash (the other masks need no key).
    #[arg(long, value_name = "FILE")]
    pub mask_key_file: Option<PathBuf>,
}

impl NodeArgs {
    /// The node's mTLS, or `None` with the dangerous switch (announced loudly).
    pub(super) fn tls(&self) -> Result<Option<Arc<NodeTls>>, String> {
        let files = [&self.node_mtls_ca_certificate_file, &self.node_mtls_certificate_file, &self.node_mtls_key_file];
        match (files, self.dangerous_allow_insecure_connections) {
            ([Some(ca), Some(certificate), Some(key)], false) => {
                let tls =
                    NodeTls::load(NodeTlsFiles { ca: ca.clone(), certificate: certificate.clone(), key: key.clone() })?;
                tokio::spawn(Arc::clone(&tls).watch());
                Ok(Some(tls))
            }
            ([None, None, None], true) => {
                tracing::warn!(
                    "INSECURE: --dangerous-allow-insecure-connections: this node serves and connects in plaintext \
                     without certificates; anyone who reaches its port can run plans on the cluster or read results. \
                     Never use it beyond a development machine."
                );
                Ok(None)
            }
            (_, true) => {
                Err("--dangerous-allow-insecure-connections cannot be combined with --node-mtls-* files".into())
            }
            _ => Err("the cluster's ports require mTLS: give --node-mtls-ca-certificate-file, \
                 --node-mtls-certificate-file and --node-mtls-key-file (or, for development only, \
                 --dangerous-allow-insecure-connections)"
                .into()),
        }
    }

    /// The mask functions this node runs plans with ([`crate::data_policy::node_functions`]).
    pub(super) fn mask_functions(&self) -> Result<Vec<Arc<datafusion::logical_expr::ScalarUDF>>, String> {
        let Some(path) = &self.mask_key_file else { return crate::data_policy::node_functions(None) };
        let secret = std::fs::read(path).map_err(|e| format!("--mask-key-file {}: {e}", path.display()))?;
        crate::data_policy::node_functions(Some(&secret))
            .map_err(|e| format!("--mask-key-file {}: {e}", path.display()))
    }

    /// The host this node is reached at.
    pub(super) fn advertised(&self, bound: SocketAddr) -> String {
        self.node_advertise_address.clone().unwrap_or_else(|| bound.ip().to_string())
    }
}

/// Serves `router` on `listener`: over mTLS, or plaintext with the dangerous switch.
pub(super) async fn serve(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<NodeTls>>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let served = match tls {
        Some(tls) => router.serve_with_incoming_shutdown(tls.incoming(listener), stop).await,
        None => {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            router.serve_with_incoming_shutdown(incoming, stop).await
        }
    };
    served.map_err(|e| format!("serving: {e}"))
}
