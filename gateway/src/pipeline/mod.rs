//! The request pipeline, built here top to bottom: read this file to follow a request's life.
//!
//! ```text
//! accept (limits, TLS, deadlines: `listener`) → sanitize → audit gate → rate-limit (ip)
//!     → authenticate (incl. a browser session's CSRF check) → rate-limit (principal) → authorize (Cedar) → stamp
//!     → admit (a query: its budget, a slot) → forward (stream; a query's rows counted and charged)
//!     → observe (every outcome, and the only stage that records: sign-ins, metrics,
//!       findings, the failed-auth quota, the error response, the audit event queued when
//!       the response body ends)
//!                  ↘ Flight Handshake: answered after rate-limit (ip)
//!                  ↘ browser routes (`/auth/*`, `/console`): answered after rate-limit (ip)
//! ```
//!
//! [`Pipeline::handle`] is that line: a request [`Context`] (`context.rs`), then
//! [`Pipeline::stages`] in order (each stage is a module and returns the facts it found into
//! the context), then [`Pipeline::observe`] (`observe.rs`), which records them.
//! Errors from every stage become responses in one place ([`GatewayError::into_response`]);
//! refusals below HTTP are counted and audited by `listener`.

mod audit;
mod authenticate;
mod authorize;
mod context;
mod forward;
mod grpc_status;
mod handshake;
mod idle;
mod observe;
pub(crate) mod sanitize;

use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use identity::{REPORT_HEADER, STAMP_HEADER, StampIssuer};

use crate::audit::Auditor;
use crate::auth::{Authenticator, ListenerAuth};
use crate::authz::{Authorizer, AuthzError};
use crate::body::Body;
use crate::config::Config;
use crate::connection::Connection;
use crate::error::GatewayError;
use crate::query_limits::QueryLimits;
use crate::query_limits::metered::{self, Metering};
use crate::query_limits::row_counter::RowCounter;
use crate::ratelimit::RateLimits;
use context::{BROWSER_ROUTE, Context, SignedIn};
pub(crate) use forward::Upstream;

/// One listener's pipeline: the shared state every stage needs.
pub(crate) struct Pipeline {
    auth: Arc<Authenticator>,
    /// The methods this listener accepts.
    listener: ListenerAuth,
    authz: Arc<Authorizer>,
    limits: Arc<RateLimits>,
    /// Per-caller query limits (`query_limits`).
    queries: Arc<QueryLimits>,
    issuer: Arc<StampIssuer>,
    audit: Arc<Auditor>,
    upstream: Upstream,
    /// Largest SQL body and gRPC message read to authorize a call, and how long it may take.
    body: authorize::BodyLimits,
    /// The API listener's bodies are size-limited; gRPC streams are not.
    limit_stream: bool,
    /// The Flight listener answers the Flight Handshake itself.
    answers_handshake: bool,
    /// `api` or `flight`, for metrics.
    name: &'static str,
    /// Browser sign-in and the console (the API listener, with `browser_login`).
    browser: Option<Arc<crate::browser::Browser>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("upstream", &self.upstream).finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Builds both listeners' pipelines from the config.
    pub(crate) fn from_config(
        config: &Config,
        auth: Arc<Authenticator>,
        authz: Arc<Authorizer>,
        (limits, queries): (Arc<RateLimits>, Arc<QueryLimits>),
        issuer: Arc<StampIssuer>,
        audit: Arc<Auditor>,
    ) -> Result<(Self, Self), crate::config::ConfigError> {
        let api_auth = ListenerAuth::from_config(&config.api, config, "api")?;
        let browser = crate::browser::Browser::from_config(config, &auth)?;
        // Signing browsers in to a listener that then refuses their cookie helps nobody.
        if browser.is_some() && !api_auth.browser() {
            return Err(crate::config::ConfigError::new(
                "api.auth.methods",
                "browser sign-in is configured (auth.browser_sessions) but this list leaves out browser",
            ));
        }
        let api = Self {
            auth: Arc::clone(&auth),
            listener: api_auth,
            authz: Arc::clone(&authz),
            limits: Arc::clone(&limits),
            queries: Arc::clone(&queries),
            issuer: Arc::clone(&issuer),
            audit: Arc::clone(&audit),
            upstream: Upstream::new(
                &config.api.upstream,
                config.api.upstream_tls.as_ref(),
                false,
                &config.timeouts,
                "api.upstream",
            )?,
            body: body_limits(config),
            limit_stream: true,
            answers_handshake: false,
            name: "api",
            browser: browser.map(Arc::new),
        };
        let flight = Self {
            auth,
            listener: ListenerAuth::from_config(&config.flight, config, "flight")?,
            authz,
            limits,
            queries,
            issuer,
            audit,
            upstream: Upstream::new(
                &config.flight.upstream,
                config.flight.upstream_tls.as_ref(),
                true,
                &config.timeouts,
                "flight.upstream",
            )?,
            body: body_limits(config),
            limit_stream: false,
            answers_handshake: true,
            name: "flight",
            browser: None,
        };
        Ok((api, flight))
    }

