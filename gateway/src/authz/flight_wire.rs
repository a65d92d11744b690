//! The Flight and Flight SQL wire, as far as the gateway reads it: the RPC from the gRPC
//! path, the first message's framing, the protobuf messages calls carry (descriptors,
//! tickets, actions, Flight SQL commands), and the tokens (tickets, prepared-statement
//! handles) a planning call hands out and a later call presents. No policy here: what a
//! call may do is decided in [`super::flight`].

use bytes::Bytes;
use prost::Message;

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
pub(super) struct FlightDescriptor {
    /// 1 = PATH, 2 = CMD.
    #[prost(int32, tag = "1")]
    pub(super) r#type: i32,
    #[prost(bytes = "bytes", tag = "2")]
    pub(super) cmd: Bytes,
}

/// DoPut's first message; its other fields (the data) are skipped unread.
#[derive(Clone, PartialEq, Message)]
pub(super) struct FlightData {
    #[prost(message, optional, tag = "1")]
    pub(super) flight_descriptor: Option<FlightDescriptor>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Action {
    #[prost(string, tag = "1")]
    pub(super) r#type: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub(super) body: Bytes,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Any {
    #[prost(string, tag = "1")]
    pub(super) type_url: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub(super) value: Bytes,
}

/// `CommandStatementQuery`, `CommandStatementUpdate` and
/// `ActionCreatePreparedStatementRequest` all carry their SQL in field 1.
#[derive(Clone, PartialEq, Message)]
pub(super) struct SqlCommand {
    #[prost(string, tag = "1")]
    pub(super) query: String,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct CommandStatementIngest {
    #[prost(string, tag = "2")]
    pub(super) table: String,
    #[prost(string, optional, tag = "3")]
    pub(super) schema: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub(super) catalog: Option<String>,
}

pub(super) const TYPE_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

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

#[derive(Clone, PartialEq, Message)]
pub(super) struct Ticket {
    #[prost(bytes = "bytes", tag = "1")]
    pub(super) ticket: Bytes,
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
pub(super) struct FirstBytes {
    #[prost(bytes = "bytes", tag = "1")]
    pub(super) value: Bytes,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct FlightEndpoint {
    #[prost(message, optional, tag = "1")]
    pub(super) ticket: Option<Ticket>,
}

/// `FlightInfo`, only its endpoints.
#[derive(Clone, PartialEq, Message)]
pub(super) struct FlightInfo {
    #[prost(message, repeated, tag = "3")]
    pub(super) endpoint: Vec<FlightEndpoint>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct PollInfo {
    #[prost(message, optional, tag = "1")]
    pub(super) info: Option<FlightInfo>,
}

/// The token a call presents that an earlier call planned, for the audit record (see
/// `audit::plans`): DoGet's ticket, or the handle of a prepared statement being bound
/// (DoPut), executed (GetFlightInfo, PollFlightInfo, GetSchema) or closed.
pub fn presented_token(rpc: Rpc, message: &[u8]) -> Option<Bytes> {
    let descriptor = match rpc {
        Rpc::DoGet => return Some(Ticket::decode(message).ok()?.ticket).filter(|t| !t.is_empty()),
        Rpc::GetFlightInfo | Rpc::PollFlightInfo | Rpc::GetSchema => FlightDescriptor::decode(message).ok()?,
        Rpc::DoPut => FlightData::decode(message).ok()?.flight_descriptor?,
        Rpc::DoAction => {
            let action = Action::decode(message).ok()?;
            if action.r#type != "ClosePreparedStatement" {
                return None;
            }
            let any = Any::decode(action.body).ok()?;
            return Some(FirstBytes::decode(any.value).ok()?.value).filter(|h| !h.is_empty());
        }
        _ => return None,
    };
    let any = Any::decode(descriptor.cmd).ok()?;
    if any.type_url.strip_prefix(TYPE_PREFIX)? != "CommandPreparedStatementQuery" {
        return None;
    }
    Some(FirstBytes::decode(any.value).ok()?.value).filter(|h| !h.is_empty())
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

/// Whether a DoAction (by its [`action_operation`] name) is session bookkeeping: it decides
/// nothing about data, changes nothing, and clients make it on their own (ADBC closes its
/// prepared statement and its session). Audit may count these instead of writing each
/// (`audit.session_bookkeeping`); `SetSessionOptions`, which asks for a change, is not one.
pub fn is_bookkeeping_action(operation: &str) -> bool {
    matches!(operation, "DoAction ClosePreparedStatement" | "DoAction CloseSession" | "DoAction GetSessionOptions")
}

/// Whether a GetFlightInfo asks for the server's SqlInfo (ADBC does when it connects):
/// session bookkeeping like [`is_bookkeeping_action`].
pub fn asks_sql_info(message: &[u8]) -> bool {
    FlightDescriptor::decode(message)
        .ok()
        .and_then(|descriptor| Any::decode(descriptor.cmd).ok())
        .is_some_and(|any| any.type_url.strip_prefix(TYPE_PREFIX) == Some("CommandGetSqlInfo"))
}

/// The audit's name for a DoAction call: `DoAction` and the action, for the actions the
/// gateway passes (a closed set, so the name is never the caller's text); `None` for any
/// other (refused, and named in the refusal's message).
pub fn action_operation(message: &[u8]) -> Option<&'static str> {
    let action = Action::decode(message).ok()?;
    Some(match action.r#type.as_str() {
        "CreatePreparedStatement" => "DoAction CreatePreparedStatement",
        "ClosePreparedStatement" => "DoAction ClosePreparedStatement",
        "CloseSession" => "DoAction CloseSession",
        "GetSessionOptions" => "DoAction GetSessionOptions",
        "SetSessionOptions" => "DoAction SetSessionOptions",
        "CancelFlightInfo" => "DoAction CancelFlightInfo",
        _ => return None,
    })
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
}
