//! JSON Web Signatures in compact form: strict parsing, key selection and signature
//! verification against a JWK set. Nothing here knows about JWT claims (`oidc` checks
//! those), so the Wycheproof JWS and JWK vectors run against this module as is.
//!
//! Rules, each one a known attack closed:
//! - the header's `alg` must be in the allow-list (so `none` in any casing, and every HMAC
//!   algorithm, is refused) *and* fit the key's type: an RSA public key is never used as an
//!   HMAC secret, an EC key never with RSA;
//! - keys come only from the configured JWK set: `jku`, `x5u`, `x5c` and an embedded `jwk`
//!   are ignored, and `crit` (extensions we do not understand) is refused;
//! - base64url is strict (no padding, no stray bits) and the token size is bounded;
//! - a key's own `alg` binds it: same primitive, no weaker hash;
//! - a key set holding private or secret key material, or two keys with one `kid`, is
//!   refused whole; keys for encryption (`use: enc`, `key_ops` without `verify`), RSA keys
//!   under 2048 bits, with exponent 1 or with the ROCA fingerprint, and keys whose own `alg`
//!   contradicts their type are skipped.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The algorithms a provider may allow: asymmetric only.
pub const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Parses an algorithm name for the allow-list; symmetric and unknown names are refused.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    ASYMMETRIC.iter().copied().find(|alg| alg_name(*alg) == name).ok_or_else(|| {
        if name.starts_with("HS") {
            format!("{name} is symmetric: a shared secret cannot be verified safely by a gateway; use an asymmetric algorithm")
        } else {
            format!("unsupported algorithm {name}; use one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA")
        }
    })
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        // HMAC (and anything newer) is never in an allow-list.
        _ => "(not allowed)",
    }
}

/// Why a JWS was refused. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("token malformed: {0}")]
    Malformed(&'static str),
    #[error("token too large")]
    TooLarge,
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token signature invalid")]
    BadSignature,
}

/// The protected header members the gateway reads. Unknown members are ignored on
/// purpose (`jku`, `x5u`, `jwk` and friends are never used to find a key).
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A verified JWS: its header and payload bytes.
#[derive(Debug)]
pub struct Verified {
    pub header: Header,
    pub alg: Algorithm,
    pub payload: Vec<u8>,
}

/// The three parts of a compact JWS, decoded but not yet verified.
pub struct Parsed<'a> {
    pub header: Header,
    pub payload: Vec<u8>,
    signing_input: &'a str,
    signature: &'a str,
}

/// Splits and decodes `token` without verifying it (callers use the payload only to find the
/// issuer whose keys then verify it).
pub fn parse(token: &str, max_len: usize) -> Result<Parsed<'_>, JwsError> {
    if token.len() > max_len {
        return Err(JwsError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("not three dot-separated parts"));
    };
    let header_json = URL_SAFE_NO_PAD.decode(header).map_err(|_| JwsError::Malformed("header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|_| JwsError::Malformed("header is not a JSON object with alg"))?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| JwsError::Malformed("payload is not base64url"))?;
    if signature.is_empty() {
        return Err(JwsError::Malformed("signature missing"));
    }
    let signing_input = &token[..token.len() - signature.len() - 1];
    Ok(Parsed { header, payload, signing_input, signature })
}

impl Parsed<'_> {
    /// Verifies the signature with a key from `keys`, for an algorithm in `allowed`.
    pub fn verify(self, keys: &KeySet, allowed: &[Algorithm]) -> Result<Verified, JwsError> {
        // Exact, case-sensitive names: `none`, `None`, `NONE` and `HS256` are all refused here.
        let alg = ASYMMETRIC
            .iter()
            .copied()
            .find(|alg| alg_name(*alg) == self.header.alg && allowed.contains(alg))
            .ok_or(JwsError::AlgorithmNotAllowed)?;
        if self.header.crit.is_some() {
            return Err(JwsError::Malformed("critical header extensions are not supported"));
        }
        let signature =
            URL_SAFE_NO_PAD.decode(self.signature).map_err(|_| JwsError::Malformed("signature is not base64url"))?;
        let kid = self.header.kid.as_deref();
        let candidates: Vec<&Key> = keys
            .keys
            .iter()
            .filter(|key| key.kind.fits(alg) && key.alg.is_none_or(|own| no_downgrade(own, alg)))
            .filter(|key| kid.is_none_or(|kid| key.kid.as_deref() == Some(kid)))
            .collect();
        if candidates.is_empty() {
            return Err(JwsError::UnknownKey);
        }
        // Tokens without a kid try each key of the right type (a set holds at most MAX_KEYS).
        for key in candidates {
            if verify_signature(&key.decoding, alg, self.signing_input.as_bytes(), &signature) {
                return Ok(Verified { header: self.header, alg, payload: self.payload });
            }
        }
        Err(JwsError::BadSignature)
    }
}

