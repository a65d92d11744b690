//! What a Flight / Flight SQL call does, for Cedar. The RPC comes from the gRPC path; for
//! the calls that carry a command (GetFlightInfo, PollFlightInfo, GetSchema, DoPut,
//! DoExchange, DoAction) the first request message is decoded: SQL commands go through [`super::sql`], catalog
//! commands are `describe`, and anything unknown is refused.
//!
//! DoGet's ticket comes from a GetFlightInfo this stage authorized, and the engine binds
//! tickets and prepared-statement handles to the principal that asked; it is read only to
//! tell a catalog listing (a GetTables, GetDbSchemas or GetCatalogs ticket, whose answer the
//! engine filters by the list the stamp carries) from a query.

use bytes::Bytes;
use prost::Message;

use super::error::AuthzError;
use super::sql::{self, DatasetAction, EndpointAction, NameDefaults, StatementAccess};

pub const SERVICE: &str = "/arrow.flight.protocol.FlightService/";

/// The Flight RPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    ListFlights,
    GetFlightInfo,
    PollFlightInfo,
    GetSchema,
    DoGet,
    DoPut,
    DoExchange,
    DoAction,
    ListActions,
}

impl Rpc {
    pub fn from_path(path: &str) -> Option<Self> {
        Some(match path.strip_prefix(SERVICE)? {
            "ListFlights" => Self::ListFlights,
            "GetFlightInfo" => Self::GetFlightInfo,
            "PollFlightInfo" => Self::PollFlightInfo,
            "GetSchema" => Self::GetSchema,
            "DoGet" => Self::DoGet,
            "DoPut" => Self::DoPut,
            "DoExchange" => Self::DoExchange,
            "DoAction" => Self::DoAction,
            "ListActions" => Self::ListActions,
            _ => return None,
        })
    }

    /// The RPC's name, e.g. for metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::ListFlights => "ListFlights",
            Self::GetFlightInfo => "GetFlightInfo",
            Self::PollFlightInfo => "PollFlightInfo",
            Self::GetSchema => "GetSchema",
            Self::DoGet => "DoGet",
            Self::DoPut => "DoPut",
            Self::DoExchange => "DoExchange",
            Self::DoAction => "DoAction",
            Self::ListActions => "ListActions",
        }
    }

    /// Whether the first request message decides what the call does.
    pub fn needs_message(self) -> bool {
        matches!(
            self,
            Self::GetFlightInfo
                | Self::DoGet
                | Self::PollFlightInfo
                | Self::GetSchema
                | Self::DoPut
                | Self::DoExchange
                | Self::DoAction
        )
    }
}

#[derive(Clone, PartialEq, Message)]
struct FlightDescriptor {
    /// 1 = PATH, 2 = CMD.
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(bytes = "bytes", tag = "2")]
    cmd: Bytes,
}

/// DoPut's first message; its other fields (the data) are skipped unread.
#[derive(Clone, PartialEq, Message)]
struct FlightData {
    #[prost(message, optional, tag = "1")]
    flight_descriptor: Option<FlightDescriptor>,
}

#[derive(Clone, PartialEq, Message)]
struct Action {
    #[prost(string, tag = "1")]
    r#type: String,
    #[prost(bytes = "bytes", tag = "2")]
    body: Bytes,
}

#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "bytes", tag = "2")]
    value: Bytes,
}

/// `CommandStatementQuery`, `CommandStatementUpdate` and
/// `ActionCreatePreparedStatementRequest` all carry their SQL in field 1.
#[derive(Clone, PartialEq, Message)]
struct SqlCommand {
    #[prost(string, tag = "1")]
    query: String,
}

#[derive(Clone, PartialEq, Message)]
struct CommandStatementIngest {
    #[prost(string, tag = "2")]
    table: String,
    #[prost(string, optional, tag = "3")]
    schema: Option<String>,
    #[prost(string, optional, tag = "4")]
    catalog: Option<String>,
}

const TYPE_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// Classifies one call; `message` is the first request message for [`Rpc::needs_message`].
/// Why a gRPC request's first message cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The compressed flag is set: the gateway cannot read what it would authorize.
    Compressed,
    /// The declared length is over the limit.
    TooLarge,
}

/// The first gRPC message in what has been read of a request body (a 1-byte compressed flag,
/// a 4-byte big-endian length, the message): its byte range once complete, `None` while
/// more is needed.
pub fn first_message(read: &[u8], max_len: usize) -> Result<Option<std::ops::Range<usize>>, FrameError> {
    let Some(&[flag, a, b, c, d]) = read.first_chunk::<5>() else { return Ok(None) };
    if flag != 0 {
        return Err(FrameError::Compressed);
    }
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len > max_len {
        return Err(FrameError::TooLarge);
    }
    Ok((read.len() >= 5 + len).then_some(5..5 + len))
}

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

#[derive(Clone, PartialEq, Message)]
struct Ticket {
    #[prost(bytes = "bytes", tag = "1")]
    ticket: Bytes,
}

