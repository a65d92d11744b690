//! The contract between the Portcullis gateway and the engine.
//!
//! The gateway authenticates a caller, then forwards the request to the engine with a
//! *signed identity stamp* in one header ([`STAMP_HEADER`]). The engine verifies the stamp
//! and exposes the [`Principal`] to SQL. The signature is asymmetric (Ed25519): the engine
//! holds only the public key, so a compromised engine cannot mint identities.
//!
//! Signatures are expensive next to a small query, so both sides cache: the gateway's
//! [`StampIssuer`] reuses a principal's stamp until shortly before it expires, and the
//! engine's [`StampVerifier`] keeps a bounded cache of verified stamps. A signature is then
//! paid about once per principal per stamp lifetime, not per request.
//!
//! This crate does no I/O: keys come in as PEM bytes and go out as PEM strings.

mod access;
mod cache;
mod data_policy;
mod dataset;
mod keys;
mod principal;
mod stamp;
mod statement_limits;

pub use access::{
    ACCESS_HEADER, AccessReport, DeniedColumn, MAX_ACCESS_REPORT_BYTES, REPORT_HEADER, ROWS_HEADER, ReadColumns,
};
pub use cache::ExpiringCache;
pub use data_policy::{ColumnMask, ColumnType, Comparison, DatasetPolicy, LikePart, Mask, RowFilter, like_pattern};
pub use dataset::{dataset_id, write_dataset_id};
pub use keys::{KeyError, StampKeyPair, generate_stamp_keypair, key_id};
pub use principal::{AuthMethod, Principal, PrincipalKind};
pub use stamp::{
    Grant, MAX_STAMP_LEN, MAX_STAMP_LIFETIME_SECS, MIN_STAMP_LIFETIME_SECS, StampError, StampIssuer, StampSigner,
    StampVerifier, VerifiedStamp,
};
pub use statement_limits::{LIMIT_HEADER, OnExceed, STATEMENT_LIMITS, StatementLimits, TRUNCATED_HEADER};

/// Header (HTTP) and metadata key (gRPC) carrying the signed identity stamp.
pub const STAMP_HEADER: &str = "x-portcullis-stamp";

/// Header carrying the request id beside the stamp (not signed: it is for correlation only).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Whether a client-sent request id may be kept: 1 to 128 characters of `[A-Za-z0-9-_.:]`,
/// so it is safe to log and to echo. Gateway and engine apply the same rule.
pub fn is_valid_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= 128 && id.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

/// Whether a key of the engine's `columns:` is a pattern (`*_ssn`) rather than a column's
/// name: it has `*`, `?` or `[`. The gateway decides patterns, the engine expands them to
/// the columns they match; both read keys by this one rule.
pub fn is_column_pattern(key: &str) -> bool {
    key.contains(['*', '?', '['])
}

/// The tables the engine registers with `demo_data: true`; the gateway, reading the engine's
/// file (`authorization.engine_config`), knows them as served by these names.
pub const DEMO_TABLES: [&str; 2] = ["demo.customers", "demo.orders"];

/// The audience the engine expects unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "portcullis-engine";

#[cfg(test)]
mod tests {
    #[test]
    fn request_id_rule() {
        assert!(super::is_valid_request_id(b"req-42_a.b:c"));
        for bad in [&b""[..], b"has space", b"new\nline", &[b'a'; 129]] {
            assert!(!super::is_valid_request_id(bad));
        }
    }
}