/// jsonwebtoken's `crypto::verify` wants the signature still encoded; it was decoded above
/// (strictly), so encode it back canonically rather than pass the client's text along.
fn verify_signature(key: &DecodingKey, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
    let encoded = URL_SAFE_NO_PAD.encode(signature);
    jsonwebtoken::crypto::verify(&encoded, message, key, alg).unwrap_or(false)
}

/// Most keys a set may hold (providers publish a handful).
const MAX_KEYS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (
                KeyKind::Rsa,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (KeyKind::P256, Algorithm::ES256)
                | (KeyKind::P384, Algorithm::ES384)
                | (KeyKind::Ed25519, Algorithm::EdDSA)
        )
    }
}

struct Key {
    kid: Option<String>,
    kind: KeyKind,
    /// The key's own `alg`: the token's must use the same primitive (RSASSA-PSS never
    /// verifies as PKCS#1 v1.5, or the other way round) with a hash at least as strong (no
    /// downgrade; a stronger hash is allowed, as in RFC 7520's examples).
    alg: Option<Algorithm>,
    decoding: DecodingKey,
}

/// `token` may be verified with a key whose own alg is `own`.
fn no_downgrade(own: Algorithm, token: Algorithm) -> bool {
    use Algorithm::*;
    let rank = |alg| match alg {
        RS256 => (1, 256),
        RS384 => (1, 384),
        RS512 => (1, 512),
        PS256 => (2, 256),
        PS384 => (2, 384),
        PS512 => (2, 512),
        ES256 => (3, 256),
        ES384 => (4, 384),
        EdDSA => (5, 0),
        _ => (0, 0),
    };
    let ((own_primitive, own_hash), (primitive, hash)) = (rank(own), rank(token));
    own_primitive != 0 && own_primitive == primitive && hash >= own_hash
}

/// Public verification keys from a JWK set (or a single JWK).
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| (k.kid.as_deref(), k.kind)).collect();
        f.debug_struct("KeySet").field("keys", &kids).finish()
    }
}

/// Why a key set was refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWK set: {0}")]
    Malformed(String),
    #[error("the key set contains private or secret key material")]
    PrivateKeyMaterial,
    #[error("the key set has two keys with kid {0:?}")]
    DuplicateKid(String),
    #[error("the key set has more than {MAX_KEYS} keys")]
    TooManyKeys,
}

