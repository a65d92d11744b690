//! TLS termination: loading and checking the server certificate, the client-certificate
//! policy, and the rustls configuration shared by both TLS listeners.
//!
//! TLS 1.2 and 1.3 only; ALPN `h2` and `http/1.1`. The built configuration sits behind an
//! `ArcSwap` so a reload (SIGHUP, file change) swaps it for new connections while open ones
//! keep theirs.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config::{ClientAuth, ConfigError, TlsConfig, resolve_pem};

/// The one crypto provider of the process (aws-lc-rs), shared with stamp signing.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Certificates under this many days from expiry are logged as a warning at load.
const EXPIRY_WARNING_DAYS: i64 = 7;

/// Parses a PEM certificate chain (leaf first).
pub(crate) fn parse_certificates(pem: &[u8], field: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(field, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(ConfigError::new(field, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Parses a PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC). Encrypted keys are refused
/// with a message saying so (decrypt with `openssl pkey -in key.pem -out plain.pem`).
pub(crate) fn parse_private_key(pem: &[u8], field: &str) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(ConfigError::new(
            field,
            "the private key is encrypted; give an unencrypted key (openssl pkey -in KEY -out PLAIN)",
        ));
    }
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| ConfigError::new(field, format!("no PKCS#8, PKCS#1 or SEC1 private key found: {e}")))
}

/// Refuses an expired (or not yet valid) certificate; warns when it expires within 7 days.
/// Returns the seconds left until expiry.
pub(crate) fn check_validity(cert: &CertificateDer<'_>, field: &str) -> Result<i64, ConfigError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| ConfigError::new(field, format!("certificate does not parse: {e}")))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let not_after = parsed.validity().not_after.timestamp();
    let not_before = parsed.validity().not_before.timestamp();
    let subject = parsed.subject().to_string();
    if now > not_after {
        return Err(ConfigError::new(
            field,
            format!("certificate `{subject}` expired at {}", parsed.validity().not_after),
        ));
    }
    if now < not_before {
        return Err(ConfigError::new(
            field,
            format!("certificate `{subject}` is not valid before {}", parsed.validity().not_before),
        ));
    }
    let left = not_after - now;
    if left < EXPIRY_WARNING_DAYS * 86_400 {
        tracing::warn!(field, subject, days_left = left / 86_400, "certificate expires soon");
    }
    Ok(left)
}

/// Everything TLS needs, loaded and checked, ready to build a `ServerConfig`.
#[derive(Debug)]
pub struct TlsMaterial {
    pub certified_key: CertifiedKey,
    pub client_auth: ClientAuth,
    pub client_roots: Option<Arc<RootCertStore>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// (name, notAfter as Unix seconds) of the served certificate and each CA certificate.
    pub expiries: Vec<(String, i64)>,
}

impl TlsMaterial {
    /// Loads the certificate, key, CA bundle and CRLs the config names, and checks them:
    /// the key must match the certificate, nothing may be expired.
    pub fn load(config: &TlsConfig) -> Result<Self, ConfigError> {
        let cert_pem = resolve_pem(config.certificate.as_ref(), config.certificate_file.as_deref(), "tls.certificate")?;
        let key_pem = resolve_pem(config.key.as_ref(), config.key_file.as_deref(), "tls.key")?;
        let chain = parse_certificates(&cert_pem, "tls.certificate")?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let leaf = chain.first().ok_or_else(|| ConfigError::new("tls.certificate", "no certificate in the PEM"))?;
        let mut expiries = vec![("server".to_string(), now + check_validity(leaf, "tls.certificate")?)];
        let key = parse_private_key(&key_pem, "tls.key")?;
        let certified_key = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| ConfigError::new("tls.key", format!("does not match tls.certificate or is unusable: {e}")))?;

        let client_roots = match (config.client_auth, &config.client_ca_file) {
            (ClientAuth::None, _) => None,
            (_, None) => {
                return Err(ConfigError::new(
                    "tls.client_ca_file",
                    "required when tls.client_auth is optional or required",
                ));
            }
            (_, Some(path)) => {
                let pem = std::fs::read(path)
                    .map_err(|e| ConfigError::new("tls.client_ca_file", format!("{}: {e}", path.display())))?;
                let mut roots = RootCertStore::empty();
                for (i, cert) in parse_certificates(&pem, "tls.client_ca_file")?.into_iter().enumerate() {
                    expiries.push((format!("client_ca[{i}]"), now + check_validity(&cert, "tls.client_ca_file")?));
                    roots.add(cert).map_err(|e| ConfigError::new("tls.client_ca_file", e.to_string()))?;
                }
                Some(Arc::new(roots))
            }
        };
        let mut crls = Vec::new();
        for (i, path) in config.crl_files.iter().enumerate() {
            let field = format!("tls.crl_files[{i}]");
            let pem = std::fs::read(path).map_err(|e| ConfigError::new(&field, format!("{}: {e}", path.display())))?;
            for crl in CertificateRevocationListDer::pem_slice_iter(&pem) {
                crls.push(crl.map_err(|e| ConfigError::new(&field, format!("not a PEM CRL: {e}")))?);
            }
        }
        Ok(Self { certified_key, client_auth: config.client_auth, client_roots, crls, expiries })
    }

    /// A rustls server configuration offering `alpn` (in preference order).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, ConfigError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ConfigError::new("tls", e.to_string()))?;
        let builder = match (&self.client_roots, self.client_auth) {
            (Some(roots), ClientAuth::Optional | ClientAuth::Required) => {
                let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), provider())
                    .with_crls(self.crls.iter().cloned());
                if self.client_auth == ClientAuth::Optional {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier.build().map_err(|e| ConfigError::new("tls.client_ca_file", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let resolver = rustls::sign::SingleCertAndKey::from(self.certified_key.clone());
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// ALPN offered on each listener: gRPC needs h2; the API serves both.
pub(crate) const API_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
pub(crate) const FLIGHT_ALPN: &[&[u8]] = &[b"h2"];

/// The live TLS configurations, swapped whole on reload.
#[derive(Debug)]
pub(crate) struct TlsConfigs {
    pub api: ArcSwap<ServerConfig>,
    pub flight: ArcSwap<ServerConfig>,
}

impl TlsConfigs {
    pub(crate) fn build(material: &TlsMaterial) -> Result<Self, ConfigError> {
        Ok(Self {
            api: ArcSwap::new(material.server_config(API_ALPN)?),
            flight: ArcSwap::new(material.server_config(FLIGHT_ALPN)?),
        })
    }

    pub(crate) fn swap(&self, material: &TlsMaterial) -> Result<(), ConfigError> {
        let api = material.server_config(API_ALPN)?;
        let flight = material.server_config(FLIGHT_ALPN)?;
        self.api.store(api);
        self.flight.store(flight);
        Ok(())
    }
}
