//! The workload principal of a verified client certificate: SPIFFE ID from the URI SAN, else
//! the email SAN, else the subject CN. Computed once per connection, at the handshake.

use identity::{AuthMethod, Principal, PrincipalKind};
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The principal a verified client certificate stands for, or `None` when the certificate
/// names nobody usable (no SPIFFE ID, email or CN).
pub fn principal_from_certificate(cert: &CertificateDer<'_>) -> Option<Principal> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut spiffe = None;
    let mut email = None;
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) if uri.starts_with("spiffe://") && spiffe.is_none() => {
                    spiffe = Some(uri.to_string());
                }
                GeneralName::RFC822Name(mail) if email.is_none() => email = Some(mail.to_string()),
                _ => {}
            }
        }
    }
    let subject_dn = parsed.subject().to_string();
    let cn = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
    let id = spiffe.clone().or_else(|| email.clone()).or(cn)?;
    let subject = spiffe.unwrap_or(subject_dn);
    let mut principal = Principal::new(PrincipalKind::Workload, id, subject, AuthMethod::Mtls);
    principal.email = email;
    Some(principal)
}
