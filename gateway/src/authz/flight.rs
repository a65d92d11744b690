//! What a Flight / Flight SQL call does, for Cedar. The RPC comes from the gRPC path; for
//! the calls that carry a command (GetFlightInfo, PollFlightInfo, GetSchema, DoPut,
//! DoExchange, DoAction) the first request message is decoded: SQL commands go through [`super::sql`], catalog
//! commands are `describe`, and anything unknown is refused.
//!
//! DoGet's ticket comes from a GetFlightInfo this stage authorized, and the engine binds
//! tickets and prepared-statement handles to the principal that asked; it is read only to
//! tell a catalog listing (a GetTables, GetDbSchemas or GetCatalogs ticket, whose answer the
//! engine filters by the list the stamp carries) from a query.

use prost::Message;

use super::action::{DatasetAction, EndpointAction};
use super::error::AuthzError;
use super::flight_wire::{
    Action, Any, CommandStatementIngest, FlightData, FlightDescriptor, Rpc, SqlCommand, TYPE_PREFIX,
};
use super::sql::{self, NameDefaults, StatementAccess};

/// Classifies one call; `message` is the first request message for [`Rpc::needs_message`].
pub fn classify(rpc: Rpc, message: &[u8], defaults: &NameDefaults) -> Result<Vec<StatementAccess>, AuthzError> {
    let only = |endpoint| Ok(vec![StatementAccess { endpoint, datasets: Vec::new() }]);
    match rpc {
        // `message` is a listing ticket or nothing (see [`listing_ticket`]).
        Rpc::DoGet if message.is_empty() => only(EndpointAction::Query),
        Rpc::DoGet => only(EndpointAction::Describe),
        Rpc::ListFlights | Rpc::ListActions => only(EndpointAction::Describe),
        Rpc::GetFlightInfo | Rpc::PollFlightInfo | Rpc::GetSchema => {
            let descriptor = FlightDescriptor::decode(message).map_err(malformed("FlightDescriptor"))?;
            command(&descriptor, Direction::Read, defaults)
        }
        Rpc::DoPut | Rpc::DoExchange => {
            let data = FlightData::decode(message).map_err(malformed("FlightData"))?;
            let descriptor = data.flight_descriptor.ok_or_else(|| {
                AuthzError::Malformed("the first message of DoPut or DoExchange has no FlightDescriptor".into())
            })?;
            let direction = if rpc == Rpc::DoPut { Direction::Write } else { Direction::Both };
            command(&descriptor, direction, defaults)
        }
        Rpc::DoAction => {
            let action = Action::decode(message).map_err(malformed("Action"))?;
            match action.r#type.as_str() {
                "CreatePreparedStatement" => {
                    // Authorized now as the statement it prepares: the handle is bound to the
                    // principal at the engine and executed later without its SQL.
                    let any = Any::decode(action.body).map_err(malformed("CreatePreparedStatement"))?;
                    let request = SqlCommand::decode(any.value).map_err(malformed("CreatePreparedStatement"))?;
                    Ok(sql::analyze(&request.query, defaults)?)
                }
                // What client libraries send in normal use (ADBC closes its session on every
                // connection): the engine answers them; they name no dataset.
                "ClosePreparedStatement"
                | "CloseSession"
                | "GetSessionOptions"
                | "SetSessionOptions"
                | "CancelFlightInfo" => only(EndpointAction::Query),
                other => Err(AuthzError::Unsupported(format!("the Flight action {} is not allowed", printable(other)))),
            }
        }
    }
}

/// Which commands an RPC may carry: reads (GetFlightInfo...), writes (DoPut), or both
/// (DoExchange, whose stream goes both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
    Both,
}

fn command(
    descriptor: &FlightDescriptor,
    direction: Direction,
    defaults: &NameDefaults,
) -> Result<Vec<StatementAccess>, AuthzError> {
    let (read, put) = (direction != Direction::Write, direction != Direction::Read);
    if descriptor.r#type != 2 {
        return Err(AuthzError::Unsupported("only command descriptors (Flight SQL) are allowed".into()));
    }
    let Any { type_url, value } = Any::decode(descriptor.cmd.clone()).map_err(malformed("the descriptor's command"))?;
    let name = type_url.strip_prefix(TYPE_PREFIX).unwrap_or("");
    let only = |endpoint| Ok(vec![StatementAccess { endpoint, datasets: Vec::new() }]);
    match name {
        "CommandStatementQuery" if read => {
            let command = SqlCommand::decode(value).map_err(malformed(name))?;
            Ok(sql::analyze(&command.query, defaults)?)
        }
        "CommandStatementUpdate" if put => {
            let command = SqlCommand::decode(value).map_err(malformed(name))?;
            Ok(sql::analyze(&command.query, defaults)?)
        }
        // Handles: authorized when prepared (see DoAction), bound to the principal.
        "CommandPreparedStatementQuery" => only(EndpointAction::Query),
        "CommandPreparedStatementUpdate" if put => only(EndpointAction::Write),
        "CommandStatementIngest" if put => {
            let ingest = CommandStatementIngest::decode(value).map_err(malformed(name))?;
            let mut parts = Vec::new();
            parts.extend(ingest.catalog.clone());
            parts.extend(ingest.schema.clone().or(ingest.catalog.as_ref().map(|_| defaults.schema.clone())));
            parts.push(ingest.table);
            // Flight SQL names are taken as given (the engine does not fold them).
            let idents: Vec<sqlparser::ast::Ident> =
                parts.into_iter().map(|p| sqlparser::ast::Ident::with_quote('"', p)).collect();
            let dataset = sql::dataset_name(&sqlparser::ast::ObjectName::from(idents), defaults)?;
            Ok(vec![StatementAccess {
                endpoint: EndpointAction::Write,
                datasets: vec![(DatasetAction::Insert, dataset)],
            }])
        }
        "CommandGetCatalogs"
        | "CommandGetDbSchemas"
        | "CommandGetTables"
        | "CommandGetTableTypes"
        | "CommandGetSqlInfo"
        | "CommandGetPrimaryKeys"
        | "CommandGetExportedKeys"
        | "CommandGetImportedKeys"
        | "CommandGetCrossReference"
        | "CommandGetXdbcTypeInfo"
            if read =>
        {
            only(EndpointAction::Describe)
        }
        _ => Err(AuthzError::Unsupported(format!(
            "the Flight SQL command {} is not allowed here",
            printable(if name.is_empty() { &type_url } else { name })
        ))),
    }
}

