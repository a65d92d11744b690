//! `tls`: the server certificate the client listeners present and the client-certificate
//! policy. Each PEM may be given inline, as a reference, or as a `*_file` path.

use serde::Deserialize;

use super::path::ConfigPath;
use super::reference::Reference;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub certificate: Option<Reference>,
    pub certificate_file: Option<ConfigPath>,
    pub key: Option<Reference>,
    pub key_file: Option<ConfigPath>,
    pub client_auth: ClientAuth,
    /// CA bundle that client certificates must chain to.
    pub client_ca_file: Option<ConfigPath>,
    /// Certificate revocation lists (PEM) checked for client certificates.
    pub crl_files: Vec<ConfigPath>,
}

impl TlsConfig {
    /// A server certificate chain and key from files; no client certificates asked for.
    pub fn from_files(certificate_file: impl Into<ConfigPath>, key_file: impl Into<ConfigPath>) -> Self {
        Self { certificate_file: Some(certificate_file.into()), key_file: Some(key_file.into()), ..Self::default() }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    None,
    /// Asked for and verified when sent; requests without one need another method.
    Optional,
    /// The handshake fails without a valid client certificate.
    Required,
}
