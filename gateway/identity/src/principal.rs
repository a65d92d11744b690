//! Who is calling: the identity the gateway established and the engine exposes to SQL.

use serde::{Deserialize, Serialize};

/// What kind of caller a principal is; maps to the Cedar entity types `User`, `Service`
/// and `Workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person, authenticated by an OIDC bearer token.
    User,
    /// A service, authenticated by an API key.
    Service,
    /// A workload, authenticated by an mTLS client certificate.
    Workload,
}

/// How the principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// OIDC bearer JWT.
    Oidc,
    /// Hashed API key.
    ApiKey,
    /// Verified client certificate.
    Mtls,
    /// A browser session: an OIDC sign-in at `/auth/login`, carried by a sealed cookie.
    Browser,
    /// The engine's insecure development mode: nobody proved anything.
    Development,
}

impl AuthMethod {
    /// The name used in SQL, audit events and Cedar context.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Oidc => "oidc",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Mtls => "mtls",
            AuthMethod::Browser => "browser",
            AuthMethod::Development => "development",
        }
    }
}

impl PrincipalKind {
    /// The name used in SQL, audit events and Cedar entity types.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Service => "service",
            PrincipalKind::Workload => "workload",
        }
    }
}

/// A verified caller.
///
/// `id` is what policies and `current_principal()` see (OIDC user claim, API key name, SPIFFE
/// ID or certificate subject); `subject` is the raw subject (JWT `sub`, key id, SPIFFE ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub id: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    pub auth_method: AuthMethod,
    #[serde(default)]
    pub mfa: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The verified client certificate's identity (SPIFFE ID, email or CN) when a token or
    /// API key gave the principal over an mTLS connection: kept for policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
}

impl Principal {
    /// A principal with only the required fields set; the rest can be filled in directly.
    pub fn new(
        kind: PrincipalKind,
        id: impl Into<String>,
        subject: impl Into<String>,
        auth_method: AuthMethod,
    ) -> Self {
        Self {
            kind,
            id: id.into(),
            subject: subject.into(),
            email: None,
            groups: Vec::new(),
            issuer: None,
            auth_method,
            mfa: false,
            tenant: None,
            client_cert: None,
        }
    }

    /// Whether `other` is the same caller: used to bind Flight tickets and prepared
    /// statements to the principal that created them. Groups and MFA may change between
    /// two stamps of one caller; kind, id, subject and issuer may not.
    pub fn same_caller(&self, other: &Principal) -> bool {
        self.kind == other.kind && self.id == other.id && self.subject == other.subject && self.issuer == other.issuer
    }
}
