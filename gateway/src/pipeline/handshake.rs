//! The Flight `Handshake`, answered by the gateway itself: the client proves who it is
//! (Basic auth whose password is an API key or a JWT, or any other accepted credential) and
//! gets back `authorization: Bearer <session token>` to send on the calls that follow. This
//! is what `pyarrow.flight.FlightClient.authenticate_basic_token` and ADBC's username /
//! password options speak. The engine never sees the Handshake.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use identity::Principal;

use crate::auth::{Authenticator, ListenerAuth};
use crate::body::{Body, BoxError};
use crate::connection::Connection;
use crate::error::GatewayError;

pub(super) const PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

pub(super) async fn answer(
    auth: &Authenticator,
    listener: &ListenerAuth,
    connection: &Connection,
    headers: &HeaderMap,
) -> Result<(Arc<Principal>, Response<Body>), GatewayError> {
    let (principal, token) = auth.handshake(listener, headers, connection.workload.as_ref()).await?;
    tracing::debug!(principal = %principal.id, "Flight handshake: session opened");
    let bearer =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| GatewayError::Internal(e.to_string()))?;
    // No messages, then OK in trailers: headers go out first so that clients read the
    // token from the initial metadata, where gRPC puts it.
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = stream::iter([Ok::<_, BoxError>(Frame::<Bytes>::trailers(trailers))]);
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response.headers_mut().insert(AUTHORIZATION, bearer);
    Ok((principal, response))
}
