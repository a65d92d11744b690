//! Signed identity stamps.
//!
//! Wire format (one header value, ASCII):
//!
//! ```text
//! v1.<key id>.<base64url(JSON claims)>.<base64url(Ed25519 signature)>
//! ```
//!
//! The signature covers `v1.<key id>.<claims>` exactly as sent, so nothing is parsed before
//! it is verified except the version and key id. The claims are the principal, the audience,
//! and issued-at / expiry in Unix seconds; a stamp lives at most
//! [`MAX_STAMP_LIFETIME_SECS`]. A stamp for a catalog listing also carries `catalog`: the
//! datasets (`catalog.schema.table`) policy lets the caller see, so the engine lists only
//! those (it has no policy of its own, and lists nothing when the claim is absent). A stamp
//! may carry `policy`: a fingerprint of the policy set that allowed the request. The engine
//! records it in the Flight tickets and prepared statements it issues and refuses to run one
//! presented under another fingerprint, so a policy change reaches what was issued before it.
//! And `scope`: the datasets ([`crate::dataset_id`]) policy allowed this request's statement
//! to touch. The engine refuses to resolve any other table, so where the gateway's reading of
//! the SQL and the engine's differ, the difference can only refuse (absent: none). And
//! `limits`: what the caller's statements may take ([`StatementLimits`]; absent: the
//! engine's own limits only).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::cache::ExpiringCache;
use crate::data_policy::DatasetPolicy;
use crate::keys::{self, KeyError};
use crate::principal::Principal;
use crate::statement_limits::StatementLimits;

/// A stamp lives at most this long: short enough that a leaked stamp is nearly useless.
pub const MAX_STAMP_LIFETIME_SECS: u64 = 60;

/// And at least this long: the issuer reissues a cached stamp once a quarter of its life is
/// left, which must leave whole seconds for clock skew and a slow request.
pub const MIN_STAMP_LIFETIME_SECS: u64 = 4;

/// Longer stamps are refused before any parsing (a principal with many groups still fits).
pub const MAX_STAMP_LEN: usize = 16 * 1024;

const VERSION: &str = "v1";
const SIGNATURE_LEN: usize = 64;

/// Why a stamp was refused. The message names the category, never the stamp itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("identity stamp missing")]
    Missing,
    #[error("identity stamp malformed: {0}")]
    Malformed(&'static str),
    #[error("identity stamp too large (over {MAX_STAMP_LEN} bytes)")]
    Oversized,
    #[error("identity stamp signed by an unknown key")]
    UnknownKey,
    #[error("identity stamp signature invalid")]
    BadSignature,
    #[error("identity stamp for another audience")]
    WrongAudience,
    #[error("identity stamp expired")]
    Expired,
    #[error("identity stamp not yet valid")]
    NotYetValid,
    #[error("identity stamp lifetime exceeds {MAX_STAMP_LIFETIME_SECS} s")]
    LifetimeTooLong,
    #[error("identity stamp could not be signed: {0}")]
    Signing(&'static str),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims<A, P, C, D, L> {
    aud: A,
    iat: u64,
    exp: u64,
    principal: P,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    catalog: Option<C>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<A>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<C>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<D>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limits: Option<L>,
}

/// What a stamp grants beyond the caller's identity (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Grant<'a> {
    /// The datasets a catalog listing may show; `None` when the request lists nothing.
    pub catalog: Option<&'a [String]>,
    /// The datasets the request's statement may touch.
    pub scope: &'a [String],
    /// The fingerprint of the policy set that allowed the request.
    pub policy: Option<&'a str>,
    /// What policy decided about the rows and columns of the datasets in `scope` (only those
    /// it restricts).
    pub data: &'a [DatasetPolicy],
    /// What the caller's statements may take.
    pub limits: Option<&'a StatementLimits>,
}

