//! The session's catalog: the datasets from the engine's file, the embedded demo data,
//! registering a table under a (possibly schema-qualified) name, and the live version a
//! reload replaces.

pub(crate) mod datasets;
pub(crate) mod demo;
pub(crate) mod live;
mod register;
pub(crate) mod s3;
mod s3_transport;

pub(crate) use register::register_table;
