//! Stamp key pairs: generation and PEM encoding.
//!
//! Keys are Ed25519: small, deterministic signatures, and one algorithm to get right. The
//! private key is PKCS#8 (`PRIVATE KEY`), the public key SubjectPublicKeyInfo (`PUBLIC KEY`),
//! the same files `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// Why a key could not be generated or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM `{0}` block: {1}")]
    Pem(&'static str, String),
    #[error("not an Ed25519 public key (expected a 44-byte SubjectPublicKeyInfo for OID 1.3.101.112)")]
    NotEd25519Public,
    #[error("not an Ed25519 PKCS#8 private key: {0}")]
    NotEd25519Private(String),
    #[error("the system random generator failed")]
    Random,
}

/// A freshly generated stamp key pair, PEM-encoded. The private half belongs to the
/// gateway only; the engine gets the public half.
#[derive(Clone)]
pub struct StampKeyPair {
    pub private_pkcs8_pem: String,
    pub public_spki_pem: String,
    pub key_id: String,
}

impl std::fmt::Debug for StampKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("StampKeyPair").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// Generates a new Ed25519 stamp key pair.
pub fn generate_stamp_keypair() -> Result<StampKeyPair, KeyError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| KeyError::NotEd25519Private(e.to_string()))?;
    let public = pair.public_key().as_ref();
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(public);
    Ok(StampKeyPair {
        private_pkcs8_pem: pem_encode("PRIVATE KEY", pkcs8.as_ref()),
        public_spki_pem: pem_encode("PUBLIC KEY", &spki),
        key_id: key_id(public),
    })
}

/// The key id of a raw 32-byte Ed25519 public key: the first 8 bytes of its SHA-256, hex.
/// It travels in the stamp so a verifier with several keys (rotation) picks the right one.
pub fn key_id(raw_public_key: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, raw_public_key);
    hash.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Reads a PEM `PUBLIC KEY` and returns the raw 32-byte Ed25519 key.
pub(crate) fn public_key_from_pem(pem: &[u8]) -> Result<Vec<u8>, KeyError> {
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|e| KeyError::Pem("PUBLIC KEY", e.to_string()))?;
    let der = spki.as_ref();
    match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(raw) if raw.len() == 32 => Ok(raw.to_vec()),
        _ => Err(KeyError::NotEd25519Public),
    }
}

/// Reads a PEM `PRIVATE KEY` (PKCS#8 v1 or v2) as an Ed25519 key pair.
pub(crate) fn keypair_from_pem(pem: &[u8]) -> Result<Ed25519KeyPair, KeyError> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|e| KeyError::Pem("PRIVATE KEY", e.to_string()))?;
    Ed25519KeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| KeyError::NotEd25519Private(e.to_string()))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_round_trips_through_pem() {
        let pair = generate_stamp_keypair().unwrap();
        let public = public_key_from_pem(pair.public_spki_pem.as_bytes()).unwrap();
        let private = keypair_from_pem(pair.private_pkcs8_pem.as_bytes()).unwrap();
        assert_eq!(private.public_key().as_ref(), public.as_slice());
        assert_eq!(key_id(&public), pair.key_id);
        assert_eq!(pair.key_id.len(), 16);
        assert!(!format!("{pair:?}").contains("PRIVATE"));
    }

    #[test]
    fn rejects_non_ed25519_and_garbage() {
        assert!(matches!(public_key_from_pem(b"not pem"), Err(KeyError::Pem(..))));
        // A well-formed PUBLIC KEY block whose key is not Ed25519 (a P-256 SPKI header).
        let mut p256 = vec![0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        p256.extend_from_slice(&[0u8; 78]);
        let pem = pem_encode("PUBLIC KEY", &p256);
        assert!(matches!(public_key_from_pem(pem.as_bytes()), Err(KeyError::NotEd25519Public)));
        let pair = generate_stamp_keypair().unwrap();
        // A public key is not a private key.
        assert!(keypair_from_pem(pair.public_spki_pem.as_bytes()).is_err());
    }
}
