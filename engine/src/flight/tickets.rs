//! Flight statement tickets: self-contained and sealed, so issuing one costs no server memory.
//!
//! ```text
//! 0x05 | expiry (u64 BE, Unix s) | caller fingerprint (32) | policy digest (32) | listing | scope
//!      | decisions length (u32 BE) | decisions (JSON) | SQL | HMAC-SHA256 tag (32)
//! listing, scope = 0x00 | count (u16 BE) | count × (length (u16 BE) | catalog.schema.table)
//!                | 0x01 (everything: development mode)
//! ```
//!
//! The listing and scope are the ones the planning request's stamp carried (see `listing`
//! and `scope`), so a `SHOW TABLES` planned by GetFlightInfo lists the same tables when its
//! ticket is fetched, and the fetch resolves only the datasets the planning call was allowed,
//! under the row and column decisions it was planned with (see `data_policy`).
//!
//! The key is random per engine process (tickets do not survive a restart, which clients
//! already expect of Flight tickets). The fingerprint is a SHA-256 over the caller's kind, id,
//! subject and issuer, so a ticket presented by anyone else is refused, and the tag is checked
//! in constant time before anything else is read. The policy digest is a SHA-256 of the
//! gateway's policy-set fingerprint in the planning request's stamp: a ticket fetched under
//! another set (the policies changed since it was issued) is refused as stale.

use aws_lc_rs::{digest, hmac, rand};
use bytes::Bytes;
use identity::Principal;

use crate::caller::PolicyFingerprint;
use crate::caller::listing::Listing;
use crate::caller::scope::Scope;
use crate::error::EngineError;

const VERSION: u8 = 5;
const HEADER: usize = 1 + 8 + 32 + 32;
const TAG: usize = 32;

pub struct TicketSealer {
    key: hmac::Key,
    ttl_secs: u64,
}

impl std::fmt::Debug for TicketSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSealer").field("ttl_secs", &self.ttl_secs).finish_non_exhaustive()
    }
}

/// Who a ticket is for: the fields that make two stamps the same caller.
fn fingerprint(caller: &Principal) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [caller.kind.as_str(), &caller.id, &caller.subject, caller.issuer.as_deref().unwrap_or("")] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl TicketSealer {
    pub fn new(ttl_secs: u64) -> Result<Self, EngineError> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rand::SystemRandom::new())
            .map_err(|_| EngineError::Internal("cannot generate the ticket key".into()))?;
        Ok(Self { key, ttl_secs })
    }

    pub fn seal(&self, caller: &Principal, policy: &PolicyFingerprint, planned: &Planned) -> Bytes {
        self.seal_at(caller, policy, planned, process::unix_secs())
    }

    fn seal_at(&self, caller: &Principal, policy: &PolicyFingerprint, planned: &Planned, now: u64) -> Bytes {
        let mut out = Vec::with_capacity(HEADER + planned.sql.len() + TAG + 6);
        out.push(VERSION);
        out.extend_from_slice(&(now + self.ttl_secs).to_be_bytes());
        out.extend_from_slice(&fingerprint(caller));
        out.extend_from_slice(digest::digest(&digest::SHA256, policy.as_bytes()).as_ref());
        let listing = match &planned.listing {
            Listing::Everything => None,
            Listing::Only(names) => Some(names),
        };
        write_names(&mut out, listing);
        write_names(&mut out, planned.scope.names());
        // Decisions the gateway signed into a stamp of at most 16 KiB: the length fits.
        let data = serde_json::to_vec(&*planned.data).unwrap_or_default();
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&data);
        out.extend_from_slice(planned.sql.as_bytes());
        let tag = hmac::sign(&self.key, &out);
        out.extend_from_slice(tag.as_ref());
        Bytes::from(out)
    }

    /// What a ticket `caller` may use under the policy set `policy` planned.
    pub fn open(&self, ticket: &[u8], caller: &Principal, policy: &PolicyFingerprint) -> Result<Planned, EngineError> {
        self.open_at(ticket, caller, policy, process::unix_secs())
    }

    fn open_at(
        &self,
        ticket: &[u8],
        caller: &Principal,
        policy: &PolicyFingerprint,
        now: u64,
    ) -> Result<Planned, EngineError> {
        let invalid = || EngineError::NotFound("invalid or expired Flight ticket".into());
        if ticket.len() < HEADER + TAG || ticket.first() != Some(&VERSION) {
            return Err(invalid());
        }
        let (body, tag) = ticket.split_at(ticket.len() - TAG);
        hmac::verify(&self.key, body, tag).map_err(|_| invalid())?;
        let (header, rest) = body.split_at(HEADER);
        let expiry = header.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok()).ok_or_else(invalid)?;
        if now >= u64::from_be_bytes(expiry) {
            return Err(invalid());
        }
        if header.get(9..41) != Some(fingerprint(caller).as_slice()) {
            return Err(EngineError::Forbidden("this Flight ticket belongs to another principal".into()));
        }
        if header.get(41..) != Some(digest::digest(&digest::SHA256, policy.as_bytes()).as_ref()) {
            return Err(PolicyFingerprint::stale("Flight ticket"));
        }
        let (listing, rest) = read_names(rest).ok_or_else(invalid)?;
        let (scope, rest) = read_names(rest).ok_or_else(invalid)?;
        let (length, rest) = rest.split_at_checked(4).ok_or_else(invalid)?;
        let length = u32::from_be_bytes(<[u8; 4]>::try_from(length).map_err(|_| invalid())?) as usize;
        let (data, sql) = rest.split_at_checked(length).ok_or_else(invalid)?;
        let data: Vec<identity::DatasetPolicy> = serde_json::from_slice(data).map_err(|_| invalid())?;
        Ok(Planned {
            data: data.into(),
            sql: String::from_utf8(sql.to_vec()).map_err(|_| invalid())?.into(),
            listing: listing.map_or(Listing::Everything, Listing::Only),
            scope: scope.map_or(Scope::Everything, Scope::Only),
        })
    }
}

