//! Authenticate: who is calling. For now the verified client certificate of the connection
//! (OIDC bearer tokens and API keys join here); no method, no request: there is no
//! anonymous pass-through.

use std::sync::Arc;

use identity::Principal;

use super::Connection;
use crate::error::GatewayError;

pub fn authenticate(connection: &Connection) -> Result<Arc<Principal>, GatewayError> {
    connection.workload.clone().ok_or(GatewayError::Unauthenticated("a verified client certificate is required"))
}