/// A stamp that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedStamp {
    pub principal: Arc<Principal>,
    pub issued_at: u64,
    pub expires_at: u64,
    /// The datasets a catalog listing may show (see the module docs); `None` when the
    /// stamp was not issued for a listing.
    pub catalog: Option<Arc<[String]>>,
    /// The fingerprint of the policy set that allowed the request (see the module docs).
    pub policy: Option<Arc<str>>,
    /// The datasets the request's statement may touch (see the module docs); empty when the
    /// claim is absent.
    pub scope: Arc<[String]>,
    /// The row and column decisions for the datasets in `scope` that have one (see
    /// [`crate::DatasetPolicy`]); empty when the claim is absent.
    pub data: Arc<[DatasetPolicy]>,
    /// What the caller's statements may take; `None` when the claim is absent.
    pub limits: Option<Arc<StatementLimits>>,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Signs stamps. Gateway only.
pub struct StampSigner {
    key: Ed25519KeyPair,
    key_id: String,
    audience: String,
}

impl StampSigner {
    /// A signer from a PEM PKCS#8 Ed25519 private key.
    pub fn from_pem(private_pkcs8_pem: &[u8], audience: impl Into<String>) -> Result<Self, KeyError> {
        use aws_lc_rs::signature::KeyPair as _;
        let key = keys::keypair_from_pem(private_pkcs8_pem)?;
        let key_id = keys::key_id(key.public_key().as_ref());
        Ok(Self { key, key_id, audience: audience.into() })
    }

    /// The key id stamped into every stamp.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs a stamp for `principal` that grants nothing beyond its identity, valid from
    /// `issued_at` for `lifetime_secs`.
    pub fn sign(&self, principal: &Principal, issued_at: u64, lifetime_secs: u64) -> Result<String, StampError> {
        self.sign_with(principal, Grant::default(), issued_at, lifetime_secs)
    }

    /// [`Self::sign`], for a catalog listing that may show `catalog`.
    pub fn sign_with_catalog(
        &self,
        principal: &Principal,
        catalog: Option<&[String]>,
        issued_at: u64,
        lifetime_secs: u64,
    ) -> Result<String, StampError> {
        self.sign_with(principal, Grant { catalog, ..Grant::default() }, issued_at, lifetime_secs)
    }

    /// [`Self::sign`], granting `grant`.
    pub fn sign_with(
        &self,
        principal: &Principal,
        grant: Grant<'_>,
        issued_at: u64,
        lifetime_secs: u64,
    ) -> Result<String, StampError> {
        if lifetime_secs > MAX_STAMP_LIFETIME_SECS {
            return Err(StampError::LifetimeTooLong);
        }
        let exp = issued_at + lifetime_secs;
        let Grant { catalog, scope, policy, data, limits } = grant;
        let scope = (!scope.is_empty()).then_some(scope);
        let data = (!data.is_empty()).then_some(data);
        let claims = Claims {
            aud: self.audience.as_str(),
            iat: issued_at,
            exp,
            principal,
            catalog,
            policy,
            scope,
            data,
            limits,
        };
        let json = serde_json::to_vec(&claims).map_err(|_| StampError::Signing("claims do not serialize"))?;
        let mut out = String::with_capacity(8 + self.key_id.len() + json.len() * 4 / 3 + 90);
        out.push_str(VERSION);
        out.push('.');
        out.push_str(&self.key_id);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut out);
        let signature = self.key.sign(out.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut out);
        if out.len() > MAX_STAMP_LEN {
            return Err(StampError::Oversized);
        }
        Ok(out)
    }
}

impl std::fmt::Debug for StampSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StampSigner").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// Issues stamps, reusing a principal's stamp until `refresh_before` seconds ahead of its
/// expiry so the signature (and the engine's verification) is paid about once per
/// principal and statement scope per lifetime. Gateway only.
#[derive(Debug)]
pub struct StampIssuer {
    signer: StampSigner,
    lifetime: u64,
    refresh_before: u64,
    /// Per principal: the stamps issued to it under one policy set, one per scope.
    cache: ExpiringCache<Principal, Arc<Issued>>,
}

/// A principal's stamps under one policy set, the most recently signed last; at most
/// [`SCOPES_PER_PRINCIPAL`] (a caller's statements touch a handful of dataset sets).
#[derive(Debug)]
struct Issued {
    policy: Arc<str>,
    stamps: Vec<IssuedStamp>,
}

#[derive(Debug)]
struct IssuedStamp {
    scope: Arc<[String]>,
    data: Arc<[DatasetPolicy]>,
    limits: Option<Arc<StatementLimits>>,
    reuse_until: u64,
    stamp: Arc<str>,
}

