//! Flight first-message decoding: the gRPC frame reader, then the message as each RPC's
//! command (FlightDescriptor, Ticket, Action...), ticket and token readers.
#![no_main]

use gateway::internal::flight;
use gateway::internal::flight_wire::{self, Rpc};
use gateway::internal::sql::NameDefaults;
use libfuzzer_sys::fuzz_target;

const RPCS: &[&str] = &[
    "/arrow.flight.protocol.FlightService/GetFlightInfo",
    "/arrow.flight.protocol.FlightService/PollFlightInfo",
    "/arrow.flight.protocol.FlightService/GetSchema",
    "/arrow.flight.protocol.FlightService/DoGet",
    "/arrow.flight.protocol.FlightService/DoPut",
    "/arrow.flight.protocol.FlightService/DoExchange",
    "/arrow.flight.protocol.FlightService/DoAction",
    "/arrow.flight.protocol.FlightService/ListFlights",
    "/arrow.flight.protocol.FlightService/ListActions",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Some(rpc) = Rpc::from_path(RPCS[usize::from(which) % RPCS.len()]) else { return };
    let defaults = NameDefaults { catalog: "datafusion".into(), schema: "public".into() };
    if let Ok(Some(range)) = flight_wire::first_message(rest, 1 << 20) {
        assert!(range.end <= rest.len());
        let message = &rest[range];
        let _ = flight::classify(rpc, message, &defaults);
        let _ = flight_wire::listing_ticket(message);
        let _ = flight_wire::presented_token(rpc, message);
    }
    let _ = flight::classify(rpc, rest, &defaults);
});