    pub(crate) fn auditor(&self) -> &Arc<Auditor> {
        &self.audit
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// One request, start to finish. Never fails: every error becomes a response.
    pub(crate) async fn handle(&self, connection: &Connection, mut request: Request<Incoming>) -> Response<Body> {
        // sanitize: nothing the client sent may claim an identity; fix the request id.
        let request_id = sanitize::sanitize(request.headers_mut(), connection.peer);
        let mut ctx = self.context(connection, &request, request_id);
        // The body stays outside until authorize takes it: a request refused before then has
        // its unread body discarded (below), so the refusal is not lost to a stream reset.
        let (parts, body) = request.into_parts();
        let mut unread = Some(body);
        let result = self.stages(&mut ctx, connection, parts, &mut unread).await;
        let refused = result.is_err();
        if let (true, Some(body), false) = (refused, unread, ctx.grpc) {
            discard(body).await;
        }
        self.observe(ctx, connection, result).await
    }

    /// The request's context, before any stage runs.
    fn context(&self, connection: &Connection, request: &Request<Incoming>, request_id: HeaderValue) -> Context {
        let grpc = is_grpc(request);
        let path = request.uri().path();
        let browser = self.browser.is_some() && !grpc && crate::browser::is_browser_path(path);
        let route = if browser { BROWSER_ROUTE } else { route(grpc, path) };
        // No API Activity event for a browser route: the callback's URL carries a code and
        // state that must not be written anywhere (sign-ins are audited as such).
        let record = (self.audit.enabled() && !browser)
            .then(|| audit::begin(self.name, connection, request, &request_id, grpc.then_some(route)));
        let bytes_in = record.is_some().then(|| Arc::new(std::sync::atomic::AtomicU64::new(0)));
        Context {
            request_id,
            grpc,
            route,
            started: std::time::Instant::now(),
            record,
            bytes_in,
            set_cookie: None,
            principal: None,
            signed_in: None,
            browser: None,
            verdict: None,
            learned: None,
            upstream_latency: None,
            limits: None,
        }
    }

    /// The stages in request order, from the audit gate to forward; each hands on what it
    /// learned through `ctx`.
    async fn stages(
        &self,
        ctx: &mut Context,
        connection: &Connection,
        mut parts: http::request::Parts,
        unread: &mut Option<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        // audit gate: with `on_failure: deny`, nothing is served while events cannot be written.
        if self.audit.refusing() {
            return Err(GatewayError::AuditUnavailable);
        }
        // rate-limit (ip): cheap, before any signature is checked; also the brute-force block.
        self.limits.check_ip(connection.peer.ip()).map_err(GatewayError::RateLimited)?;
        // browser routes (sign-in, sign-out, the console): answered by `crate::browser`.
        if let (BROWSER_ROUTE, Some(browser)) = (ctx.route, self.browser.as_deref()) {
            let (response, answered) = browser.handle(connection, &parts).await;
            ctx.browser = Some(answered);
            if let Some(body) = unread.take() {
                discard(body).await;
            }
            return Ok(response);
        }
        sanitize::one_authority(&parts)?;
        // The Flight Handshake authenticates and opens a session; nothing to forward.
        if ctx.grpc && self.answers_handshake && parts.uri.path() == handshake::PATH {
            let (principal, response) =
                handshake::answer(&self.auth, &self.listener, connection, &parts.headers).await?;
            ctx.signed_in = Some(SignedIn { principal: Arc::clone(&principal), flow: "handshake", always: true });
            ctx.principal = Some(principal);
            return Ok(response);
        }
        // authenticate: who is calling; credentials are removed from the request here.
        let authenticate::Authenticated { principal, renewed_cookie } = authenticate::authenticate(
            &self.auth,
            &self.listener,
            self.browser.as_deref(),
            connection,
            &parts.method,
            parts.uri.path(),
            &mut parts.headers,
        )
        .await?;
        ctx.set_cookie = renewed_cookie;
        ctx.signed_in = Some(SignedIn { principal: Arc::clone(&principal), flow: "request", always: false });
        ctx.principal = Some(Arc::clone(&principal));
        // rate-limit (principal): the caller's own quota (group and principal overrides).
        self.limits.check_principal(&principal).map_err(GatewayError::RateLimited)?;
        // query limits: the caller's tier (what the engine enforces goes in the stamp).
        let tier = self.queries.tier(&principal);
        if tier.limits_anything() {
            ctx.limits = Some(context::Limits::new(&tier));
        }
        // authorize: Cedar decides on the endpoint and every dataset the SQL touches.
        let body = unread.take().ok_or_else(|| GatewayError::Internal("request body taken twice".into()))?;
        let wants = ctx
            .record
            .is_some()
            .then(|| authorize::AuditWants { sql: self.audit.wants_sql(), plans: self.audit.plans() });
        let request = Request::from_parts(parts, body);
        let authorize::Authorized { outcome: authorized, verdict, learned } =
            authorize::authorize(&self.authz, connection, &principal, request, ctx.grpc, self.body, wants).await;
        ctx.verdict = verdict;
        ctx.learned = learned;
        let (mut request, allowed) = authorized?;
        let engine_limits = tier.engine_limits(allowed.unlimited_rows);
        // stamp: the signed assertion the engine trusts, reused per principal and scope (the
        // datasets the statement may touch); a catalog listing's carries what it may list.
        let stamp = match &allowed.listing {
            None => self
                .issuer
                .stamp_for(&principal, &allowed.policy, &allowed.scope, &allowed.data, engine_limits)
                .map(|s| HeaderValue::from_str(&s)),
            Some(listing) => self
                .issuer
                .catalog_stamp(
                    &principal,
                    listing,
                    &allowed.scope,
                    &allowed.policy,
                    &allowed.data,
                    engine_limits.as_deref(),
                )
                .map(|s| HeaderValue::from_str(&s)),
        };
        let stamp = stamp
            .map_err(|e| match e {
                // Dataset names too long to sign: the statement's to shorten, not a fault.
                identity::StampError::Oversized => {
                    GatewayError::from(AuthzError::Sql(complexity::TooComplex::Datasets.into()))
                }
                e => GatewayError::Internal(e.to_string()),
            })?
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        request.headers_mut().insert(STAMP_HEADER, stamp);
        if ctx.record.is_some() {
            // audit: the engine says what the statement read and how many rows it sent (a
            // trailer after the last byte, which HTTP/1.1 sends only when asked).
            request.headers_mut().insert(REPORT_HEADER, HeaderValue::from_static("1"));
        }
        // A large capped result says it was cut in a trailer too.
        let capped = engine_limits.as_ref().is_some_and(|limits| limits.caps_result());
        if (ctx.record.is_some() || capped) && !ctx.grpc {
            request.headers_mut().insert(http::header::TE, HeaderValue::from_static("trailers"));
        }
        if let Some(counter) = &ctx.bytes_in {
            request = audit::count_request(request, counter);
        }
        // admit: a query runs only with budget left and a slot of its own and a global one.
        let admitted = match ctx.route {
            "/v1/sql" | "DoGet" => {
                let admitted = self.queries.admit(&principal, &tier, allowed.unlimited_rows).await;
                let waited = match &admitted {
                    Ok((_, waited)) => waited.0,
                    Err(refused) => refused.waited,
                };
                if let Some(limits) = &mut ctx.limits {
                    limits.queued = (!waited.is_zero()).then_some(waited);
                }
                Some(admitted.map_err(GatewayError::QueryLimited)?.0)
            }
            _ => None,
        };
        // forward: stream to the engine and back.
        let (response, latency) =
            self.upstream.forward(request, self.limit_stream.then_some(self.body.max_bytes)).await?;
        ctx.upstream_latency = Some(latency);
        // A query's rows are counted, charged to its budget and held to its cap as they pass;
        // its slots are held until its response ends.
        let Some(slots) = admitted else { return Ok(response) };
        let budget = tier.budget(allowed.unlimited_rows);
        let cap = engine_limits.as_ref().and_then(|limits| limits.max_result_rows);
        // A caller without limits (and no global cap) is not metered: its hot path stays as it was.
        if ctx.limits.is_none() && !slots.holds_any() {
            return Ok(response);
        }
        let outcome = Arc::new(metered::Outcome::default());
        if let Some(limits) = &mut ctx.limits {
            limits.metered = Some(Arc::clone(&outcome));
        }
        let counter = response
            .status()
            .is_success()
            .then(|| response.headers().get(http::header::CONTENT_TYPE))
            .flatten()
            .and_then(|media| RowCounter::for_content_type(media.as_bytes()));
        let metering = Metering {
            limits: Arc::clone(&self.queries),
            principal: Arc::from(principal.id.as_str()),
            tier: Arc::clone(&tier.name),
            budget,
            cap,
            _slots: slots,
            outcome,
        };
        Ok(response.map(|body| metered::meter(body, counter, metering)))
    }
}

fn body_limits(config: &Config) -> authorize::BodyLimits {
    authorize::BodyLimits {
        max_bytes: config.limits.max_api_body_bytes,
        read_within: std::time::Duration::from_secs(config.timeouts.client_body_secs),
        stream_idle: std::time::Duration::from_secs(config.timeouts.stream_idle_secs),
    }
}

/// Reads what is left of a refused request's body, at most 64 KiB for at most one second,
/// so that an HTTP/2 stream ends with the client's own END_STREAM and not with a reset of
/// the unread stream, which curl (7.88) reports as a framing error instead of the refusal.
/// The bounds keep a refused client from holding the gateway; gRPC calls are not drained
/// (their clients take a reset, and a stream may never end).
async fn discard(mut body: Incoming) {
    use http_body::Body as _;
    use http_body_util::BodyExt;
    const MAX_DISCARD: u64 = 64 * 1024;
    if body.is_end_stream() || body.size_hint().lower() > MAX_DISCARD {
        return;
    }
    let drain = async {
        let mut read = 0u64;
        while read <= MAX_DISCARD {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |data| data.len() as u64),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}

/// The route label for metrics: a known route or RPC, else `other` (bounded cardinality).
fn route(grpc: bool, path: &str) -> &'static str {
    if grpc {
        if path == handshake::PATH {
            return "Handshake";
        }
        return crate::authz::flight_wire::Rpc::from_path(path).map_or("other", crate::authz::flight_wire::Rpc::name);
    }
    match path {
        "/v1/sql" => "/v1/sql",
        "/v1/datasets" => "/v1/datasets",
        _ => "other",
    }
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}
