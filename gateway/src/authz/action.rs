//! The action vocabulary, in one place: every Cedar action the gateway asks about (the
//! schema, `policies/schema.cedarschema`, declares the same names), and what each does to
//! data, which the audit event's activity and the linter's admin check read.

/// Endpoint-level action of one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointAction {
    /// Reads data: SELECT, EXPLAIN of a read.
    Query,
    /// Reads the catalog only: SHOW, DESCRIBE, `information_schema`, Flight SQL catalog calls.
    Describe,
    /// Changes data: INSERT, UPDATE, DELETE, TRUNCATE, COPY.
    Write,
    /// Changes the catalog: CREATE, DROP, ALTER.
    Admin,
}

impl EndpointAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Describe => "describe",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

/// Dataset-level action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatasetAction {
    Select,
    Insert,
    Update,
    Delete,
    Ddl,
}

impl DatasetAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Ddl => "ddl",
        }
    }
}

/// The action named `name` (endpoint or dataset), as the static name the authorizer asks
/// Cedar with: for recorded calls read back by `gateway policy replay`.
pub(crate) fn action_named(name: &str) -> Option<&'static str> {
    use DatasetAction as D;
    use EndpointAction as E;
    [E::Query, E::Describe, E::Write, E::Admin]
        .map(E::as_str)
        .into_iter()
        .chain([D::Select, D::Insert, D::Update, D::Delete, D::Ddl].map(D::as_str))
        .find(|action| *action == name)
}

/// What an action does to data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Reads data or the catalog.
    Read,
    /// Changes data.
    Change,
    /// Changes the catalog or administers.
    Administer,
}

/// What the action named `name` does; `None` for a name the gateway never asks about.
pub(crate) fn effect(name: &str) -> Option<Effect> {
    Some(match name {
        "query" | "describe" | "select" => Effect::Read,
        "write" | "insert" | "update" | "delete" => Effect::Change,
        "admin" | "ddl" => Effect::Administer,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_its_name_and_effect() {
        use DatasetAction as D;
        use EndpointAction as E;
        let all = [
            (E::Query.as_str(), Effect::Read),
            (E::Describe.as_str(), Effect::Read),
            (E::Write.as_str(), Effect::Change),
            (E::Admin.as_str(), Effect::Administer),
            (D::Select.as_str(), Effect::Read),
            (D::Insert.as_str(), Effect::Change),
            (D::Update.as_str(), Effect::Change),
            (D::Delete.as_str(), Effect::Change),
            (D::Ddl.as_str(), Effect::Administer),
        ];
        for (name, effect_of) in all {
            assert_eq!(action_named(name), Some(name));
            assert_eq!(effect(name), Some(effect_of), "{name}");
        }
        assert_eq!((action_named("read"), effect("read")), (None, None));
    }
}
