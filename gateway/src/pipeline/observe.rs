//! observe: the pipeline's last stage, which runs for every outcome and is the only one
//! that records (as pingora's logging phase): sign-ins and failed ones, metrics, the
//! failed-authentication quota, refusal findings, the error response, and the request's
//! audit event.

use std::sync::Arc;

use http::{HeaderValue, Response};
use identity::{Principal, REQUEST_ID_HEADER};

use super::context::{Context, SignedIn};
use super::{Pipeline, audit, grpc_status};
use crate::audit::{Record, SignInRecord};
use crate::auth::AuthError;
use crate::authz::AuthzError;
use crate::body::Body;
use crate::connection::Connection;
use crate::error::GatewayError;
use crate::grpc_code::GrpcCode;
use process::unix_millis;

impl Pipeline {
    /// Records what the stages found (see the module), turns an error into its response, and
    /// queues the audit event, its record completed, for when the response body ends.
    pub(super) async fn observe(
        &self,
        mut ctx: Context,
        connection: &Connection,
        result: Result<Response<Body>, GatewayError>,
    ) -> Response<Body> {
        let ip = connection.peer.ip();
        if let Some(SignedIn { principal, flow, always }) = ctx.signed_in.take() {
            self.signed_in(connection, &ctx.request_id, principal, flow, always).await;
        }
        if let Some(answered) = ctx.browser.take() {
            // A refused session cookie is a refused credential, recorded as the API's are.
            if let Some(error) = answered.refused_cookie {
                self.credential_refused(connection, &ctx.request_id, &error, false).await;
            }
            if let Some(sign_in) = answered.sign_in {
                self.browser_signed_in(connection, &ctx.request_id, sign_in).await;
            }
        }
        if let Some(limits) = ctx.limits.take() {
            if limits.queued.is_some() {
                crate::metrics::query_limit(&limits.tier, "queued");
            }
            // A result cut at its cap says so in its head (HTTP); over Flight, in its
            // trailers, which the metered body counts when they pass.
            if let Ok(response) = &result
                && response.headers().contains_key(identity::TRUNCATED_HEADER)
            {
                crate::metrics::query_limit(&limits.tier, "truncated");
            }
            // An engine error a caller limit caused, answered with its head (a timeout or
            // memory share before the first row, a `fail` cap); while streaming, the
            // metered body counts it from the trailers.
            let tripped = result.as_ref().ok().and_then(|r| r.extensions().get::<audit::EngineReport>());
            if let Some(limit) = tripped.and_then(|report| report.limit) {
                crate::metrics::query_limit(&limits.tier, limit);
            }
            if let Some(record) = ctx.record.as_deref_mut() {
                record.limits = Some(crate::audit::LimitsRecord {
                    tier: limits.tier,
                    applied: match &result {
                        Err(GatewayError::QueryLimited(refused)) => Some(refused.limit.to_string()),
                        _ => None,
                    },
                    queued_us: limits.queued.map_or(0, |q| q.as_micros() as u64),
                    metered: limits.metered,
                });
            }
        }
        if let Some(record) = ctx.record.as_deref_mut() {
            record.principal = ctx.principal.take();
            if let Some(learned) = ctx.learned.take() {
                learned.record(record);
            }
        }
        if let Some(verdict) = ctx.verdict.take() {
            match &verdict.outcome {
                Ok(_) => crate::metrics::decision(true),
                Err(AuthzError::Denied { .. }) => crate::metrics::decision(false),
                Err(_) => {}
            }
            if let Some((enforced, shadow)) = verdict.disagreement() {
                crate::metrics::shadow_disagreement(enforced, shadow);
            }
            if let Some(change) = verdict.data_change() {
                crate::metrics::shadow_data_change(change);
            }
        }
        if let Some(latency) = ctx.upstream_latency {
            crate::metrics::upstream_latency(self.name, latency);
        }
        let status = match &result {
            Ok(response) if ctx.grpc => trailers_only_status(response).unwrap_or(response.status().as_u16()),
            Ok(response) => response.status().as_u16(),
            Err(error) => error.http_status().as_u16(),
        };
        crate::metrics::request(self.name, ctx.route, status);
        match &result {
            // No credentials at all: the first few from a source are audited in full, a flood
            // is counted into one event per source and interval (it must not rotate the audit
            // history away), and a burst is a finding.
            Err(GatewayError::Unauthenticated(error)) if error.is_missing() => {
                crate::metrics::auth_failure(error.reason());
                if self.audit.unauthenticated(self.name, connection.peer, || error.to_string()).await {
                    self.sign_in_failed(connection, &ctx.request_id, error, ctx.route == "Handshake").await;
                } else {
                    ctx.record = None;
                }
            }
            Err(GatewayError::Unauthenticated(error)) => {
                self.credential_refused(connection, &ctx.request_id, error, ctx.route == "Handshake").await;
            }
            Err(GatewayError::RateLimited(limited)) => crate::metrics::rate_limited(limited.limiter),
            Err(GatewayError::QueryLimited(refused)) => crate::metrics::query_limit(&refused.tier, refused.limit),
            // Cedar denials count towards findings too; unsupported or malformed calls do not.
            Err(GatewayError::Authorization(crate::authz::AuthzError::Denied { .. })) => self.audit.refused(ip).await,
            _ => {}
        }
        if let (Some(record), Err(error)) = (ctx.record.as_mut(), &result) {
            record.error = Some((error.code(), error.to_string()));
        }
        let mut response = match result {
            Ok(response) => response,
            Err(error) => error.into_response(ctx.grpc, ctx.request_id.to_str().unwrap_or("")),
        };
        response.headers_mut().insert(REQUEST_ID_HEADER, ctx.request_id);
        if let Some(cookie) = ctx.set_cookie {
            response.headers_mut().append(http::header::SET_COOKIE, cookie);
        }
        if ctx.grpc {
            response = grpc_status::observe(ctx.route, response);
        }
        // audit: the event is queued when the response body ends (bytes, duration, gRPC status).
        match (ctx.record, ctx.bytes_in) {
            (Some(record), Some(bytes_in)) => audit::finish(&self.audit, record, ctx.started, bytes_in, response).await,
            _ => response,
        }
    }