/// A statement as its planning call left it: its SQL, and what that call's stamp let it list
/// and resolve. A ticket or prepared statement runs it with these, not the later call's.
#[derive(Debug, Clone)]
pub struct Planned {
    pub sql: std::sync::Arc<str>,
    pub listing: Listing,
    pub scope: Scope,
    pub data: std::sync::Arc<[identity::DatasetPolicy]>,
}

/// A list of names, or `None` for everything.
fn write_names(out: &mut Vec<u8>, names: Option<&std::sync::Arc<[String]>>) {
    let Some(names) = names else {
        out.push(1);
        return;
    };
    // Names the gateway signed into a stamp of at most 16 KiB: both lengths fit.
    let names: Vec<&String> = names.iter().filter(|n| n.len() <= usize::from(u16::MAX)).collect();
    out.push(0);
    out.extend_from_slice(&u16::try_from(names.len()).unwrap_or(u16::MAX).to_be_bytes());
    for name in names.into_iter().take(usize::from(u16::MAX)) {
        out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
    }
}

/// The names at the start of `rest` (`None`: everything), and what follows them
/// (authenticated already).
#[allow(clippy::type_complexity)]
fn read_names(rest: &[u8]) -> Option<(Option<std::sync::Arc<[String]>>, &[u8])> {
    let (&kind, mut rest) = rest.split_first()?;
    if kind == 1 {
        return Some((None, rest));
    }
    if kind != 0 {
        return None;
    }
    let take = |rest: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let (head, tail) = rest.split_at_checked(n)?;
        *rest = tail;
        Some(head.to_vec())
    };
    let count = u16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?);
    let mut names = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = u16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?);
        names.push(String::from_utf8(take(&mut rest, usize::from(len))?).ok()?);
    }
    Some((Some(names.into()), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::{AuthMethod, PrincipalKind};

    fn user(id: &str) -> Principal {
        Principal::new(PrincipalKind::User, id, id, AuthMethod::Oidc)
    }

    #[test]
    fn round_trip_and_binding() {
        let sealer = TicketSealer::new(60).unwrap();
        let listing = Listing::Only(vec!["datafusion.acme.orders".to_string()].into());
        let scope = Scope::Only(vec!["datafusion.public.bank".to_string(), "datafusion.acme.x".to_string()].into());
        let p1 = PolicyFingerprint(Some("p1".into()));
        let data: std::sync::Arc<[identity::DatasetPolicy]> = vec![identity::DatasetPolicy {
            dataset: "datafusion.public.bank".into(),
            denied: vec!["salary".into()],
            masks: vec![identity::ColumnMask { column: "email".into(), mask: identity::Mask::KeyedHash }],
            unmasked: vec!["phone".into()],
            rows: Some(identity::RowFilter::Bool(false)),
            row_policies: Vec::new(),
        }]
        .into();
        let planned = Planned { sql: "SELECT 1".into(), listing, scope, data: data.clone() };
        let ticket = sealer.seal_at(&user("alice"), &p1, &planned, 1000);
        let opened = sealer.open_at(&ticket, &user("alice"), &p1, 1001).unwrap();
        assert_eq!(&*opened.sql, "SELECT 1");
        let listed = &opened.listing;
        assert!(listed.shows("datafusion", "acme", "orders") && !listed.shows("datafusion", "globex", "orders"));
        assert_eq!(opened.scope.names().map(|n| n.to_vec()), planned.scope.names().map(|n| n.to_vec()));
        assert_eq!(opened.data, data, "the row and column decisions it was planned under");
        let dev = Planned {
            sql: "SELECT 2".into(),
            listing: Listing::Everything,
            scope: Scope::Everything,
            data: Vec::new().into(),
        };
        let everything = sealer.seal_at(&user("alice"), &p1, &dev, 1000);
        let opened = sealer.open_at(&everything, &user("alice"), &p1, 1001).unwrap();
        assert!(&*opened.sql == "SELECT 2" && matches!(opened.listing, Listing::Everything));
        assert!(matches!(opened.scope, Scope::Everything));
        assert!(matches!(sealer.open_at(&ticket, &user("bob"), &p1, 1001), Err(EngineError::Forbidden(_))));
        assert!(matches!(sealer.open_at(&ticket, &user("alice"), &p1, 1060), Err(EngineError::NotFound(_))));
        // Another policy set (or none): stale.
        for other in [PolicyFingerprint(Some("p2".into())), PolicyFingerprint(None)] {
            let error = sealer.open_at(&ticket, &user("alice"), &other, 1001).unwrap_err();
            assert!(error.to_string().contains("policies that have changed"), "{error}");
        }
    }

    #[test]
    fn tampering_and_foreign_keys_are_refused() {
        let sealer = TicketSealer::new(60).unwrap();
        let none = PolicyFingerprint::default();
        let planned = Planned {
            sql: "SELECT 1".into(),
            listing: Listing::nothing(),
            scope: Scope::nothing(),
            data: Vec::new().into(),
        };
        let ticket = sealer.seal_at(&user("alice"), &none, &planned, 1000);
        let mut tampered = ticket.to_vec();
        tampered[HEADER + 12] = b'X'; // change the SQL
        let mut unmasked = ticket.to_vec();
        unmasked[HEADER + 10] = b'{'; // change the decisions
        assert!(matches!(sealer.open_at(&unmasked, &user("alice"), &none, 1001), Err(EngineError::NotFound(_))));
        assert!(matches!(sealer.open_at(&tampered, &user("alice"), &none, 1001), Err(EngineError::NotFound(_))));
        let mut extended = ticket.to_vec();
        extended[1..9].copy_from_slice(&u64::MAX.to_be_bytes()); // extend the expiry
        assert!(matches!(sealer.open_at(&extended, &user("alice"), &none, 1001), Err(EngineError::NotFound(_))));
        let other = TicketSealer::new(60).unwrap();
        assert!(matches!(other.open_at(&ticket, &user("alice"), &none, 1001), Err(EngineError::NotFound(_))));
        assert!(matches!(sealer.open_at(b"short", &user("alice"), &none, 1001), Err(EngineError::NotFound(_))));
    }
}
