"""Row filters, masks and column denies through the gateway, tested like an attacker: for
each principal, every raw value it must not see (a masked or denied column's value, any value
of a row its filter hides) is looked for in every byte of every answer, over HTTP (JSON, CSV,
Arrow IPC), pyarrow Flight SQL (statements) and ADBC (prepared statements with parameters).

Run by gateway/tests/integration/data_policy.rs, which passes in CONFIG (JSON):
  http, flight, ca        the gateway's listeners and the CA of its certificate
  customers               the path of the demo customers CSV (the raw values)
  principals              [{name, key, rows: tenant | "all" | "none", unmask: [columns],
                            denied: [columns]}]
Exits non-zero if any check fails.
"""

import csv
import json
import os
import ssl
import urllib.error
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight

from checks import check, finish, statement

CONFIG = json.loads(os.environ["CONFIG"])
CA = open(CONFIG["ca"], "rb").read()
ROWS = list(csv.DictReader(open(CONFIG["customers"])))
TAGGED = ["email", "phone", "national_id"]

# Statement shapes: each must answer (masked, filtered) or be refused, never leak.
SHAPES = [
    "SELECT name, email, phone FROM demo.customers",
    "SELECT c.email AS e, c.phone AS p FROM demo.customers AS c",
    "SELECT CAST(email AS VARCHAR) || '!' AS e, substr(phone, 1, 20) AS p FROM demo.customers",
    "SELECT upper(email) AS e, concat(phone, email) AS p FROM demo.customers",
    "WITH c AS (SELECT name, email FROM demo.customers) SELECT email FROM c",
    "WITH customers AS (SELECT email FROM demo.customers) SELECT * FROM customers",
    "SELECT (SELECT max(email) FROM demo.customers) AS e",
    "SELECT email FROM (SELECT email, phone FROM demo.customers) AS s WHERE phone IS NOT NULL",
    "SELECT a.email, b.email AS e2 FROM demo.customers a JOIN demo.customers b ON a.email = b.email",
    "SELECT email FROM demo.customers UNION SELECT phone FROM demo.customers",
    "SELECT email FROM demo.customers INTERSECT SELECT email FROM demo.customers",
    "SELECT email, count(*) AS n FROM demo.customers GROUP BY email",
    "SELECT name FROM demo.customers ORDER BY email, phone",
    "SELECT name, row_number() OVER (PARTITION BY email ORDER BY phone) AS r FROM demo.customers",
    "SELECT count(DISTINCT email) AS n, min(phone) AS p, max(email) AS m FROM demo.customers",
    "SELECT name, email FROM acme.customers",
    "SELECT name, email FROM globex.customers",
    "SELECT name, email, phone FROM my_customers",
    "SELECT name FROM demo.customers WHERE email = 'ada@lovelace.example'",
    "SELECT name FROM demo.customers WHERE strpos(email, 'lovelace') > 0",
    "SELECT 1 / (CASE WHEN tenant = 'globex' THEN 0 ELSE 1 END) AS x FROM demo.customers",
    "EXPLAIN SELECT email FROM demo.customers WHERE email LIKE '%globex%'",
    "EXPLAIN ANALYZE SELECT email, phone FROM demo.customers",
    "SELECT DISTINCT email FROM demo.customers",
    "SELECT email FROM demo.customers EXCEPT SELECT 'nobody' AS email",
    "SELECT array_to_string(array_agg(email), ';') AS a, string_agg(phone, ',') AS p FROM demo.customers",
    "SELECT name, first_value(email) OVER (ORDER BY phone) AS f, lag(phone) OVER (ORDER BY name) AS l FROM demo.customers",
    "SELECT CASE WHEN email LIKE 'ada%' THEN 'yes' ELSE email END AS e, coalesce(phone, email) AS p FROM demo.customers LIMIT 3 OFFSET 1",
    "SELECT c.name FROM demo.customers c WHERE EXISTS (SELECT 1 FROM demo.customers d WHERE d.email = c.email AND d.phone LIKE '+44%')",
    "SELECT name FROM demo.customers WHERE email IN (SELECT email FROM demo.customers WHERE phone LIKE '+1%')",
    "SELECT regexp_replace(email, '@.*', '') AS local, reverse(phone) AS r FROM demo.customers",
    "SELECT email, phone, count(*) AS n FROM demo.customers GROUP BY ROLLUP (email, phone)",
    "SELECT v.column1, c.email FROM (VALUES ('ada@lovelace.example')) AS v JOIN demo.customers c ON v.column1 = c.email",
    "SELECT unnest(make_array(email, phone)) AS x FROM demo.customers",
    "SELECT * FROM demo.customers",
    "SELECT national_id FROM demo.customers",
    "SELECT name FROM demo.customers WHERE national_id IS NOT NULL",
    "SELECT name FROM demo.customers ORDER BY national_id",
    "SELECT count(*) AS n FROM demo.customers GROUP BY national_id",
    "SELECT a.name FROM demo.customers a JOIN demo.customers b ON a.national_id = b.national_id",
    "SELECT count(*) AS n FROM demo.customers",
]


def visible(principal, row):
    return principal["rows"] == "all" or principal["rows"] == row["tenant"]


def secrets(principal):
    """Every string this principal must never receive."""
    out = set()
    for row in ROWS:
        if not visible(principal, row):
            out.update(v for k, v in row.items() if k in ("name", "email", "phone", "national_id"))
            continue
        out.update(row[c] for c in TAGGED if c not in principal["unmask"])
    return sorted(out)


