//! Sanitize: strip the client's hop-by-hop headers and every inbound header that could claim
//! an identity, before anything reads the request; set `x-forwarded-for` from the socket, and
//! a request id.
//!
//! Hop-by-hop headers go first: a `Connection:` header names headers to drop at this hop, and
//! applied later it would drop the ones the gateway adds (`Connection: x-portcullis-stamp`
//! would remove the stamp, `Connection: x-request-id` the log correlation).
//!
//! Header names are compared case-insensitively with `_` read as `-` (some servers treat
//! them alike, so `X_Principal` must go too). `traceparent` / `tracestate` pass through.

use std::net::SocketAddr;

use http::header::{CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::authz::AuthzError;
use crate::error::GatewayError;

/// Exact names (normalised) that carry identity in common proxies and frameworks.
const IDENTITY_HEADERS: &[&str] = &[
    "x-principal",
    "x-user",
    "x-user-id",
    "x-email",
    "x-groups",
    "x-roles",
    "x-tenant",
    "x-remote-user",
    "remote-user",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-spiffe-id",
    "x-client-cert",
    "x-forwarded-client-cert",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

/// Prefixes (normalised) of identity header families.
const IDENTITY_PREFIXES: &[&str] = &["x-portcullis-", "x-auth-request-", "x-ssl-client-", "x-identity", "x-jwt-"];

fn is_identity_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    if !name.bytes().any(|b| b == b'_') {
        return IDENTITY_HEADERS.contains(&name) || IDENTITY_PREFIXES.iter().any(|p| name.starts_with(p));
    }
    let normalised = name.replace('_', "-");
    IDENTITY_HEADERS.contains(&normalised.as_str()) || IDENTITY_PREFIXES.iter().any(|p| normalised.starts_with(p))
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Connection-level headers (RFC 9110 §7.6.1) besides those `Connection` names, and `te`
/// (kept when it is `te: trailers`, which gRPC needs). Compared as text: no name is built.
fn is_hop_by_hop_or_te(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "transfer-encoding"
            | "upgrade"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
    )
}

/// A random (v4) UUID. Its 122 random bits come from SipHash, keyed once per process from
/// the OS's random source (std's `RandomState`), over a counter: unique, unpredictable
/// without the key, and without a system call or a DRBG call per request.
fn new_request_id() -> HeaderValue {
    use std::hash::BuildHasher;
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEY: LazyLock<std::hash::RandomState> = LazyLock::new(std::hash::RandomState::new);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let high = u128::from(KEY.hash_one((n, 0u8)));
    let low = u128::from(KEY.hash_one((n, 1u8)));
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Builder::from_random_bytes(((high << 64) | low).to_be_bytes()).into_uuid();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text)).unwrap_or(HeaderValue::from_static("invalid"))
}

/// Removes connection-level headers (RFC 9110 §7.6.1) and the headers `Connection` names,
/// keeping `te: trailers` for gRPC. Applied to the client's request before anything is added
/// to it, and to the engine's response. One pass over the names finds whether there is
/// anything to remove (usually nothing), so the common case hashes no name.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop_or_te) {
        return;
    }
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in
        [CONNECTION, TRANSFER_ENCODING, UPGRADE, KEEP_ALIVE, PROXY_CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION]
    {
        headers.remove(name);
    }
    if headers.get(TE).is_some_and(|v| v != "trailers") {
        headers.remove(TE);
    }
}

/// Sanitizes `headers` in place and returns the request id now set on them.
/// Refuses a request whose `host` header names another authority than its target (`:authority`
/// on HTTP/2, an absolute-form target on HTTP/1.1): RFC 9113 §8.3.1 calls it malformed, and a
/// proxy that reads one while the next hop reads the other is routing on an attacker's
/// choice.
pub(super) fn one_authority(parts: &http::request::Parts) -> Result<(), GatewayError> {
    let (Some(authority), Some(host)) = (parts.uri.authority(), parts.headers.get(http::header::HOST)) else {
        return Ok(());
    };
    if host.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes()) {
        return Ok(());
    }
    Err(AuthzError::Malformed("the host header names another authority than the request's :authority".into()).into())
}

