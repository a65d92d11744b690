//! Connections the gateway opens: to the engine, to identity providers, to audit sinks. One
//! place decides which URLs may be used in the clear (loopback only), reads CA files, and
//! builds rustls client configurations (the one crypto provider, safe protocol versions).

use std::path::Path;
use std::sync::Arc;

use http::Uri;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigError;

/// Why a URL may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a URL: {0}")]
    Invalid(String),
    #[error("URL without a host")]
    NoHost,
    #[error("plain http is only allowed for loopback hosts; use https")]
    PlainRemote,
    #[error("URL scheme must be https")]
    Scheme,
}

/// Whether `url` may be fetched: https anywhere, http only on loopback.
pub(crate) fn check_url(url: &str) -> Result<Uri, UrlError> {
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| UrlError::Invalid(e.to_string()))?;
    let host = uri.host().ok_or(UrlError::NoHost)?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err(UrlError::PlainRemote),
        _ => Err(UrlError::Scheme),
    }
}

/// `localhost` or a loopback address (brackets allowed around IPv6).
pub(crate) fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The certificates of a CA bundle (`field` names it in errors).
pub(crate) fn ca_file(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = std::fs::read(path).map_err(|e| ConfigError::new(field, format!("{}: {e}", path.display())))?;
    crate::tls::parse_certificates(&pem, field)
}

/// Trust anchors: the Mozilla roots (`webpki`) and/or a private CA's certificates.
#[derive(Debug, Default)]
pub(crate) struct Roots {
    pub webpki: bool,
    pub extra: Vec<CertificateDer<'static>>,
}

/// A rustls client configuration trusting `roots`, presenting `identity` (a chain and its
/// key) when given.
pub(crate) fn client_config(
    roots: Roots,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    field: &str,
) -> Result<rustls::ClientConfig, ConfigError> {
    let mut store = rustls::RootCertStore::empty();
    if roots.webpki {
        store.roots = webpki_roots::TLS_SERVER_ROOTS.to_vec();
    }
    for cert in roots.extra {
        store.add(cert).map_err(|e| ConfigError::new(field, format!("CA certificate: {e}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(field, e.to_string()))?
        .with_root_certificates(store);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| ConfigError::new(field, format!("the key does not match the certificate: {e}"))),
    }
}

/// [`client_config`] without a client certificate, as a tokio connector.
pub(crate) fn connector(roots: Roots, field: &str) -> Result<tokio_rustls::TlsConnector, ConfigError> {
    Ok(tokio_rustls::TlsConnector::from(Arc::new(client_config(roots, None, field)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url("https://idp.example/x").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("http://[::1]:8080/x").is_ok());
        assert!(check_url("http://localhost/x").is_ok());
        assert_eq!(check_url("http://10.0.0.1/x").unwrap_err(), UrlError::PlainRemote);
        assert_eq!(check_url("ftp://idp.example/x").unwrap_err(), UrlError::Scheme);
        assert_eq!(check_url("/relative").unwrap_err(), UrlError::NoHost);
    }
}
