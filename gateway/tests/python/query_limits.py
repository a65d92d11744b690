"""Row caps and the rows-per-window budget through the gateway, with real clients: HTTP
(JSON, CSV, Arrow IPC), pyarrow Flight SQL and ADBC. Run by
gateway/tests/integration/query_limits.rs, which configures the tiers.

CONFIG (JSON): http, flight, ca, keys ({capped, strict, bulk, budget}: API keys), cap (the
capped tiers' max_result_rows), rows (the statement's rows uncapped), window_secs (the
budget's window), sql (a statement of `rows` rows).
"""

import json
import os
import ssl
import time
import urllib.error
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight

from checks import check, finish, statement

CONFIG = json.loads(os.environ["CONFIG"])
CA = open(CONFIG["ca"], "rb").read()
KEYS = CONFIG["keys"]
CAP, ROWS, SQL = CONFIG["cap"], CONFIG["rows"], CONFIG["sql"]
CONTEXT = ssl.create_default_context(cadata=CA.decode())
ENCODINGS = {"json": "application/json", "csv": "text/csv", "arrow": "application/vnd.apache.arrow.stream"}


def http(key, accept, sql=SQL):
    """(status, headers, body) of POST /v1/sql."""
    request = urllib.request.Request(
        CONFIG["http"] + "/v1/sql", data=sql.encode(), method="POST", headers={"x-api-key": key, "accept": accept}
    )
    try:
        with urllib.request.urlopen(request, context=CONTEXT) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def rows_of(encoding, body):
    if encoding == "json":
        return len(json.loads(body))
    if encoding == "csv":
        return len(body.decode().splitlines()) - 1
    return pa.ipc.open_stream(body).read_all().num_rows


def flight_chunks(key, sql=SQL):
    """Every chunk of a pyarrow Flight SQL DoGet: [(rows, app_metadata)]."""
    client = flight.FlightClient(CONFIG["flight"], tls_root_certs=CA)
    options = flight.FlightCallOptions(headers=[(b"x-api-key", key.encode())])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(statement(sql)), options)
    reader = client.do_get(info.endpoints[0].ticket, options)
    chunks = []
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return chunks
        rows = chunk.data.num_rows if chunk.data is not None else 0
        chunks.append((rows, chunk.app_metadata.to_pybytes() if chunk.app_metadata else b""))


def adbc_rows(key, sql=SQL):
    kwargs = {
        "adbc.flight.sql.client_option.tls_root_certs": CA.decode(),
        "adbc.flight.sql.rpc.call_header.x-api-key": key,
    }
    with flightsql.connect(CONFIG["flight"], db_kwargs=kwargs, autocommit=True) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        return cursor.fetch_arrow_table().num_rows


def truncated_over_http(encoding):
    def run():
        status, headers, body = http(KEYS["capped"], ENCODINGS[encoding])
        assert status == 200, (status, body[:300])
        assert rows_of(encoding, body) == CAP, rows_of(encoding, body)
        assert headers["portcullis-truncated"] == "max_result_rows", dict(headers)
    return run


def truncated_over_flight():
    chunks = flight_chunks(KEYS["capped"])
    assert sum(rows for rows, _ in chunks) == CAP, chunks
    assert json.loads(chunks[-1][1]) == {"truncated": "max_result_rows"}, chunks[-1]


def truncated_over_adbc():
    rows = adbc_rows(KEYS["capped"])
    assert rows == CAP, rows


def under_the_cap_is_whole_and_unflagged():
    status, headers, body = http(KEYS["capped"], ENCODINGS["json"], f"SELECT * FROM ({SQL}) LIMIT {CAP}")
    assert status == 200 and rows_of("json", body) == CAP, (status, body[:200])
    assert "portcullis-truncated" not in headers, dict(headers)
    assert all(not meta for _, meta in flight_chunks(KEYS["capped"], f"SELECT * FROM ({SQL}) LIMIT {CAP}"))


def fail_mode_refuses():
    for encoding in ENCODINGS:
        status, _, body = http(KEYS["strict"], ENCODINGS[encoding])
        error = json.loads(body)["error"]
        assert status == 403 and error["code"] == "result_limit", (status, body[:300])
        assert f"more than {CAP} rows" in error["message"] and "max_result_rows" in error["message"], error
    try:
        flight_chunks(KEYS["strict"])
    except pa.ArrowException as error:
        assert "max_result_rows" in str(error), error
    else:
        raise AssertionError("a Flight result over the cap in fail mode was served")


def cedar_lifts_the_cap_for_bulk_export_only():
    for encoding in ENCODINGS:
        status, headers, body = http(KEYS["bulk"], ENCODINGS[encoding])
        assert status == 200 and rows_of(encoding, body) == ROWS, (status, encoding)
        assert "portcullis-truncated" not in headers
    assert sum(rows for rows, _ in flight_chunks(KEYS["bulk"])) == ROWS
    assert adbc_rows(KEYS["bulk"]) == ROWS


def the_budget_refuses_once_spent_and_recovers():
    # ROWS rows against a budget of 1.5 × ROWS: the second query overdraws, the third waits.
    sql = SQL
    assert http(KEYS["budget"], ENCODINGS["arrow"], sql)[0] == 200
    assert sum(rows for rows, _ in flight_chunks(KEYS["budget"], sql)) == ROWS
    status, headers, body = http(KEYS["budget"], ENCODINGS["json"], "SELECT 1")
    error = json.loads(body)["error"]
    assert status == 429 and error["code"] == "row_budget_exhausted", (status, body)
    retry = int(headers["retry-after"])
    assert 1 <= retry <= CONFIG["window_secs"], retry
    try:
        flight_chunks(KEYS["budget"], "SELECT 1")
    except pa.ArrowException as error:  # RESOURCE_EXHAUSTED
        assert "rows_per_window" in str(error), error
    else:
        raise AssertionError("a Flight query past the budget was served")
    time.sleep(retry + 0.2)
    assert http(KEYS["budget"], ENCODINGS["json"], "SELECT 1")[0] == 200


for encoding in ENCODINGS:
    check(f"a result over max_result_rows is truncated and flagged over HTTP {encoding}", truncated_over_http(encoding))
check("over pyarrow Flight SQL: the cap's rows, app_metadata on the last message", truncated_over_flight)
check("over ADBC: the cap's rows", truncated_over_adbc)
check("a result of exactly the cap is whole and not flagged", under_the_cap_is_whole_and_unflagged)
check("on_exceed: fail refuses with result_limit on every protocol", fail_mode_refuses)
check("a Cedar permit of unlimited_rows lifts the cap", cedar_lifts_the_cap_for_bulk_export_only)
check("the rows-per-window budget: 429 with Retry-After once spent, served again after", the_budget_refuses_once_spent_and_recovers)
finish()