    async fn signed_in(
        &self,
        connection: &Connection,
        request_id: &HeaderValue,
        principal: Arc<Principal>,
        flow: &'static str,
        always: bool,
    ) {
        if !self.audit.enabled() {
            return;
        }
        let record = || SignInRecord {
            time_ms: unix_millis(),
            request_id: request_id.clone(),
            listener: self.name,
            peer: connection.peer,
            principal: Some(Arc::clone(&principal)),
            flow,
            failure: None,
        };
        if always {
            self.audit.submit(Record::SignIn(Box::new(record()))).await;
        } else {
            self.audit.signed_in(record, &principal, connection.peer.ip()).await;
        }
    }

    /// A provider's callback: the sign-in metric, and an Authentication event (flow
    /// `browser`) for every outcome.
    async fn browser_signed_in(
        &self,
        connection: &Connection,
        request_id: &HeaderValue,
        sign_in: Result<Arc<Principal>, (&'static str, String)>,
    ) {
        crate::metrics::browser_sign_in(sign_in.as_ref().map_or_else(|(code, _)| *code, |_| "ok"));
        if !self.audit.enabled() {
            return;
        }
        let (principal, failure) = match sign_in {
            Ok(principal) => (Some(principal), None),
            Err(failure) => (None, Some(failure)),
        };
        let record = SignInRecord {
            time_ms: unix_millis(),
            request_id: request_id.clone(),
            listener: self.name,
            peer: connection.peer,
            principal,
            flow: "browser",
            failure,
        };
        self.audit.submit(Record::SignIn(Box::new(record))).await;
    }

    /// A credential was refused (on the API, or a session cookie on a browser route): counted,
    /// audited as a failed sign-in, and held against the address's failed-auth quota and
    /// towards a refusal finding, unless none was really presented (a certificate missing),
    /// the provider is down, or a browser session ran out.
    async fn credential_refused(
        &self,
        connection: &Connection,
        request_id: &HeaderValue,
        error: &AuthError,
        handshake: bool,
    ) {
        crate::metrics::auth_failure(error.reason());
        self.sign_in_failed(connection, request_id, error, handshake).await;
        if !error.is_missing() && !matches!(error, AuthError::KeysUnavailable(_) | AuthError::SessionExpired(_)) {
            let ip = connection.peer.ip();
            self.limits.failed_authentication(ip);
            self.audit.refused(ip).await;
        }
    }

    async fn sign_in_failed(
        &self,
        connection: &Connection,
        request_id: &HeaderValue,
        error: &AuthError,
        handshake: bool,
    ) {
        if !self.audit.enabled() {
            return;
        }
        self.audit
            .submit(Record::SignIn(Box::new(SignInRecord {
                time_ms: unix_millis(),
                request_id: request_id.clone(),
                listener: self.name,
                peer: connection.peer,
                principal: None,
                flow: if handshake { "handshake" } else { "request" },
                failure: Some((error.reason(), error.to_string())),
            })))
            .await;
    }
}

/// The status a trailers-only gRPC error (the engine's answer with `grpc-status` in the head)
/// counts as in the request metrics: the HTTP equivalent of its code, as gateway refusals
/// count (errors that come in trailers after data are known only when the body ends).
fn trailers_only_status(response: &Response<Body>) -> Option<u16> {
    let number = grpc_status::code(response.headers())?;
    // A number outside the specification counts as an internal error.
    GrpcCode::from_number(number).map_or(Some(500), GrpcCode::http_equivalent)
}
