//! Browser sign-in and the console, on the API listener.
//!
//! ```text
//! GET  /auth/login?return_to=/console[&provider=NAME] → 302 to the provider (code + PKCE S256, state, nonce)
//! GET  /auth/callback?code&state                      → ID token verified → sealed session cookie → 302 return_to
//! POST /auth/logout   (same origin + X-CSRF-Token)    → session revoked, cookie cleared, the provider's logout URL
//! GET  /auth/session                                  → who am I, and the session's CSRF token (JSON)
//! GET  /auth/signed-out                               → a page to sign in again
//! GET  /console, /console/app.js, /console/app.css    → the SQL console (assets in the binary)
//! ```
//!
//! Everything else a browser does (`/v1/sql`, `/v1/datasets`) goes through the pipeline like
//! any request: the cookie is one more credential ([`crate::auth::Authenticator::browser_session`]),
//! checked for CSRF ([`csrf`]) and removed before forwarding.

pub mod csrf;
mod error;
mod pages;
mod pending;
mod refresh;
mod routes;
pub(crate) mod seal;
pub(crate) mod session;
mod signin;

pub(crate) use routes::{Answered, Browser, is_browser_path};
pub(crate) use session::{SESSION_COOKIE, cookie};
