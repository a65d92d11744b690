//! Authentication: OIDC bearer tokens, API keys, client certificates, and the bearer
//! tokens the Flight Handshake hands out. One [`Authenticator`] serves every listener; each
//! listener's [`ListenerAuth`] says which methods it accepts.
//!
//! Per request, the expensive work is done once per credential, not once per request:
//! verified tokens are cached by SHA-256 until their expiry at the latest, API keys are one
//! SHA-256 and a map lookup, and a client certificate was read when the connection opened.

pub mod apikeys;
mod authenticator;
mod credentials;
mod error;
pub mod fetch;
pub mod jws;
mod listener;
pub mod oidc;

pub use authenticator::{Authenticator, with_certificate};
pub(crate) use credentials::sha256;
pub use credentials::{API_KEY_HEADER, Credentials, SESSION_PREFIX, credentials};
pub use error::AuthError;
pub use listener::ListenerAuth;