/// How many scopes' stamps are kept per principal; past it the oldest is signed again.
const SCOPES_PER_PRINCIPAL: usize = 32;

impl StampIssuer {
    /// `lifetime` is held within [`MIN_STAMP_LIFETIME_SECS`]..=[`MAX_STAMP_LIFETIME_SECS`]
    /// (configuration is checked against the same bounds); a stamp is reissued once less
    /// than a quarter of its lifetime is left, leaving room for clock skew and slow requests.
    pub fn new(signer: StampSigner, lifetime_secs: u64, capacity: usize) -> Self {
        let lifetime = lifetime_secs.clamp(MIN_STAMP_LIFETIME_SECS, MAX_STAMP_LIFETIME_SECS);
        Self { signer, lifetime, refresh_before: lifetime / 4, cache: ExpiringCache::new(capacity) }
    }

    /// A valid stamp for `principal` allowed by the policy set `policy` (its fingerprint) to
    /// touch the datasets `scope` under the row and column decisions `data` and the statement
    /// limits `limits`, from the cache when one has enough life left and names the same set,
    /// scope, decisions and limits.
    pub fn stamp_for(
        &self,
        principal: &Principal,
        policy: &Arc<str>,
        scope: &Arc<[String]>,
        data: &Arc<[DatasetPolicy]>,
        limits: &Option<Arc<StatementLimits>>,
    ) -> Result<Arc<str>, StampError> {
        self.stamp_for_at(principal, policy, scope, data, limits, unix_now())
    }

    /// [`Self::stamp_for`] at a given time (for tests and benchmarks).
    pub fn stamp_for_at(
        &self,
        principal: &Principal,
        policy: &Arc<str>,
        scope: &Arc<[String]>,
        data: &Arc<[DatasetPolicy]>,
        limits: &Option<Arc<StatementLimits>>,
        now: u64,
    ) -> Result<Arc<str>, StampError> {
        let same = |s: &IssuedStamp| {
            (Arc::ptr_eq(&s.scope, scope) || s.scope == *scope)
                && (Arc::ptr_eq(&s.data, data) || s.data == *data)
                && s.limits == *limits
        };
        let issued = self.cache.get(principal, now).filter(|issued| issued.policy == *policy);
        if let Some(hit) =
            issued.as_ref().and_then(|issued| issued.stamps.iter().find(|s| now < s.reuse_until && same(s)))
        {
            return Ok(Arc::clone(&hit.stamp));
        }
        let grant = Grant { catalog: None, scope, policy: Some(policy), data, limits: limits.as_deref() };
        let stamp: Arc<str> = self.signer.sign_with(principal, grant, now, self.lifetime)?.into();
        let reuse_until = now + self.lifetime - self.refresh_before;
        // Keep this set's other scopes still worth reusing, the oldest dropped when full.
        let mut stamps: Vec<IssuedStamp> = Vec::new();
        if let Some(issued) = issued {
            let kept = issued.stamps.iter().filter(|s| now < s.reuse_until && !same(s));
            let kept: Vec<&IssuedStamp> = kept.collect();
            let skip = kept.len().saturating_sub(SCOPES_PER_PRINCIPAL - 1);
            stamps.extend(kept.into_iter().skip(skip).map(|s| IssuedStamp {
                scope: Arc::clone(&s.scope),
                data: Arc::clone(&s.data),
                limits: s.limits.clone(),
                reuse_until: s.reuse_until,
                stamp: Arc::clone(&s.stamp),
            }));
        }
        stamps.push(IssuedStamp {
            scope: Arc::clone(scope),
            data: Arc::clone(data),
            limits: limits.clone(),
            reuse_until,
            stamp: Arc::clone(&stamp),
        });
        let until = stamps.iter().map(|s| s.reuse_until).max().unwrap_or(reuse_until);
        self.cache.insert(principal.clone(), Arc::new(Issued { policy: Arc::clone(policy), stamps }), until, now);
        Ok(stamp)
    }

