//! A small PKI for development and tests, like the Spice runtime's `spice cluster tls`:
//! a CA (`ca.pem`, `ca-key.pem`) and leaves signed by it (`NAME.pem`, `NAME-key.pem`).
//! Keys are ECDSA P-256, written with mode 0600.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::{Duration, OffsetDateTime};

/// What to put in a leaf certificate.
#[derive(Debug, Clone, Default)]
pub struct LeafSpec {
    pub name: String,
    pub hosts: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub spiffe_id: Option<String>,
    pub email: Option<String>,
    /// Client (workload) usage instead of server usage.
    pub client: bool,
    /// A cluster node's certificate: server and client usage both (it serves the other
    /// nodes and connects to them).
    pub node: bool,
    pub valid_days: i64,
}

pub(crate) fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca-key.pem"))
}

pub fn leaf_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")))
}

/// Creates a CA in `dir` unless one is there; returns whether it was created. Its common
/// name is `common_name` and the first bytes of its key's fingerprint: two development CAs
/// never share a subject, so a certificate from the other one is refused as from an unknown
/// CA, not with a signature check against a namesake ("decrypt error").
pub fn init_ca(dir: &Path, common_name: &str) -> Result<bool, String> {
    let (cert_path, key_path) = ca_paths(dir);
    if cert_path.exists() || key_path.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key_raw());
    let fingerprint: String = digest.as_ref().iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, format!("{common_name} {fingerprint}"));
    params.distinguished_name.push(DnType::OrganizationName, "Portcullis");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    Ok(true)
}

/// Issues a leaf signed by the CA in `dir`.
pub fn issue_leaf(dir: &Path, spec: &LeafSpec) -> Result<(PathBuf, PathBuf), String> {
    let (ca_cert_path, ca_key_path) = ca_paths(dir);
    let ca_cert = std::fs::read_to_string(&ca_cert_path).map_err(|e| {
        format!("{}: {e} (run `gateway tls init --dir {}` first)", ca_cert_path.display(), dir.display())
    })?;
    let ca_key = std::fs::read_to_string(&ca_key_path).map_err(|e| format!("{}: {e}", ca_key_path.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key).map_err(|e| format!("{}: {e}", ca_key_path.display()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, ca_key).map_err(|e| format!("{}: {e}", ca_cert_path.display()))?;

    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, spec.name.as_str());
    for host in &spec.hosts {
        params
            .subject_alt_names
            .push(SanType::DnsName(host.as_str().try_into().map_err(|e| format!("--host {host}: {e}"))?));
    }
    for ip in &spec.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    if let Some(uri) = &spec.spiffe_id {
        if !uri.starts_with("spiffe://") {
            return Err(format!("--spiffe-id {uri}: must start with spiffe://"));
        }
        params.subject_alt_names.push(SanType::URI(uri.as_str().try_into().map_err(|e| format!("--spiffe-id: {e}"))?));
    }
    if let Some(email) = &spec.email {
        params
            .subject_alt_names
            .push(SanType::Rfc822Name(email.as_str().try_into().map_err(|e| format!("--email: {e}"))?));
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = match (spec.node, spec.client) {
        (true, _) => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        (false, true) => vec![ExtendedKeyUsagePurpose::ClientAuth],
        (false, false) => vec![ExtendedKeyUsagePurpose::ServerAuth],
    };
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(spec.valid_days);
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    let (cert_path, key_path) = leaf_paths(dir, &spec.name);
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `crl.pem` in `dir`, signed by its CA, revoking the named leaves.
pub fn revoke(dir: &Path, names: &[String]) -> Result<PathBuf, String> {
    let (ca_cert_path, ca_key_path) = ca_paths(dir);
    let ca_cert = std::fs::read_to_string(&ca_cert_path).map_err(|e| format!("{}: {e}", ca_cert_path.display()))?;
    let ca_key = std::fs::read_to_string(&ca_key_path).map_err(|e| format!("{}: {e}", ca_key_path.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key).map_err(|e| format!("{}: {e}", ca_key_path.display()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, ca_key).map_err(|e| format!("{}: {e}", ca_cert_path.display()))?;
    let now = OffsetDateTime::now_utc();
    let mut revoked = Vec::new();
    for name in names {
        let path = leaf_paths(dir, name).0;
        let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
            .map_err(|e: rustls_pki_types::pem::Error| format!("{}: {e}", path.display()))?;
        let der: rustls_pki_types::CertificateDer<'_> = der;
        let (_, cert) =
            x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| format!("{}: {e}", path.display()))?;
        revoked.push(rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(cert.raw_serial()),
            revocation_time: now,
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        });
    }
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(30),
        crl_number: rcgen::SerialNumber::from(now.unix_timestamp().to_be_bytes().to_vec()),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer).map_err(|e| e.to_string())?;
    let path = dir.join("crl.pem");
    std::fs::write(&path, crl.pem().map_err(|e| e.to_string())?).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, UnixTime};
    use rustls::server::WebPkiClientVerifier;

    use super::*;

    #[test]
    fn a_client_of_another_development_ca_is_from_an_unknown_ca() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&ours, &theirs] {
            assert!(init_ca(dir.path(), "Portcullis development CA").unwrap());
        }
        let spec = LeafSpec { name: "client".into(), client: true, valid_days: 1, ..LeafSpec::default() };
        let (leaf, _) = issue_leaf(theirs.path(), &spec).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(ca_paths(ours.path()).0).unwrap()).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider()).build().unwrap();
        let leaf = CertificateDer::from_pem_file(leaf).unwrap();
        let error = verifier.verify_client_cert(&leaf, &[], UnixTime::now()).unwrap_err();
        // With one subject for every development CA this was BadSignature ("decrypt error").
        assert_eq!(error, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
    }
}
