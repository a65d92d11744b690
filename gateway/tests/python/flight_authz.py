"""Cedar authorization through the gateway's Flight listener with real Flight SQL clients:
pyarrow.flight (Handshake with an API key, then Flight SQL commands built by hand) and ADBC.

Run by gateway/tests/integration/authz.rs with the shipped policies, which passes:
  FLIGHT_URI   grpc+tls://localhost:PORT (the gateway's Flight listener)
  CA_FILE      the CA that signed the gateway's certificate
  ACME_KEY     an API key for service "acme-reader" (tenant acme, group acme)
Exits non-zero if any check fails.
"""

import os

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight

from checks import check, field, finish, sql_any, statement

URI = os.environ["FLIGHT_URI"]
CA = open(os.environ["CA_FILE"], "rb").read()
ACME_KEY = os.environ["ACME_KEY"]

def session():
    client = flight.FlightClient(URI, tls_root_certs=CA)
    header = client.authenticate_basic_token(b"acme-reader", ACME_KEY.encode())
    return client, flight.FlightCallOptions(headers=[header])


def expect_denied(fn, *needles):
    try:
        fn()
    except flight.FlightUnauthorizedError as exc:  # gRPC PERMISSION_DENIED
        for needle in needles:
            assert needle in str(exc), (needle, str(exc))
    else:
        raise AssertionError("the call was allowed")


def own_tenant_is_readable():
    client, options = session()
    info = client.get_flight_info(flight.FlightDescriptor.for_command(statement("SELECT DISTINCT tenant FROM acme.orders")), options)
    rows = client.do_get(info.endpoints[0].ticket, options).read_all().to_pylist()
    assert rows == [{"tenant": "acme"}], rows


def other_tenant_is_refused_by_any_spelling():
    client, options = session()
    for sql in [
        "SELECT * FROM globex.orders",
        "select * from GLOBEX.Orders",
        'SELECT * FROM "globex"."orders"',
        "SELECT * FROM acme.orders WHERE order_id IN (SELECT order_id FROM datafusion.globex.orders)",
        "WITH x AS (SELECT * FROM globex.customers) SELECT * FROM x",
    ]:
        descriptor = flight.FlightDescriptor.for_command(statement(sql))
        expect_denied(lambda: client.get_flight_info(descriptor, options), "select on dataset datafusion.globex.")


def prepared_statement_of_other_tenant_is_refused():
    client, options = session()
    body = sql_any(b"ActionCreatePreparedStatementRequest", field(1, b"SELECT * FROM globex.orders"))
    action = flight.Action("CreatePreparedStatement", body)
    expect_denied(lambda: list(client.do_action(action, options)), "datafusion.globex.orders")


