"""Independent Flight SQL client check: the ADBC Flight SQL driver (Go implementation, from
PyPI) and pyarrow.flight against a running engine.

Run by engine/tests/integration/python_clients.rs, which starts the engine and passes:
  FLIGHT_URI   grpc://127.0.0.1:PORT
  STAMP        a valid identity stamp for principal "alice" in group "acme"
  BOB_STAMP    a valid identity stamp for principal "bob" in group "acme"
Runs every check, then exits non-zero if any failed (gateway/testkit/python/checks.py).
"""

import os

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight
from checks import check, finish, statement

URI = os.environ["FLIGHT_URI"]
STAMP = os.environ["STAMP"]
BOB_STAMP = os.environ["BOB_STAMP"]
HEADER = "x-portcullis-stamp"

def connect(stamp):
    kwargs = {}
    if stamp is not None:
        kwargs[f"adbc.flight.sql.rpc.call_header.{HEADER}"] = stamp
    return flightsql.connect(URI, db_kwargs=kwargs)


def query():
    with connect(STAMP) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_principal() AS p, tenant FROM my_orders ORDER BY order_id")
        rows = cur.fetchall()
        assert len(rows) == 4, rows
        assert all(r == ("alice", "acme") for r in rows), rows


def prepared_statement():
    with connect(STAMP) as conn, conn.cursor() as cur:
        sql = "SELECT order_id FROM my_orders WHERE order_id > $1 ORDER BY order_id"
        cur.adbc_prepare(sql)
        cur.execute(sql, parameters=(1002,))
        assert [r[0] for r in cur.fetchall()] == [1003, 1004]


def get_tables():
    with connect(STAMP) as conn:
        objects = conn.adbc_get_objects(depth="tables", db_schema_filter="demo").read_all().to_pylist()
        tables = {
            t["table_name"]
            for catalog in objects
            for schema in catalog["catalog_db_schemas"] or []
            for t in schema["db_schema_tables"] or []
        }
        assert {"customers", "orders"} <= tables, tables
        assert "VIEW" in conn.adbc_get_table_types()


def refused_without_stamp():
    try:
        with connect(None) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    except Exception as exc:
        assert "Unauthenticated" in str(exc) or "UNAUTHENTICATED" in str(exc) or "identity stamp" in str(exc), exc
    else:
        raise AssertionError("query without a stamp was served")


def refused_with_forged_stamp():
    try:
        with connect(STAMP[:-4] + "AAAA") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    except Exception as exc:
        assert "identity stamp" in str(exc), exc
    else:
        raise AssertionError("query with a forged stamp was served")


def ticket_bound_to_creator():
    # pyarrow.flight speaks plain Flight: reuse alice's Flight SQL ticket as bob.
    client = flight.FlightClient(URI)
    alice = flight.FlightCallOptions(headers=[(HEADER.encode(), STAMP.encode())])
    bob = flight.FlightCallOptions(headers=[(HEADER.encode(), BOB_STAMP.encode())])
    with connect(STAMP) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 AS one")
        cur.fetchall()
    # Build a Flight SQL CommandStatementQuery by hand (protobuf Any), as a second client would.
    command = statement("SELECT 42 AS answer")
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command), alice)
    ticket = info.endpoints[0].ticket
    assert client.do_get(ticket, alice).read_all().to_pylist() == [{"answer": 42}]
    try:
        client.do_get(ticket, bob).read_all()
    except flight.FlightError as exc:
        assert "another principal" in str(exc), exc
    else:
        raise AssertionError("bob used alice's ticket")


check("ADBC statement query as the stamped principal", query)
check("ADBC prepared statement with a bound parameter", prepared_statement)
check("ADBC GetObjects (GetCatalogs/GetDbSchemas/GetTables) and GetTableTypes", get_tables)
check("ADBC refused without a stamp", refused_without_stamp)
check("ADBC refused with a forged stamp", refused_with_forged_stamp)
check("pyarrow.flight ticket bound to its creator", ticket_bound_to_creator)

finish()