def leaks(principal, data):
    return [s for s in secrets(principal) if s.encode() in data]


def http(principal, sql, accept, path="/v1/sql"):
    context = ssl.create_default_context(cadata=CA.decode())
    request = urllib.request.Request(
        CONFIG["http"] + path, data=sql.encode() if sql else None, method="POST" if sql else "GET",
        headers={"x-api-key": principal["key"], "accept": accept},
    )
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def names_denied(principal, sql):
    """Whether `sql` names a column the principal is denied (`SELECT *` is what it may see)."""
    return any(c in sql for c in principal["denied"])


def over_http(principal):
    def run():
        for sql in SHAPES:
            for accept in ("application/json", "text/csv", "application/vnd.apache.arrow.stream"):
                status, body = http(principal, sql, accept)
                assert not leaks(principal, body), (sql, accept, leaks(principal, body))
                # Refused for the dataset (another tenant's view), or answered, or refused
                # for the column exactly when the statement reads a denied one.
                if status == 403 and b'"forbidden"' in body and b"column" not in body:
                    continue
                if names_denied(principal, sql):
                    assert status == 403 and b"column_forbidden" in body, (sql, status, body[:300])
                elif "1 / (CASE" in sql and principal["rows"] in ("all", "globex"):
                    assert status == 400 and b"Divide by zero" in body, (sql, status, body[:300])
                else:
                    assert status == 200, (sql, accept, status, body[:300])
        # Exactly the visible rows, masked as policy says.
        status, body = http(principal, "SELECT name, email FROM demo.customers ORDER BY customer_id", "application/json")
        assert status == 200, body
        got = json.loads(body)
        expected = [r for r in ROWS if visible(principal, r)]
        assert [g["name"] for g in got] == [r["name"] for r in expected], got
        for g, r in zip(got, expected):
            if "email" in principal["unmask"]:
                assert g["email"] == r["email"], g
            else:
                assert g["email"] == "***@" + r["email"].split("@")[1], g
        # The catalog lists the columns as the caller may see them, each mask named.
        status, body = http(principal, None, "application/json", "/v1/datasets")
        assert status == 200, body
        customers = [d for d in json.loads(body) if d["name"] == "demo.customers"][0]
        columns = {c["name"]: c.get("masked") for c in customers["columns"]}
        for column in TAGGED:
            if column in principal["denied"]:
                assert column not in columns, columns
            else:
                assert (columns[column] is None) == (column in principal["unmask"]), (column, columns)
        assert columns["name"] is None, columns
        # Inference: a raw value finds nothing unless it is shown.
        status, body = http(principal, "SELECT count(*) AS n FROM demo.customers WHERE email = 'hank@globex.example'", "application/json")
        hank = [r for r in ROWS if r["email"] == "hank@globex.example"][0]
        shown = visible(principal, hank) and "email" in principal["unmask"]
        assert json.loads(body)[0]["n"] == (1 if shown else 0), body
    return run


def over_flight(principal):
    def run():
        client = flight.FlightClient(CONFIG["flight"], tls_root_certs=CA)
        options = flight.FlightCallOptions(headers=[(b"x-api-key", principal["key"].encode())])
        for sql in SHAPES:
            try:
                info = client.get_flight_info(flight.FlightDescriptor.for_command(statement(sql)), options)
                table = client.do_get(info.endpoints[0].ticket, options).read_all()
                sink = repr(table.to_pylist()).encode()
                assert not leaks(principal, sink), (sql, leaks(principal, sink))
                assert not names_denied(principal, sql), ("answered", sql)
            # A query error is INVALID_ARGUMENT, which pyarrow raises as ArrowInvalid.
            except (flight.FlightError, pa.ArrowInvalid) as error:
                text = str(error).encode()
                assert not leaks(principal, text), (sql, text)
                refused = any(m in str(error) for m in ("is not allowed", "not allowed through the gateway", "Divide by zero"))
                assert refused or names_denied(principal, sql), (sql, str(error))
    return run


def over_adbc(principal):
    def run():
        kwargs = {
            "adbc.flight.sql.client_option.tls_root_certs": CA.decode(),
            "adbc.flight.sql.rpc.call_header.x-api-key": principal["key"],
        }
        with flightsql.connect(CONFIG["flight"], db_kwargs=kwargs, autocommit=True) as conn:
            cur = conn.cursor()
            cur.execute("SELECT name, email, phone FROM demo.customers WHERE tenant = $1 OR email = $2", parameters=("globex", "ada@lovelace.example"))
            table = cur.fetch_arrow_table()
            sink = repr(table.to_pylist()).encode()
            assert not leaks(principal, sink), leaks(principal, sink)
            expected = [r for r in ROWS if visible(principal, r) and r["tenant"] == "globex"]
            assert table.num_rows == len(expected) + (1 if principal["rows"] in ("all", "acme") and "email" in principal["unmask"] else 0), table
    return run


for p in CONFIG["principals"]:
    check(f"{p['name']}: HTTP JSON, CSV and Arrow", over_http(p))
    check(f"{p['name']}: Flight SQL statements and tickets", over_flight(p))
    check(f"{p['name']}: ADBC prepared statement with parameters", over_adbc(p))

finish()