#[derive(Deserialize)]
struct JwkSetDoc {
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Members that only private or secret keys have.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl KeySet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }

    /// `{"keys": [...]}` or a single JWK object.
    pub fn from_json(json: &[u8]) -> Result<Self, JwksError> {
        let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let jwks = if value.get("keys").is_some() {
            serde_json::from_value::<JwkSetDoc>(value).map_err(|e| JwksError::Malformed(e.to_string()))?.keys
        } else if let serde_json::Value::Object(map) = value {
            vec![map]
        } else {
            return Err(JwksError::Malformed("expected an object".into()));
        };
        if jwks.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut kids = HashSet::new();
        let mut keys = Vec::with_capacity(jwks.len());
        for jwk in &jwks {
            if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
                return Err(JwksError::PrivateKeyMaterial);
            }
            let kid = jwk.get("kid").and_then(|v| v.as_str()).map(str::to_string);
            if let Some(kid) = &kid
                && !kids.insert(kid.clone())
            {
                return Err(JwksError::DuplicateKid(kid.clone()));
            }
            match parse_key(jwk) {
                Ok((kind, alg, decoding)) => keys.push(Key { kid, kind, alg, decoding }),
                Err(reason) => tracing::debug!(kid = ?kid, reason, "JWK skipped"),
            }
        }
        Ok(Self { keys })
    }
}

fn member<'a>(jwk: &'a serde_json::Map<String, serde_json::Value>, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(|v| v.as_str())
}

fn decode_member(jwk: &serde_json::Map<String, serde_json::Value>, name: &str) -> Result<Vec<u8>, &'static str> {
    let value = member(jwk, name).ok_or("a required member is missing")?;
    URL_SAFE_NO_PAD.decode(value).map_err(|_| "a member is not base64url")
}

