//! What the gateway knows about a connection once its TLS handshake is done: shared by the
//! listener that accepts it, the pipeline that serves its requests and the browser routes.

use std::net::SocketAddr;
use std::sync::Arc;

use identity::Principal;

/// What the gateway knows about a connection once its TLS handshake is done.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub peer: SocketAddr,
    /// The verified client certificate's principal, if one was presented.
    pub workload: Option<Arc<Principal>>,
}