pub fn sanitize(headers: &mut HeaderMap, peer: SocketAddr) -> HeaderValue {
    strip_hop_by_hop(headers);
    // Keep the client's request id only when it is a sane token.
    let request_id = headers
        .get(identity::REQUEST_ID_HEADER)
        .filter(|v| identity::is_valid_request_id(v.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id);
    if headers.keys().any(is_identity_header) {
        // Collect first: removing while iterating the map is not possible.
        let doomed: Vec<HeaderName> = headers.keys().filter(|name| is_identity_header(name)).cloned().collect();
        for name in doomed {
            headers.remove(&name);
        }
    }
    headers.insert(identity::REQUEST_ID_HEADER, request_id.clone());
    headers.insert(X_FORWARDED_FOR, ip_header_value(peer.ip()));
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    request_id
}

/// The peer address as a header value, formatted on the stack.
fn ip_header_value(ip: std::net::IpAddr) -> HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 45]; // the longest IPv6 text form
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let written = write!(cursor, "{ip}").map(|()| cursor.position() as usize).unwrap_or(0);
    buf.get(..written)
        .and_then(|text| HeaderValue::from_bytes(text).ok())
        .unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_identity_headers_in_any_spelling() {
        let mut headers = HeaderMap::new();
        for name in [
            "x-portcullis-stamp",
            "X-Portcullis-Anything",
            "x_portcullis_stamp",
            "X-Principal",
            "x_principal",
            "X_FORWARDED_USER",
            "x-auth-request-email",
            "x-ssl-client-s-dn",
            "forwarded",
            "x-forwarded-for",
        ] {
            headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("mallory"));
        }
        headers
            .insert("traceparent", HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        headers.insert("accept", HeaderValue::from_static("text/csv"));
        sanitize(&mut headers, "10.1.2.3:5555".parse().unwrap());
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert!(headers.values().all(|v| v != "mallory"), "{left:?}");
        assert!(headers.contains_key("traceparent"));
        assert_eq!(headers["accept"], "text/csv");
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3");
    }

    #[test]
    fn connection_cannot_name_the_gateways_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("x-portcullis-stamp, x-forwarded-for, x-request-id, x-custom"),
        );
        headers.insert("x-custom", HeaderValue::from_static("hop"));
        headers.insert("x-request-id", HeaderValue::from_static("req-7"));
        let id = sanitize(&mut headers, "10.1.2.3:5555".parse().unwrap());
        // The client's own request id was named hop-by-hop: it went, and a fresh one is set.
        assert_ne!(id, "req-7");
        assert_eq!(headers["x-request-id"], id);
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3");
        assert!(!headers.contains_key(CONNECTION));
        assert!(!headers.contains_key("x-custom"));
    }

    #[test]
    fn each_hop_by_hop_header_goes_alone_and_te_trailers_stays() {
        for name in [
            "transfer-encoding",
            "upgrade",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static("x"));
            headers.insert("accept", HeaderValue::from_static("*/*"));
            strip_hop_by_hop(&mut headers);
            assert!(!headers.contains_key(name), "{name} kept");
            assert_eq!(headers.len(), 1, "{name}: only accept is left");
        }
        let mut headers = HeaderMap::new();
        headers.insert(TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers[TE], "trailers");
    }

    #[test]
    fn fresh_request_ids_are_distinct_v4_uuids() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_request_id().to_str().unwrap().to_string()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert!(identity::is_valid_request_id(id.as_bytes()), "{id}");
        }
    }

    #[test]
    fn the_peer_address_is_the_forwarded_for_value_for_either_family() {
        assert_eq!(ip_header_value("203.0.113.9".parse().unwrap()), "203.0.113.9");
        let longest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        assert_eq!(ip_header_value(longest.parse().unwrap()), longest);
        assert_eq!(ip_header_value("::ffff:255.255.255.255".parse().unwrap()), "::ffff:255.255.255.255");
    }

    #[test]
    fn request_id_kept_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("req-42"));
        assert_eq!(sanitize(&mut headers, "127.0.0.1:1".parse().unwrap()), "req-42");
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("has spaces"));
        let id = sanitize(&mut headers, "127.0.0.1:1".parse().unwrap());
        assert_ne!(id, "has spaces");
        assert_eq!(headers["x-request-id"], id);
    }
}