/// One public key, or why it is skipped.
fn parse_key(
    jwk: &serde_json::Map<String, serde_json::Value>,
) -> Result<(KeyKind, Option<Algorithm>, DecodingKey), &'static str> {
    if let Some(usage) = jwk.get("use")
        && usage.as_str() != Some("sig")
    {
        return Err("not a signature key (use)");
    }
    if let Some(ops) = jwk.get("key_ops")
        && !ops.as_array().is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")))
    {
        return Err("not a verification key (key_ops)");
    }
    let kind = match (member(jwk, "kty"), member(jwk, "crv")) {
        (Some("RSA"), _) => KeyKind::Rsa,
        (Some("EC"), Some("P-256")) => KeyKind::P256,
        (Some("EC"), Some("P-384")) => KeyKind::P384,
        (Some("OKP"), Some("Ed25519")) => KeyKind::Ed25519,
        _ => return Err("unsupported key type or curve"),
    };
    // A key's own alg, when present, must name a signature algorithm that fits its type.
    let own_alg = match jwk.get("alg") {
        None => None,
        Some(alg) => {
            let known = alg.as_str().and_then(|name| ASYMMETRIC.iter().copied().find(|a| alg_name(*a) == name));
            match known {
                Some(alg) if kind.fits(alg) => Some(alg),
                _ => return Err("alg does not fit the key type"),
            }
        }
    };
    let decoding = match kind {
        KeyKind::Rsa => {
            let n = decode_member(jwk, "n")?;
            let e = decode_member(jwk, "e")?;
            let n = strip_leading_zeros(&n);
            if n.len() * 8 < 2048 {
                return Err("RSA key under 2048 bits");
            }
            let e_value = strip_leading_zeros(&e);
            if e_value.len() > 4 || e_value.last().is_none_or(|b| b & 1 == 0) || e_value == [1] {
                return Err("RSA public exponent must be odd, above 1, and at most 32 bits");
            }
            if has_roca_fingerprint(n) {
                return Err("RSA key has the ROCA fingerprint (CVE-2017-15361)");
            }
            DecodingKey::from_rsa_raw_components(n, e_value)
        }
        KeyKind::P256 | KeyKind::P384 => {
            let size = if kind == KeyKind::P256 { 32 } else { 48 };
            let (x, y) = (decode_member(jwk, "x")?, decode_member(jwk, "y")?);
            if x.len() != size || y.len() != size {
                return Err("EC coordinates have the wrong length for the curve");
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let curve = if kind == KeyKind::P256 {
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED
            } else {
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED
            };
            // Refuse points not on the curve now, not at every verification.
            aws_lc_rs::signature::ParsedPublicKey::new(curve, &point).map_err(|_| "EC point is not on the curve")?;
            DecodingKey::from_ec_der(&point)
        }
        KeyKind::Ed25519 => {
            let x = decode_member(jwk, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key is not 32 bytes");
            }
            DecodingKey::from_ed_der(&x)
        }
    };
    Ok((kind, own_alg, decoding))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// The ROCA test (Nemec et al., CCS 2017): moduli from the vulnerable Infineon library are,
/// modulo each small prime below, a power of 65537. A random modulus passes all of them with
/// negligible probability.
fn has_roca_fingerprint(modulus: &[u8]) -> bool {
    const PRIMES: &[u32] = &[
        11, 13, 17, 19, 37, 53, 61, 71, 73, 79, 97, 103, 107, 109, 127, 151, 157, 181, 191, 193, 197, 199, 211, 223,
        227, 229, 233, 239, 241, 251, 269, 277, 281, 283, 293, 307, 311, 313, 317, 331, 337, 347, 349, 353, 359, 367,
        373, 379, 383, 389, 401, 409, 419, 421, 431, 433, 439, 443, 449, 457, 461, 463, 467, 479, 487, 491, 499, 503,
        509, 521, 523, 541, 547, 557, 563, 569, 571, 577, 587, 593, 599, 601, 607, 613, 617, 619, 631, 641, 643, 647,
        653, 659, 661, 673, 677, 683, 691, 701,
    ];
    PRIMES.iter().all(|&p| {
        let residue = modulus.iter().fold(0u32, |acc, b| (acc * 256 + u32::from(*b)) % p);
        let generator = 65537 % p;
        let mut power = 1u32;
        for _ in 0..p {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                break;
            }
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_allow_list_refuses_symmetric_and_unknown() {
        assert_eq!(parse_algorithm("ES256").unwrap(), Algorithm::ES256);
        assert!(parse_algorithm("HS256").unwrap_err().contains("symmetric"));
        assert!(parse_algorithm("none").unwrap_err().contains("unsupported"));
        assert!(parse_algorithm("es256").is_err());
    }

    #[test]
    fn roca_test_passes_ordinary_moduli() {
        // 2^2048 - 1 is not a power of 65537 modulo every small prime.
        assert!(!has_roca_fingerprint(&[0xff; 256]));
    }

    #[test]
    fn private_material_and_duplicate_kids_refuse_the_set() {
        let private = br#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"AA"}]}"#;
        assert_eq!(KeySet::from_json(private).unwrap_err(), JwksError::PrivateKeyMaterial);
        let secret = br#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#;
        assert_eq!(KeySet::from_json(secret).unwrap_err(), JwksError::PrivateKeyMaterial);
        let dup = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"AA"},{"kty":"OKP","crv":"Ed25519","kid":"a","x":"AA"}]}"#;
        assert_eq!(KeySet::from_json(dup).unwrap_err(), JwksError::DuplicateKid("a".into()));
        assert!(matches!(KeySet::from_json(b"[1]").unwrap_err(), JwksError::Malformed(_)));
    }

    #[test]
    fn malformed_tokens_name_the_part() {
        assert_eq!(parse("a.b", 100).err(), Some(JwsError::Malformed("not three dot-separated parts")));
        assert_eq!(parse("a.b.c.d", 100).err(), Some(JwsError::Malformed("not three dot-separated parts")));
        assert_eq!(parse("!!.e30.c2ln", 100).err(), Some(JwsError::Malformed("header is not base64url")));
        assert_eq!(parse(&"a".repeat(101), 100).err(), Some(JwsError::TooLarge));
        // {"alg":"ES256"} with a padded payload.
        assert_eq!(
            parse("eyJhbGciOiJFUzI1NiJ9.e30=.c2ln", 100).err(),
            Some(JwsError::Malformed("payload is not base64url"))
        );
        assert_eq!(parse("eyJhbGciOiJFUzI1NiJ9.e30.", 100).err(), Some(JwsError::Malformed("signature missing")));
    }
}
