//! CSRF for cookie-authenticated requests: a browser sends the session cookie with whatever
//! another site makes it request, so a request the cookie authenticates that changes
//! anything, or that runs SQL, must (1) come from this gateway's own origin — `Origin`
//! equal to it, or, where a browser sends no `Origin`, `Sec-Fetch-Site: same-origin` — and
//! (2) carry the session's token in `X-CSRF-Token` (constant-time compare). Reads other
//! than SQL (`GET /v1/datasets`, the console page) pass: SameSite=Lax already keeps
//! cross-site sub-requests from carrying the cookie, and a cross-origin read of their
//! answer is blocked by the browser (no CORS headers are ever sent).
//!
//! Bearer, API key and mTLS requests never reach this: they carry no ambient credential.

use http::{HeaderMap, Method};

use super::session::{Session, csrf_matches};

pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether a cookie-authenticated `method path` needs the check.
pub fn needs_check(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD) || path == "/v1/sql"
}

/// The same-origin check alone (logout uses it with the token, as every write does).
pub fn same_origin(headers: &HeaderMap, origin: &str) -> Result<(), &'static str> {
    match headers.get(http::header::ORIGIN) {
        Some(value) if value.as_bytes() == origin.as_bytes() => Ok(()),
        Some(_) => Err("cross-origin request refused: Origin is not this gateway"),
        None => match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
            Some(b"same-origin") => Ok(()),
            Some(_) => Err("cross-site request refused: Sec-Fetch-Site is not same-origin"),
            None => {
                Err("request refused: a browser session needs Origin or Sec-Fetch-Site (send a bearer token instead)")
            }
        },
    }
}

/// Both checks, for a request that needs them.
pub fn check(headers: &HeaderMap, origin: &str, session: &Session) -> Result<(), &'static str> {
    same_origin(headers, origin)?;
    match headers.get(CSRF_HEADER) {
        Some(token) if csrf_matches(session, token.as_bytes()) => Ok(()),
        Some(_) => Err("CSRF token does not match this session"),
        None => Err("CSRF token missing: send the X-CSRF-Token header from /auth/session"),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use identity::{AuthMethod, Principal, PrincipalKind};

    use super::*;

    const ORIGIN: &str = "https://gw.example.com";

    fn session() -> Session {
        Session {
            sid: "sid".into(),
            csrf: "token-123".into(),
            principal: std::sync::Arc::new(Principal::new(PrincipalKind::User, "a", "a", AuthMethod::Browser)),
            provider: "idp".into(),
            iat: 0,
            seen: 0,
            refresh_token: None,
            refresh_at: 0,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn writes_and_sql_need_the_checks_reads_do_not() {
        assert!(needs_check(&Method::POST, "/v1/sql"));
        assert!(needs_check(&Method::GET, "/v1/sql"));
        assert!(needs_check(&Method::DELETE, "/v1/datasets"));
        assert!(!needs_check(&Method::GET, "/v1/datasets"));
        assert!(!needs_check(&Method::HEAD, "/console"));
    }

    #[test]
    fn only_same_origin_with_the_token_passes() {
        let s = session();
        let ok = headers(&[("origin", ORIGIN), (CSRF_HEADER, "token-123")]);
        assert_eq!(check(&ok, ORIGIN, &s), Ok(()));
        let fetch_site = headers(&[("sec-fetch-site", "same-origin"), (CSRF_HEADER, "token-123")]);
        assert_eq!(check(&fetch_site, ORIGIN, &s), Ok(()));
        for (bad, why) in [
            (headers(&[("origin", "https://evil.example"), (CSRF_HEADER, "token-123")]), "Origin is not"),
            (headers(&[("origin", "https://gw.example.com.evil"), (CSRF_HEADER, "token-123")]), "Origin is not"),
            (headers(&[("origin", "null"), (CSRF_HEADER, "token-123")]), "Origin is not"),
            (headers(&[("sec-fetch-site", "cross-site"), (CSRF_HEADER, "token-123")]), "Sec-Fetch-Site"),
            (headers(&[("sec-fetch-site", "same-site"), (CSRF_HEADER, "token-123")]), "Sec-Fetch-Site"),
            (headers(&[(CSRF_HEADER, "token-123")]), "needs Origin"),
            (headers(&[("origin", ORIGIN)]), "CSRF token missing"),
            (headers(&[("origin", ORIGIN), (CSRF_HEADER, "token-12")]), "does not match"),
            (headers(&[("origin", ORIGIN), (CSRF_HEADER, "token-1234")]), "does not match"),
        ] {
            let err = check(&bad, ORIGIN, &s).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
