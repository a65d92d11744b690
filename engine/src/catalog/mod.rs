//! The session's catalog: the datasets from the engine's file, the embedded demo data, and
//! registering a table under a (possibly schema-qualified) name.

pub(crate) mod datasets;
pub(crate) mod demo;
mod register;

pub(crate) use register::register_table;
