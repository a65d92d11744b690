//! Reading credentials from request headers: the `Authorization` schemes, the API key
//! header, one of each at most, and the digest secrets are cached under.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::error::AuthError;

/// The header services send their API key in.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";
/// Prefix of the bearer tokens the Flight Handshake returns.
pub(crate) const SESSION_PREFIX: &str = "pcs_";
/// A request carrying two `Authorization` (or two `X-API-Key`) headers is refused: which
/// one a server reads differs between implementations, and a proxy in front may have checked
/// the other one.
pub(super) fn single_credentials(headers: &HeaderMap) -> Result<(), AuthError> {
    let more_than_one = |name| headers.get_all(name).iter().nth(1).is_some();
    if more_than_one(AUTHORIZATION.as_str()) {
        return Err(AuthError::Malformed("more than one Authorization header"));
    }
    if more_than_one(API_KEY_HEADER) {
        return Err(AuthError::Malformed("more than one X-API-Key header"));
    }
    Ok(())
}

/// Basic credentials' base64: the standard alphabet, padded or not. grpc-go (ADBC's
/// `username` / `password`) sends it unpadded; everything else about it stays strict
/// (alphabet, trailing bits, no whitespace).
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    Bearer(&'a str),
    /// The password of `Basic base64(user:password)`; the user name is ignored.
    Basic(String),
}

/// Parses an `Authorization` value; the scheme is case-insensitive (RFC 9110 §11.1).
/// Public for the fuzz target.
pub fn credentials(value: &[u8]) -> Option<Credentials<'_>> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Bearer(rest));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASIC.decode(rest).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (_, password) = decoded.split_once(':')?;
        return Some(Credentials::Basic(password.to_string()));
    }
    None
}

/// The key a secret is cached and looked up under (the secret itself is never kept).
pub(crate) fn sha256(bytes: impl AsRef<[u8]>) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes.as_ref()).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::{Credentials, credentials};

    fn basic_password(value: &str) -> Option<String> {
        match credentials(value.as_bytes()) {
            Some(Credentials::Basic(password)) => Some(password),
            _ => None,
        }
    }

    #[test]
    fn basic_credentials_accept_padded_and_unpadded_base64_only() {
        // "x:secret" = 8 bytes: padded "eDpzZWNyZXQ=", grpc-go sends "eDpzZWNyZXQ".
        assert_eq!(basic_password("Basic eDpzZWNyZXQ=").as_deref(), Some("secret"));
        assert_eq!(basic_password("Basic eDpzZWNyZXQ").as_deref(), Some("secret"));
        // "ab:secret" = 9 bytes: no padding either way.
        assert_eq!(basic_password("basic YWI6c2VjcmV0").as_deref(), Some("secret"));
        for bad in [
            "Basic eDpzZWNyZXQ==", // too much padding
            "Basic eDpzZWNyZXR=",  // non-zero trailing bits
            "Basic eDpz ZWNyZXQ=", // whitespace inside
            "Basic eDpzZWNyZXQ_",  // URL-safe alphabet
            "Basic c2VjcmV0",      // no colon
        ] {
            assert_eq!(basic_password(bad), None, "{bad} was accepted");
        }
    }
}
