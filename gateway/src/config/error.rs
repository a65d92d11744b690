//! The one error type of configuration: where (file and field) and what.

/// A configuration problem, always naming where it is.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: at `{field}`: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { origin: "config".into(), field: field.into(), message: message.into() }
    }
}