fn malformed(what: &str) -> impl Fn(prost::DecodeError) -> AuthzError + '_ {
    move |e| AuthzError::Malformed(format!("{what} does not decode: {e}"))
}

/// A client-chosen name, safe for a message.
fn printable(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_graphic()).take(80).collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn defaults() -> NameDefaults {
        NameDefaults { catalog: "datafusion".into(), schema: "public".into() }
    }

    fn descriptor(type_name: &str, value: Vec<u8>) -> Vec<u8> {
        let any = Any { type_url: format!("{TYPE_PREFIX}{type_name}"), value: value.into() };
        FlightDescriptor { r#type: 2, cmd: any.encode_to_vec().into() }.encode_to_vec()
    }

    #[test]
    fn statement_query_is_classified_from_its_sql() {
        let message = descriptor(
            "CommandStatementQuery",
            SqlCommand { query: "SELECT * FROM demo.orders".into() }.encode_to_vec(),
        );
        let access = classify(Rpc::GetFlightInfo, &message, &defaults()).unwrap();
        assert_eq!(access[0].endpoint, EndpointAction::Query);
        assert_eq!(access[0].datasets[0].1.to_string(), "datafusion.demo.orders");
    }

    #[test]
    fn catalog_commands_are_describe_and_unknown_ones_refused() {
        let message = descriptor("CommandGetTables", Vec::new());
        assert_eq!(classify(Rpc::GetFlightInfo, &message, &defaults()).unwrap()[0].endpoint, EndpointAction::Describe);
        let message = descriptor("CommandStatementSubstraitPlan", Vec::new());
        assert!(matches!(classify(Rpc::GetFlightInfo, &message, &defaults()), Err(AuthzError::Unsupported(_))));
        // An update command on a read RPC is refused, not treated as a query.
        let message =
            descriptor("CommandStatementUpdate", SqlCommand { query: "DELETE FROM t".into() }.encode_to_vec());
        assert!(classify(Rpc::GetFlightInfo, &message, &defaults()).is_err());
        assert!(matches!(classify(Rpc::GetFlightInfo, b"\xff\xff", &defaults()), Err(AuthzError::Malformed(_))));
    }

    #[test]
    fn do_put_update_and_ingest_name_their_targets() {
        let update = descriptor(
            "CommandStatementUpdate",
            SqlCommand { query: "INSERT INTO t VALUES (1)".into() }.encode_to_vec(),
        );
        let data = FlightData { flight_descriptor: Some(FlightDescriptor::decode(update.as_slice()).unwrap()) }
            .encode_to_vec();
        let access = classify(Rpc::DoPut, &data, &defaults()).unwrap();
        assert_eq!(access[0].endpoint, EndpointAction::Write);
        assert_eq!(access[0].datasets[0].0, DatasetAction::Insert);

        let ingest = CommandStatementIngest { table: "Orders".into(), schema: Some("demo".into()), catalog: None };
        let put = descriptor("CommandStatementIngest", ingest.encode_to_vec());
        let data =
            FlightData { flight_descriptor: Some(FlightDescriptor::decode(put.as_slice()).unwrap()) }.encode_to_vec();
        let access = classify(Rpc::DoPut, &data, &defaults()).unwrap();
        assert_eq!(access[0].datasets[0].1.to_string(), "datafusion.demo.Orders");
    }

    #[test]
    fn prepared_statements_are_authorized_when_created() {
        let request = Any {
            type_url: format!("{TYPE_PREFIX}ActionCreatePreparedStatementRequest"),
            value: SqlCommand { query: "SELECT * FROM secret".into() }.encode_to_vec().into(),
        };
        let action =
            Action { r#type: "CreatePreparedStatement".into(), body: request.encode_to_vec().into() }.encode_to_vec();
        let access = classify(Rpc::DoAction, &action, &defaults()).unwrap();
        assert_eq!(access[0].datasets[0].1.to_string(), "datafusion.public.secret");
        let other = Action { r#type: "BeginTransaction".into(), body: Bytes::new() }.encode_to_vec();
        assert!(matches!(classify(Rpc::DoAction, &other, &defaults()), Err(AuthzError::Unsupported(_))));
        for session in ["CloseSession", "GetSessionOptions", "SetSessionOptions", "CancelFlightInfo"] {
            let action = Action { r#type: session.into(), body: Bytes::new() }.encode_to_vec();
            let access = classify(Rpc::DoAction, &action, &defaults()).unwrap();
            assert!(
                matches!(access[..], [StatementAccess { endpoint: EndpointAction::Query, ref datasets }] if datasets.is_empty())
            );
        }
        // DoExchange carries a command like DoPut; without one it is refused.
        assert!(matches!(classify(Rpc::DoExchange, &[], &defaults()), Err(AuthzError::Malformed(_))));
    }
}
