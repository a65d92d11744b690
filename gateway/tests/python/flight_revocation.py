"""Revocation reaches what was issued: a Flight statement ticket and a prepared statement
obtained before a policy change are refused after it (pyarrow.flight, Flight SQL messages
built by hand).

Run by gateway/tests/integration/authz.rs: FLIGHT_URI, CA_FILE, ACME_KEY. Phase one issues
the ticket and the handle, checks both run, prints "issued" and waits for a line on stdin
(the test hot-reloads a forbid meanwhile); phase two checks both are refused as stale and
that planning anew is refused by Cedar. Exits non-zero if any check fails.
"""

import os
import sys

import pyarrow
import pyarrow.flight as flight

from checks import check, field, finish, sql_any, statement

URI = os.environ["FLIGHT_URI"]
CA = open(os.environ["CA_FILE"], "rb").read()
OPTIONS = flight.FlightCallOptions(headers=[(b"x-api-key", os.environ["ACME_KEY"].encode())])
SQL = b"SELECT order_id FROM acme.orders"
client = flight.FlightClient(URI, tls_root_certs=CA)


def fields(message):
    """Length-delimited protobuf fields of `message`, by number (all this test reads)."""
    out, i = {}, 0
    while i < len(message):
        key, i = _varint(message, i)
        length, i = _varint(message, i)
        out[key >> 3] = message[i:i + length]
        i += length
    return out


def _varint(data, i):
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def prepare():
    action = flight.Action("CreatePreparedStatement", sql_any(b"ActionCreatePreparedStatementRequest", field(1, SQL)))
    result = list(client.do_action(action, OPTIONS))[0].body.to_pybytes()
    return fields(fields(result)[2])[1]  # Any.value → ActionCreatePreparedStatementResult.handle


def run_prepared(handle):
    command = sql_any(b"CommandPreparedStatementQuery", field(1, handle))
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command), OPTIONS)
    return client.do_get(info.endpoints[0].ticket, OPTIONS).read_all().num_rows


def expect_stale(fn):
    try:
        fn()
    except pyarrow.ArrowException as exc:
        assert "policies that have changed" in str(exc), str(exc)[:300]
    else:
        raise AssertionError("ran after the policy change")


info = client.get_flight_info(flight.FlightDescriptor.for_command(statement(SQL)), OPTIONS)
ticket = info.endpoints[0].ticket
handle = prepare()
check("before: the ticket runs", lambda: client.do_get(ticket, OPTIONS).read_all().num_rows > 0 or 1 / 0)
check("before: the prepared statement runs", lambda: run_prepared(handle) > 0 or 1 / 0)
print("issued", flush=True)
sys.stdin.readline()
check("after: the ticket is refused as stale", lambda: expect_stale(lambda: client.do_get(ticket, OPTIONS).read_all()))
check("after: the prepared statement is refused as stale", lambda: expect_stale(lambda: run_prepared(handle)))


def planning_again_is_refused():
    try:
        client.get_flight_info(flight.FlightDescriptor.for_command(statement(SQL)), OPTIONS)
    except flight.FlightUnauthorizedError as exc:
        assert "select on dataset datafusion.acme.orders is not allowed" in str(exc), exc
    else:
        raise AssertionError("planned after the forbid")


check("after: planning again is refused by Cedar", planning_again_is_refused)
finish()
