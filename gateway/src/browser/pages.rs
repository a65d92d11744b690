//! What the browser routes send: the console's assets (in the binary), small pages, JSON,
//! and — on every one of them, by tower-http layers — a strict Content-Security-Policy (no
//! inline script, no CDN: everything from this origin), `frame-ancestors 'none'`, nosniff,
//! `Referrer-Policy: no-referrer` (the callback URL carries a code), HSTS, `no-store`, and
//! gzip when the browser takes it.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use super::error::BrowserError;
use crate::body::{Body, full};

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `response` with the headers every browser response gets, compressed as the request's
/// `Accept-Encoding` allows: tower-http's layers around the finished response.
pub(super) async fn secured(request_headers: &HeaderMap, response: Response<Body>) -> Response<Body> {
    let mut carrier = Request::new(Carried(response));
    if let Some(accept) = request_headers.get(header::ACCEPT_ENCODING) {
        carrier.headers_mut().insert(header::ACCEPT_ENCODING, accept.clone());
    }
    let fixed = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    let service = ServiceBuilder::new()
        .layer(fixed(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(fixed(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(fixed(header::X_FRAME_OPTIONS, "DENY"))
        .layer(fixed(header::REFERRER_POLICY, "no-referrer"))
        .layer(fixed(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains"))
        .layer(fixed(HeaderName::from_static("cross-origin-opener-policy"), "same-origin"))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(CompressionLayer::new())
        .service_fn(carried);
    match service.oneshot(carrier).await {
        Ok(response) => response.map(|body| body.map_err(|e| e as crate::body::BoxError).boxed_unsync()),
        Err(never) => match never {},
    }
}

/// The response the layers wrap, carried in as a request (the layers read `Accept-Encoding`
/// from it). A fn item, not a closure: its future is `Send` for every lifetime.
async fn carried(carrier: Request<Carried>) -> Result<Response<Body>, Infallible> {
    Ok(carrier.into_body().0)
}

/// A newtype, so that no `dyn Error` lifetime shows in the service's request type (with it,
/// rustc cannot prove the `Send` the listener needs: "not general enough").
pub(super) struct Carried(Response<Body>);

fn typed(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    typed(status, "application/json", value.to_string())
}

/// The console page (its script and style are separate files: no inline script under the CSP).
pub(super) fn console() -> Response<Body> {
    typed(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML)
}

/// A console asset; cacheable (they change only with the binary).
pub(super) fn asset(path: &str) -> Option<Response<Body>> {
    let (content_type, body) = match path {
        "/console/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/console/app.css" => ("text/css; charset=utf-8", APP_CSS),
        _ => return None,
    };
    let mut response = typed(StatusCode::OK, content_type, body);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
    Some(response)
}

pub(super) fn signed_out() -> Response<Body> {
    page(
        StatusCode::OK,
        "Signed out",
        "You are signed out of Portcullis.",
        Some(("/auth/login?return_to=%2Fconsole", "Sign in again")),
    )
}

/// Several providers sign browsers in: let the person pick one.
pub(super) fn choose_provider(names: &[&str], return_to: &str) -> Response<Body> {
    let return_to: String = url_encode(return_to);
    let links: String = names
        .iter()
        .map(|name| {
            format!(
                "<li><a class=\"button\" href=\"/auth/login?provider={}&amp;return_to={return_to}\">{}</a></li>",
                url_encode(name),
                escape(name)
            )
        })
        .collect();
    let body = format!("<p>Choose where to sign in:</p><ul class=\"providers\">{links}</ul>");
    html(StatusCode::OK, "Sign in", &body)
}

/// A refusal: a page for a browser navigating, JSON for `fetch`.
pub(super) fn error(error: &BrowserError, wants_html: bool) -> Response<Body> {
    let (status, code) = error.status_and_code();
    let message = error.to_string();
    let mut response = if wants_html {
        page(status, "Sign-in problem", &message, Some(("/auth/login?return_to=%2Fconsole", "Start again")))
    } else {
        json(status, &serde_json::json!({"error": {"code": code, "message": message}}))
    };
    if let BrowserError::MethodNotAllowed(_, allow) = error {
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}

fn page(status: StatusCode, title: &str, message: &str, link: Option<(&str, &str)>) -> Response<Body> {
    let link = link
        .map(|(href, text)| format!("<p><a class=\"button\" href=\"{href}\">{}</a></p>", escape(text)))
        .unwrap_or_default();
    html(status, title, &format!("<p class=\"message\">{}</p>{link}", escape(message)))
}

fn html(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let title = escape(title);
    typed(
        status,
        "text/html; charset=utf-8",
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Portcullis</title>\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <link rel=\"stylesheet\" href=\"/console/app.css\"></head>\
             <body class=\"page\"><main class=\"card\"><h1>{title}</h1>{body}</main></body></html>"
        ),
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn url_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_text_is_escaped_in_pages() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[tokio::test]
    async fn every_response_gets_the_security_headers_and_assets_compress() {
        let mut request = HeaderMap::new();
        request.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let response = secured(&request, asset("/console/app.js").unwrap()).await;
        let h = response.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert!(!CSP.contains("unsafe-inline") && CSP.contains("frame-ancestors 'none'"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert!(h[header::STRICT_TRANSPORT_SECURITY].to_str().unwrap().starts_with("max-age="));
        assert_eq!(h[header::CACHE_CONTROL], "private, max-age=300");
        assert_eq!(h[header::CONTENT_ENCODING], "gzip");
        let page = secured(&HeaderMap::new(), signed_out()).await;
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-store");
        assert!(page.headers().get(header::CONTENT_ENCODING).is_none());
    }
}
