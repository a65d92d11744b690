//! The Flight session actions client libraries send in normal use: ADBC closes its session
//! on every connection, and may read or set session options; CancelFlightInfo comes with a
//! cancelled query. The engine keeps no session (every call carries its caller's stamp), so
//! closing always succeeds, there are no options to read, setting any option is refused per
//! option (INVALID_NAME), and a query cannot be cancelled after its FlightInfo was returned
//! (its ticket is self-contained). arrow-flight 59 has no types for the session messages;
//! they are declared here as in Flight.proto.

use std::collections::HashMap;

use arrow_flight::{CancelFlightInfoResult, CancelStatus};
use prost::Message;
use tonic::Status;

/// `arrow.flight.protocol.CloseSessionResult`.
#[derive(Clone, PartialEq, Message)]
struct CloseSessionResult {
    /// `Status`: 1 = CLOSED.
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `arrow.flight.protocol.SetSessionOptionsRequest`: only the option names are read.
#[derive(Clone, PartialEq, Message)]
struct SetSessionOptionsRequest {
    #[prost(map = "string, bytes", tag = "1")]
    session_options: HashMap<String, Vec<u8>>,
}

/// `arrow.flight.protocol.SetSessionOptionsResult`.
#[derive(Clone, PartialEq, Message)]
struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    errors: HashMap<String, SessionOptionError>,
}

#[derive(Clone, PartialEq, Message)]
struct SessionOptionError {
    /// `ErrorValue`: 1 = INVALID_NAME.
    #[prost(int32, tag = "1")]
    value: i32,
}

/// The `Result` body of a session action, or `None` when `action` is not one.
pub(crate) fn answer(action: &str, body: &[u8]) -> Option<Result<Vec<u8>, Status>> {
    Some(match action {
        "CloseSession" => Ok(CloseSessionResult { status: 1 }.encode_to_vec()),
        // An empty GetSessionOptionsResult: no options.
        "GetSessionOptions" => Ok(Vec::new()),
        "SetSessionOptions" => SetSessionOptionsRequest::decode(body)
            .map_err(|e| Status::invalid_argument(format!("SetSessionOptionsRequest: {e}")))
            .map(|request| {
                let errors =
                    request.session_options.into_keys().map(|name| (name, SessionOptionError { value: 1 })).collect();
                SetSessionOptionsResult { errors }.encode_to_vec()
            }),
        "CancelFlightInfo" => {
            Ok(CancelFlightInfoResult { status: CancelStatus::NotCancellable as i32 }.encode_to_vec())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_actions_have_harmless_answers() {
        let closed = CloseSessionResult::decode(answer("CloseSession", &[]).unwrap().unwrap().as_slice()).unwrap();
        assert_eq!(closed.status, 1);
        assert!(answer("GetSessionOptions", &[]).unwrap().unwrap().is_empty());
        let request = SetSessionOptionsRequest { session_options: HashMap::from([("catalog".into(), Vec::new())]) };
        let set = answer("SetSessionOptions", &request.encode_to_vec()).unwrap().unwrap();
        let result = SetSessionOptionsResult::decode(set.as_slice()).unwrap();
        assert_eq!(result.errors.get("catalog"), Some(&SessionOptionError { value: 1 }));
        assert!(answer("SetSessionOptions", b"\xff\xff").unwrap().is_err());
        assert!(answer("BeginTransaction", &[]).is_none());
    }
}