def catalog_calls_list_only_what_the_caller_may_read():
    client, options = session()
    info = client.get_flight_info(flight.FlightDescriptor.for_command(sql_any(b"CommandGetTables", b"")), options)
    tables = client.do_get(info.endpoints[0].ticket, options).read_all().to_pylist()
    names = sorted(f"{t['db_schema_name']}.{t['table_name']}" for t in tables)
    assert "acme.orders" in names and "public.my_orders" in names, names
    # demo.customers is shared (row policy shows each tenant its own rows); demo.orders is not.
    assert not [n for n in names if n.startswith("globex.") or n == "demo.orders"], names
    # ADBC's GetObjects (GetCatalogs, GetDbSchemas, GetTables): the other tenant's schema is
    # not even named.
    kwargs = {
        "adbc.flight.sql.client_option.tls_root_certs": CA.decode(),
        "adbc.flight.sql.rpc.call_header.x-api-key": ACME_KEY,
    }
    with flightsql.connect(URI, db_kwargs=kwargs, autocommit=True) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        schemas = {s["db_schema_name"] for c in objects for s in c["catalog_db_schemas"] or []}
        tables = {t["table_name"] for c in objects for s in c["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []}
        assert schemas == {"acme", "demo", "public"}, schemas
        assert {"orders", "customers", "my_orders", "whoami"} <= tables, tables


def adbc_reads_own_tenant_and_is_refused_the_other():
    kwargs = {
        "adbc.flight.sql.client_option.tls_root_certs": CA.decode(),
        "adbc.flight.sql.rpc.call_header.x-api-key": ACME_KEY,
    }
    with flightsql.connect(URI, db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM acme.customers")
        assert cur.fetch_arrow_table().to_pylist() == [{"n": 3}]
        try:
            cur.execute("SELECT * FROM globex.customers")
            cur.fetch_arrow_table()
        except Exception as exc:
            assert "select on dataset datafusion.globex.customers is not allowed" in str(exc), exc
        else:
            raise AssertionError("ADBC read the other tenant's dataset")
        # API keys are read-only, whichever RPC carries the statement.
        for sql, needle in [("DELETE FROM acme.orders", "write on endpoint"), ("DROP TABLE acme.orders", "admin on endpoint")]:
            try:
                cur.execute(sql)
                cur.fetchall()
            except Exception as exc:
                assert needle in str(exc), (sql, exc)
            else:
                raise AssertionError(f"ADBC ran {sql!r} with a read-only key")


def engine_errors_reach_the_client():
    # The engine answers these with a trailers-only gRPC error (no data): its status and
    # message must arrive, not "server closed the stream without sending trailers".
    kwargs = {
        "adbc.flight.sql.client_option.tls_root_certs": CA.decode(),
        "adbc.flight.sql.rpc.call_header.x-api-key": ACME_KEY,
    }
    with flightsql.connect(URI, db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT nosuchcol FROM acme.orders")
            cur.fetchall()
        except Exception as exc:
            assert "nosuchcol" in str(exc) and "trailers" not in str(exc), exc
        else:
            raise AssertionError("a typo ran")
    client, options = session()
    try:
        client.get_flight_info(flight.FlightDescriptor.for_command(statement("SELECT nosuchcol FROM acme.orders")), options)
    except Exception as exc:  # pyarrow maps INVALID_ARGUMENT to ArrowInvalid
        assert "invalid argument" in str(exc) and "nosuchcol" in str(exc), exc
    else:
        raise AssertionError("GetFlightInfo planned a typo")
    try:
        client.do_get(flight.Ticket(b"not-a-ticket"), options).read_all()
    except Exception as exc:
        assert "Stream removed" not in str(exc) and "invalid argument" in str(exc), exc
        # A message, not a decoder's Debug output.
        assert "not a Flight SQL message" in str(exc) and "DecodeError" not in str(exc), exc
    else:
        raise AssertionError("a bogus ticket was served")


def errors_quote_no_hidden_row():
    # The view my_customers hides globex's rows from acme; an expression that fails on one of
    # them must not quote it back (the raw values come from the demo CSV, every byte checked).
    hidden = os.environ["HIDDEN_VALUES"].split("\n")
    client, options = session()
    for sql in [
        "SELECT customer_id FROM my_customers WHERE CAST(CASE WHEN tenant = 'globex' THEN name ELSE '1' END AS INT) = 1",
        "SELECT customer_id FROM my_customers WHERE CAST(CASE WHEN tenant = 'globex' THEN email ELSE '1' END AS INT) = 1",
        "SELECT customer_id FROM my_customers WHERE arrow_cast(CASE WHEN tenant = 'globex' THEN country ELSE '1' END, 'Int64') = 1",
        "SELECT customer_id FROM my_customers WHERE regexp_like('x', CASE WHEN tenant = 'globex' THEN name || '(' ELSE 'x' END)",
    ]:
        try:
            info = client.get_flight_info(flight.FlightDescriptor.for_command(statement(sql)), options)
            text = str(client.do_get(info.endpoints[0].ticket, options).read_all().to_pylist())
        except Exception as exc:
            text = str(exc)
        leaked = [v for v in hidden if v and v in text]
        assert not leaked, (sql, leaked, text[:300])


check("own tenant's dataset is readable", own_tenant_is_readable)
check("errors quote no row a view hides", errors_quote_no_hidden_row)
check("engine errors (trailers-only) reach ADBC and pyarrow", engine_errors_reach_the_client)
check("other tenant's dataset is refused by any spelling", other_tenant_is_refused_by_any_spelling)
check("a prepared statement on the other tenant is refused", prepared_statement_of_other_tenant_is_refused)
check("Flight SQL GetTables / ADBC GetObjects list only what the caller may read", catalog_calls_list_only_what_the_caller_may_read)
check("ADBC: own tenant read, other tenant and writes refused", adbc_reads_own_tenant_and_is_refused_the_other)

finish()