    /// A fresh stamp for a catalog listing that may show `catalog` (not cached: listings
    /// are rare and the list depends on the request's context).
    pub fn catalog_stamp(
        &self,
        principal: &Principal,
        catalog: &[String],
        scope: &[String],
        policy: &str,
        data: &[DatasetPolicy],
        limits: Option<&StatementLimits>,
    ) -> Result<String, StampError> {
        let grant = Grant { catalog: Some(catalog), scope, policy: Some(policy), data, limits };
        self.signer.sign_with(principal, grant, unix_now(), self.lifetime)
    }
}

/// Verifies stamps against a set of public keys (several during a key rotation), with a
/// bounded cache of verified stamps keyed by the stamp's SHA-256. Engine side.
pub struct StampVerifier {
    keys: Vec<(String, UnparsedPublicKey<Vec<u8>>)>,
    audience: String,
    leeway: u64,
    cache: ExpiringCache<[u8; 32], Arc<VerifiedStamp>>,
}

impl std::fmt::Debug for StampVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("StampVerifier").field("key_ids", &ids).field("audience", &self.audience).finish_non_exhaustive()
    }
}

impl StampVerifier {
    /// A verifier trusting each PEM `PUBLIC KEY` in `public_keys_pem`.
    ///
    /// `leeway_secs` tolerates clock skew between gateway and engine (they normally share a
    /// host, so a few seconds); `cache_capacity` bounds the verified-stamp cache.
    pub fn from_pems<'a>(
        public_keys_pem: impl IntoIterator<Item = &'a [u8]>,
        audience: impl Into<String>,
        leeway_secs: u64,
        cache_capacity: usize,
    ) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for pem in public_keys_pem {
            let raw = keys::public_key_from_pem(pem)?;
            keys.push((keys::key_id(&raw), UnparsedPublicKey::new(&ED25519, raw)));
        }
        if keys.is_empty() {
            return Err(KeyError::Pem("PUBLIC KEY", "no public key given".into()));
        }
        Ok(Self { keys, audience: audience.into(), leeway: leeway_secs, cache: ExpiringCache::new(cache_capacity) })
    }

    /// The ids of the trusted keys, for the startup log.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Verifies `stamp` now.
    pub fn verify(&self, stamp: &str) -> Result<Arc<VerifiedStamp>, StampError> {
        self.verify_at(stamp, unix_now())
    }

    /// Verifies `stamp` at `now` (Unix seconds). A cached stamp is still refused once it has
    /// expired.
    pub fn verify_at(&self, stamp: &str, now: u64) -> Result<Arc<VerifiedStamp>, StampError> {
        if stamp.is_empty() {
            return Err(StampError::Missing);
        }
        if stamp.len() > MAX_STAMP_LEN {
            return Err(StampError::Oversized);
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest::digest(&digest::SHA256, stamp.as_bytes()).as_ref());
        if let Some(hit) = self.cache.get(&hash, now.saturating_sub(self.leeway)) {
            return Ok(hit);
        }
        let verified = Arc::new(self.verify_uncached(stamp, now)?);
        // Cache until the stamp's own expiry (plus leeway, as verify_uncached allows).
        self.cache.insert(hash, Arc::clone(&verified), verified.expires_at, now.saturating_sub(self.leeway));
        Ok(verified)
    }

    fn verify_uncached(&self, stamp: &str, now: u64) -> Result<VerifiedStamp, StampError> {
        let (signed, signature_b64) =
            stamp.rsplit_once('.').ok_or(StampError::Malformed("expected 4 dot-separated parts"))?;
        let mut parts = signed.splitn(3, '.');
        let (Some(version), Some(key_id), Some(claims_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StampError::Malformed("expected 4 dot-separated parts"));
        };
        if version != VERSION {
            return Err(StampError::Malformed("unsupported version"));
        }
        if claims_b64.contains('.') {
            return Err(StampError::Malformed("expected 4 dot-separated parts"));
        }
        let key = self.keys.iter().find(|(id, _)| id == key_id).map(|(_, key)| key).ok_or(StampError::UnknownKey)?;
        let signature =
            URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| StampError::Malformed("signature is not base64url"))?;
        if signature.len() != SIGNATURE_LEN {
            return Err(StampError::Malformed("signature has the wrong length"));
        }
        key.verify(signed.as_bytes(), &signature).map_err(|_| StampError::BadSignature)?;

        // Authentic from here on: only now parse what the gateway signed.
        let json = URL_SAFE_NO_PAD.decode(claims_b64).map_err(|_| StampError::Malformed("claims are not base64url"))?;
        let claims: Claims<String, Principal, Vec<String>, Vec<DatasetPolicy>, StatementLimits> =
            serde_json::from_slice(&json).map_err(|_| StampError::Malformed("claims are not valid JSON"))?;
        if claims.aud != self.audience {
            return Err(StampError::WrongAudience);
        }
        if claims.exp < claims.iat || claims.exp - claims.iat > MAX_STAMP_LIFETIME_SECS {
            return Err(StampError::LifetimeTooLong);
        }
        if claims.iat > now + self.leeway {
            return Err(StampError::NotYetValid);
        }
        if now >= claims.exp + self.leeway {
            return Err(StampError::Expired);
        }
        Ok(VerifiedStamp {
            principal: Arc::new(claims.principal),
            issued_at: claims.iat,
            expires_at: claims.exp,
            catalog: claims.catalog.map(Arc::from),
            policy: claims.policy.map(Arc::from),
            scope: claims.scope.map_or_else(|| Arc::from(Vec::new()), Arc::from),
            data: claims.data.map_or_else(|| Arc::from(Vec::new()), Arc::from),
            limits: claims.limits.map(Arc::new),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_stamp_keypair;
    use crate::principal::{AuthMethod, PrincipalKind};

    const AUD: &str = "portcullis-engine";
    const NOW: u64 = 1_800_000_000;

    fn alice() -> Principal {
        let mut p = Principal::new(PrincipalKind::User, "alice", "sub-123", AuthMethod::Oidc);
        p.email = Some("alice@acme.example".into());
        p.groups = vec!["acme".into(), "analysts".into()];
        p.issuer = Some("https://idp.example".into());
        p
    }

    fn setup() -> (StampSigner, StampVerifier) {
        let pair = generate_stamp_keypair().unwrap();
        let signer = StampSigner::from_pem(pair.private_pkcs8_pem.as_bytes(), AUD).unwrap();
        let verifier = StampVerifier::from_pems([pair.public_spki_pem.as_bytes()], AUD, 0, 64).unwrap();
        (signer, verifier)
    }

    #[test]
    fn round_trip() {
        let (signer, verifier) = setup();
        let stamp = signer.sign(&alice(), NOW, 60).unwrap();
        let verified = verifier.verify_at(&stamp, NOW + 1).unwrap();
        assert_eq!(*verified.principal, alice());
        assert_eq!(verified.expires_at, NOW + 60);
        // Second call is served from the cache and returns the same value.
        let again = verifier.verify_at(&stamp, NOW + 2).unwrap();
        assert!(Arc::ptr_eq(&verified, &again));
    }

    #[test]
    fn catalog_claim_round_trips_and_is_absent_otherwise() {
        let (signer, verifier) = setup();
        let visible = vec!["datafusion.acme.orders".to_string()];
        let stamp = signer.sign_with_catalog(&alice(), Some(&visible), NOW, 60).unwrap();
        let verified = verifier.verify_at(&stamp, NOW).unwrap();
        assert_eq!(verified.catalog.as_deref(), Some(&visible[..]));
        let plain = verifier.verify_at(&signer.sign(&alice(), NOW, 60).unwrap(), NOW).unwrap();
        assert_eq!(plain.catalog, None);
    }

    #[test]
    fn missing_and_oversized() {
        let (_, verifier) = setup();
        assert_eq!(verifier.verify_at("", NOW), Err(StampError::Missing));
        let huge = "v1.".to_string() + &"a".repeat(MAX_STAMP_LEN);
        assert_eq!(verifier.verify_at(&huge, NOW), Err(StampError::Oversized));
    }

    #[test]
    fn malformed() {
        let (signer, verifier) = setup();
        let good = signer.sign(&alice(), NOW, 60).unwrap();
        let cases = [
            "garbage".to_string(),
            "v1.abc".to_string(),
            good.replacen("v1.", "v2.", 1),
            format!("{good}.extra"),
            format!("{}.!!!", good.rsplit_once('.').unwrap().0),
            format!("{}.{}", good.rsplit_once('.').unwrap().0, URL_SAFE_NO_PAD.encode([0u8; 12])),
        ];
        for case in cases {
            assert!(
                matches!(verifier.verify_at(&case, NOW), Err(StampError::Malformed(_) | StampError::UnknownKey)),
                "accepted or misclassified: {case}"
            );
        }
    }

    #[test]
    fn bad_signature() {
        let (signer, verifier) = setup();
        let stamp = signer.sign(&alice(), NOW, 60).unwrap();
        // Swap in claims for another principal, keeping the original signature.
        let mut mallory = alice();
        mallory.id = "mallory".into();
        let forged_claims = signer.sign(&mallory, NOW, 60).unwrap();
        let parts: Vec<&str> = stamp.split('.').collect();
        let forged_parts: Vec<&str> = forged_claims.split('.').collect();
        let forged = format!("{}.{}.{}.{}", parts[0], parts[1], forged_parts[2], parts[3]);
        assert_eq!(verifier.verify_at(&forged, NOW), Err(StampError::BadSignature));
        // A flipped signature byte.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[3]).unwrap();
        sig[0] ^= 1;
        let flipped = format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(verifier.verify_at(&flipped, NOW), Err(StampError::BadSignature));
    }

    #[test]
    fn wrong_key() {
        let (_, verifier) = setup();
        let (other_signer, _) = setup();
        let stamp = other_signer.sign(&alice(), NOW, 60).unwrap();
        assert_eq!(verifier.verify_at(&stamp, NOW), Err(StampError::UnknownKey));
        // Same key id claimed, but signed by the other key.
        let relabelled = stamp.replacen(other_signer.key_id(), verifier.key_ids().next().unwrap(), 1);
        assert_eq!(verifier.verify_at(&relabelled, NOW), Err(StampError::BadSignature));
    }

    #[test]
    fn wrong_audience() {
        let pair = generate_stamp_keypair().unwrap();
        let signer = StampSigner::from_pem(pair.private_pkcs8_pem.as_bytes(), "some-other-service").unwrap();
        let verifier = StampVerifier::from_pems([pair.public_spki_pem.as_bytes()], AUD, 0, 8).unwrap();
        let stamp = signer.sign(&alice(), NOW, 60).unwrap();
        assert_eq!(verifier.verify_at(&stamp, NOW), Err(StampError::WrongAudience));
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let (signer, verifier) = setup();
        let stamp = signer.sign(&alice(), NOW, 30).unwrap();
        assert_eq!(verifier.verify_at(&stamp, NOW + 30), Err(StampError::Expired));
        assert_eq!(verifier.verify_at(&stamp, NOW - 10), Err(StampError::NotYetValid));
    }

    #[test]
    fn cached_stamp_is_refused_once_expired() {
        let (signer, verifier) = setup();
        let stamp = signer.sign(&alice(), NOW, 30).unwrap();
        assert!(verifier.verify_at(&stamp, NOW).is_ok());
        assert!(verifier.verify_at(&stamp, NOW + 29).is_ok());
        assert_eq!(verifier.verify_at(&stamp, NOW + 30), Err(StampError::Expired));
    }

    #[test]
    fn lifetime_is_capped() {
        let (signer, _) = setup();
        assert_eq!(signer.sign(&alice(), NOW, 61), Err(StampError::LifetimeTooLong));
    }

    #[test]
    fn leeway_tolerates_small_skew() {
        let pair = generate_stamp_keypair().unwrap();
        let signer = StampSigner::from_pem(pair.private_pkcs8_pem.as_bytes(), AUD).unwrap();
        let verifier = StampVerifier::from_pems([pair.public_spki_pem.as_bytes()], AUD, 5, 8).unwrap();
        let stamp = signer.sign(&alice(), NOW, 30).unwrap();
        assert!(verifier.verify_at(&stamp, NOW - 5).is_ok());
        assert!(verifier.verify_at(&stamp, NOW + 34).is_ok());
        assert_eq!(verifier.verify_at(&stamp, NOW + 35), Err(StampError::Expired));
    }

    #[test]
    fn rotation_accepts_either_key() {
        let old = generate_stamp_keypair().unwrap();
        let new = generate_stamp_keypair().unwrap();
        let verifier =
            StampVerifier::from_pems([old.public_spki_pem.as_bytes(), new.public_spki_pem.as_bytes()], AUD, 0, 8)
                .unwrap();
        for pair in [&old, &new] {
            let signer = StampSigner::from_pem(pair.private_pkcs8_pem.as_bytes(), AUD).unwrap();
            assert!(verifier.verify_at(&signer.sign(&alice(), NOW, 60).unwrap(), NOW).is_ok());
        }
    }

    #[test]
    fn issuer_reuses_until_near_expiry_or_a_policy_change() {
        let (signer, verifier) = setup();
        let issuer = StampIssuer::new(signer, 60, 16);
        let policy: Arc<str> = Arc::from("p1");
        let none: Arc<[String]> = Arc::from(Vec::new());
        let open: Arc<[DatasetPolicy]> = Arc::from(Vec::new());
        let first = issuer.stamp_for_at(&alice(), &policy, &none, &open, &None, NOW).unwrap();
        let reused = issuer.stamp_for_at(&alice(), &policy, &none, &open, &None, NOW + 44).unwrap();
        assert!(Arc::ptr_eq(&first, &reused));
        let fresh = issuer.stamp_for_at(&alice(), &policy, &none, &open, &None, NOW + 45).unwrap();
        assert!(!Arc::ptr_eq(&first, &fresh));
        // Every stamp handed out still has at least a quarter of its life left.
        assert!(verifier.verify_at(&reused, NOW + 44).is_ok());
        assert_eq!(verifier.verify_at(&reused, NOW).unwrap().policy.as_deref(), Some("p1"));
        // Another policy set: a new stamp naming it, not the cached one.
        let changed = issuer.stamp_for_at(&alice(), &Arc::from("p2"), &none, &open, &None, NOW + 46).unwrap();
        assert!(!Arc::ptr_eq(&fresh, &changed));
        assert_eq!(verifier.verify_at(&changed, NOW + 46).unwrap().policy.as_deref(), Some("p2"));
        // Another principal gets its own stamp.
        let mut bob = alice();
        bob.id = "bob".into();
        let bobs = issuer.stamp_for_at(&bob, &policy, &none, &open, &None, NOW).unwrap();
        assert_eq!(verifier.verify_at(&bobs, NOW).unwrap().principal.id, "bob");
    }

    #[test]
    fn issuer_keeps_one_stamp_per_scope_and_each_names_its_own() {
        let (signer, verifier) = setup();
        let issuer = StampIssuer::new(signer, 60, 16);
        let policy: Arc<str> = Arc::from("p1");
        let bank: Arc<[String]> = Arc::from(vec!["datafusion.public.bank".to_string()]);
        let orders: Arc<[String]> = Arc::from(vec!["datafusion.acme.orders".to_string()]);
        let open: Arc<[DatasetPolicy]> = Arc::from(Vec::new());
        let for_bank = issuer.stamp_for_at(&alice(), &policy, &bank, &open, &None, NOW).unwrap();
        let for_orders = issuer.stamp_for_at(&alice(), &policy, &orders, &open, &None, NOW + 1).unwrap();
        assert_eq!(verifier.verify_at(&for_bank, NOW).unwrap().scope, bank);
        assert_eq!(verifier.verify_at(&for_orders, NOW + 1).unwrap().scope, orders);
        // Both are reused (an equal scope in another allocation too).
        let again: Arc<[String]> = Arc::from(bank.to_vec());
        assert!(Arc::ptr_eq(
            &for_bank,
            &issuer.stamp_for_at(&alice(), &policy, &again, &open, &None, NOW + 2).unwrap()
        ));
        assert!(Arc::ptr_eq(
            &for_orders,
            &issuer.stamp_for_at(&alice(), &policy, &orders, &open, &None, NOW + 2).unwrap()
        ));
        // Other row and column decisions for the same scope: another stamp, carrying them.
        let masked: Arc<[DatasetPolicy]> = Arc::from(vec![DatasetPolicy {
            dataset: "datafusion.public.bank".into(),
            denied: vec!["salary".into()],
            masks: Vec::new(),
            unmasked: Vec::new(),
            rows: None,
            row_policies: Vec::new(),
        }]);
        let restricted = issuer.stamp_for_at(&alice(), &policy, &bank, &masked, &None, NOW + 2).unwrap();
        assert!(!Arc::ptr_eq(&for_bank, &restricted));
        assert_eq!(verifier.verify_at(&restricted, NOW + 2).unwrap().data, masked);
        assert!(verifier.verify_at(&for_bank, NOW + 2).unwrap().data.is_empty());
        // A stamp without the claim grants no dataset.
        let plain = verifier.verify_at(&issuer.signer.sign(&alice(), NOW, 60).unwrap(), NOW).unwrap();
        assert!(plain.scope.is_empty());
        // Bounded: past the limit the oldest scope is signed again, the newest kept.
        for i in 0..SCOPES_PER_PRINCIPAL + 3 {
            let scope: Arc<[String]> = Arc::from(vec![format!("datafusion.public.t{i}")]);
            issuer.stamp_for_at(&alice(), &policy, &scope, &open, &None, NOW + 3).unwrap();
        }
        let issued = issuer.cache.get(&alice(), NOW + 3).unwrap();
        assert_eq!(issued.stamps.len(), SCOPES_PER_PRINCIPAL);
        assert_eq!(*issued.stamps.last().unwrap().scope, [format!("datafusion.public.t{}", SCOPES_PER_PRINCIPAL + 2)]);
    }

    #[test]
    fn limits_are_signed_and_distinguish_cached_stamps() {
        let (signer, verifier) = setup();
        let issuer = StampIssuer::new(signer, 60, 16);
        let policy: Arc<str> = Arc::from("p1");
        let scope: Arc<[String]> = Arc::from(vec!["datafusion.public.bank".to_string()]);
        let open: Arc<[DatasetPolicy]> = Arc::from(Vec::new());
        let capped = Some(Arc::new(StatementLimits {
            tier: "group:analysts".into(),
            statement_timeout_secs: Some(5),
            memory_percent: Some(10),
            max_result_rows: Some(1000),
            max_result_bytes: None,
            on_exceed: crate::statement_limits::OnExceed::Fail,
        }));
        let plain = issuer.stamp_for_at(&alice(), &policy, &scope, &open, &None, NOW).unwrap();
        let limited = issuer.stamp_for_at(&alice(), &policy, &scope, &open, &capped, NOW).unwrap();
        assert_ne!(plain, limited, "a change of limits is a new stamp");
        assert_eq!(verifier.verify_at(&limited, NOW).unwrap().limits, capped);
        assert_eq!(verifier.verify_at(&plain, NOW).unwrap().limits, None);
        let again = issuer.stamp_for_at(&alice(), &policy, &scope, &open, &capped, NOW + 1).unwrap();
        assert!(Arc::ptr_eq(&limited, &again));
    }

    #[test]
    fn the_decision_for_a_wide_table_fits() {
        // 300 columns, 100 of them tagged: 60 masked, 20 unmasked, 20 denied, a row filter.
        let (signer, verifier) = setup();
        let name = |i: usize| format!("customer_column_{i:03}");
        let policy = DatasetPolicy {
            dataset: "datafusion.sales.customers".into(),
            denied: (0..20).map(name).collect(),
            masks: (20..80)
                .map(|i| crate::data_policy::ColumnMask { column: name(i), mask: crate::data_policy::Mask::KeyedHash })
                .collect(),
            unmasked: (80..100).map(name).collect(),
            rows: Some(crate::data_policy::RowFilter::IsTrue(Box::new(crate::data_policy::RowFilter::Compare {
                op: crate::data_policy::Comparison::Eq,
                left: Box::new(crate::data_policy::RowFilter::Column("tenant".into())),
                right: Box::new(crate::data_policy::RowFilter::String("acme".into())),
            }))),
            row_policies: Vec::new(),
        };
        let scope = vec![policy.dataset.clone()];
        let data = [policy];
        let grant = Grant { scope: &scope, data: &data, ..Grant::default() };
        let stamp = signer.sign_with(&alice(), grant, NOW, 60).unwrap();
        assert!(stamp.len() < 12 * 1024, "{} bytes", stamp.len());
        assert_eq!(*verifier.verify_at(&stamp, NOW).unwrap().data, data);
    }
}
