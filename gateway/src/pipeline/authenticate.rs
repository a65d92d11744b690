//! Authenticate: who is calling (bearer token, API key, Handshake session, or client
//! certificate; see [`crate::auth`]). No method, no request: there is no anonymous
//! pass-through. Credentials stop here: the engine trusts the stamp and never sees a token
//! or key.

use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use identity::Principal;

use super::Connection;
use crate::auth::{API_KEY_HEADER, Authenticator, ListenerAuth};
use crate::error::GatewayError;

pub(super) async fn authenticate(
    auth: &Authenticator,
    listener: &ListenerAuth,
    connection: &Connection,
    headers: &mut HeaderMap,
) -> Result<Arc<Principal>, GatewayError> {
    let principal = auth.authenticate(listener, headers, connection.workload.as_ref()).await?;
    headers.remove(AUTHORIZATION);
    headers.remove(API_KEY_HEADER);
    Ok(principal)
}
