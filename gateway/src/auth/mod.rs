//! Authentication: OIDC bearer tokens, API keys, client certificates, and the bearer
//! tokens the Flight Handshake hands out. One [`Authenticator`] serves every listener; each
//! listener's [`ListenerAuth`] says which methods it accepts.
//!
//! Per request, the expensive work is done once per credential, not once per request:
//! verified tokens are cached by SHA-256 until their expiry at the latest, API keys are one
//! SHA-256 and a map lookup, and a client certificate was read when the connection opened.

pub mod apikeys;
pub(crate) mod authenticator;
pub(crate) mod credentials;
mod error;
pub(crate) mod fetch;
pub mod jws;
pub(crate) mod listener;
pub(crate) mod oidc;

pub(crate) use authenticator::{Authenticator, with_certificate};
pub(crate) use credentials::API_KEY_HEADER;
pub(crate) use credentials::sha256;
pub(crate) use error::AuthError;
pub(crate) use listener::ListenerAuth;