/// Whether DoGet's `message` is a ticket for a catalog listing. The engine's catalog
/// tickets are the Flight SQL command itself; statement tickets are sealed, anything else
/// is the engine's to refuse.
pub fn listing_ticket(message: &[u8]) -> bool {
    let Some(any) = Ticket::decode(message).ok().and_then(|t| Any::decode(t.ticket).ok()) else {
        return false;
    };
    matches!(
        any.type_url.strip_prefix(TYPE_PREFIX),
        Some("CommandGetCatalogs" | "CommandGetDbSchemas" | "CommandGetTables")
    )
}

/// The field-1 bytes of `CommandPreparedStatementQuery` / `ActionCreatePreparedStatementResult`
/// (the handle), and of `arrow.flight.protocol.Result` (its body).
#[derive(Clone, PartialEq, Message)]
struct FirstBytes {
    #[prost(bytes = "bytes", tag = "1")]
    value: Bytes,
}

#[derive(Clone, PartialEq, Message)]
struct FlightEndpoint {
    #[prost(message, optional, tag = "1")]
    ticket: Option<Ticket>,
}

/// `FlightInfo`, only its endpoints.
#[derive(Clone, PartialEq, Message)]
struct FlightInfo {
    #[prost(message, repeated, tag = "3")]
    endpoint: Vec<FlightEndpoint>,
}

#[derive(Clone, PartialEq, Message)]
struct PollInfo {
    #[prost(message, optional, tag = "1")]
    info: Option<FlightInfo>,
}

/// The token a call presents that an earlier call planned, for the audit record (see
/// `audit::plans`): DoGet's ticket, or the handle of a prepared statement being executed.
pub fn presented_token(rpc: Rpc, message: &[u8]) -> Option<Bytes> {
    match rpc {
        Rpc::DoGet => Some(Ticket::decode(message).ok()?.ticket).filter(|t| !t.is_empty()),
        Rpc::GetFlightInfo | Rpc::PollFlightInfo | Rpc::GetSchema => {
            let any = Any::decode(FlightDescriptor::decode(message).ok()?.cmd).ok()?;
            if any.type_url.strip_prefix(TYPE_PREFIX)? != "CommandPreparedStatementQuery" {
                return None;
            }
            Some(FirstBytes::decode(any.value).ok()?.value).filter(|h| !h.is_empty())
        }
        _ => None,
    }
}

/// The tokens a planning call's first response message hands out: the endpoints' tickets of
/// GetFlightInfo / PollFlightInfo, the handle of CreatePreparedStatement.
pub fn planned_tokens(rpc: Rpc, message: &[u8]) -> Vec<Bytes> {
    let tickets = |info: FlightInfo| info.endpoint.into_iter().filter_map(|e| e.ticket).map(|t| t.ticket).collect();
    match rpc {
        Rpc::GetFlightInfo => FlightInfo::decode(message).map(tickets).unwrap_or_default(),
        Rpc::PollFlightInfo => PollInfo::decode(message).ok().and_then(|p| p.info).map(tickets).unwrap_or_default(),
        Rpc::DoAction => {
            let handle = FirstBytes::decode(message)
                .ok()
                .and_then(|result| Any::decode(result.value).ok())
                .filter(|any| any.type_url.strip_prefix(TYPE_PREFIX) == Some("ActionCreatePreparedStatementResult"))
                .and_then(|any| FirstBytes::decode(any.value).ok());
            handle.map(|h| h.value).into_iter().filter(|h| !h.is_empty()).collect()
        }
        _ => Vec::new(),
    }
}

/// The SQL a call carries, for the audit record: a statement query or update, or the
/// statement a prepared statement is created from. `None` for anything else or on a decode
/// error (the authorization answer already covers those).
pub fn sql_text(rpc: Rpc, message: &[u8]) -> Option<String> {
    let descriptor = match rpc {
        Rpc::GetFlightInfo | Rpc::PollFlightInfo | Rpc::GetSchema => FlightDescriptor::decode(message).ok()?,
        Rpc::DoPut | Rpc::DoExchange => FlightData::decode(message).ok()?.flight_descriptor?,
        Rpc::DoAction => {
            let action = Action::decode(message).ok()?;
            if action.r#type != "CreatePreparedStatement" {
                return None;
            }
            let any = Any::decode(action.body).ok()?;
            return Some(SqlCommand::decode(any.value).ok()?.query);
        }
        _ => return None,
    };
    let any = Any::decode(descriptor.cmd).ok()?;
    match any.type_url.strip_prefix(TYPE_PREFIX)? {
        "CommandStatementQuery" | "CommandStatementUpdate" => Some(SqlCommand::decode(any.value).ok()?.query),
        _ => None,
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
    use super::*;

    #[test]
    fn the_first_message_is_found_only_when_complete() {
        assert_eq!(first_message(&[0, 0, 0], 10), Ok(None));
        assert_eq!(first_message(&[0, 0, 0, 0, 2, 7], 10), Ok(None));
        assert_eq!(first_message(&[0, 0, 0, 0, 2, 7, 8, 9], 10), Ok(Some(5..7)));
        assert_eq!(first_message(&[0, 0, 0, 0, 0], 10), Ok(Some(5..5)));
        assert_eq!(first_message(&[1, 0, 0, 0, 0], 10), Err(FrameError::Compressed));
        assert_eq!(first_message(&[0, 0xff, 0xff, 0xff, 0xff], 10), Err(FrameError::TooLarge));
    }

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
