"""No statement takes a process down: every operator family and nesting form, at the
complexity limit and past it up to the body limits, over HTTP and Flight SQL, against the
gateway (in front of its engine) and against an engine on its own. Past the limit the answer
is 400 / INVALID_ARGUMENT `statement_too_complex` naming the limit; at it, an answer (rows or
an ordinary SQL error), never a dropped connection or a 5xx; after every request both
processes still answer a probe.

Run by gateway/tests/integration/deep_statements.rs, which passes:
  GATEWAY_URL     https://localhost:PORT (the gateway's API listener, from `gateway up`)
  GATEWAY_FLIGHT  grpc+tls://localhost:PORT
  CA_FILE, API_KEY
  ENGINE_URL      http://127.0.0.1:PORT (an engine started with a development principal)
  ENGINE_FLIGHT   grpc://127.0.0.1:PORT
  MAX_OPERATORS, MAX_NESTING, MAX_CASE_NESTING, MAX_LIST_ITEMS, MAX_DATASETS  the limits (complexity crate)
Exits non-zero if any check fails.
"""

import json
import os
import ssl
import urllib.error
import urllib.request

import pyarrow
import pyarrow.flight as flight

from checks import check, finish, statement

CA = os.environ["CA_FILE"]
KEY = os.environ["API_KEY"]
OPS = int(os.environ["MAX_OPERATORS"])
NEST = int(os.environ["MAX_NESTING"])
TLS = ssl.create_default_context(cafile=CA)

TARGETS = {
    "gateway": (os.environ["GATEWAY_URL"], os.environ["GATEWAY_FLIGHT"]),
    "engine": (os.environ["ENGINE_URL"], os.environ["ENGINE_FLIGHT"]),
}


def chain(op, terms, term="1"):
    return "SELECT " + op.join([term] * terms)


# (name, statement at the limit, statement past it, statement as large as the body allows)
def families():
    # Each join costs 1 operator, `::int::` and `IS NOT` 2: at the limit means just within it.
    binary = [("+", 1), ("-", 1), ("*", 1), ("/", 1), ("%", 1), ("||", 1), (" AND ", 1), (" OR ", 1),
              (" = ", 1), (" < ", 1), (" <> ", 1), ("::int::", 2), (" IS NOT ", 2), ("&", 1), ("|", 1),
              ("<<", 1)]
    for op, cost in binary:
        term = "'a'" if op == "||" else ("true" if op.strip() in ("AND", "OR") else "1")
        yield (f"chain {op.strip()}", chain(op, OPS // cost - 1, term), chain(op, OPS // cost + 2, term),
               chain(op, 40_000, term))
    yield ("unary minus", "SELECT " + "- " * (OPS - 1) + "1", "SELECT " + "- " * (OPS + 1) + "1",
           "SELECT " + "- " * 300_000 + "1")
    yield ("NOT", "SELECT " + "NOT " * 40 + "true", "SELECT " + "NOT " * (OPS + 1) + "true",
           "SELECT " + "NOT " * 200_000 + "true")
    yield ("UNION", " UNION ALL ".join(["SELECT 1"] * (OPS - 1)), " UNION ALL ".join(["SELECT 1"] * (OPS + 2)),
           " UNION ALL ".join(["SELECT 1"] * 50_000))
    yield ("JOIN", "SELECT 1 FROM (SELECT 1 AS a) t0" + "".join(f" JOIN (SELECT 1 AS a) t{i} ON true" for i in range(1, 60)),
           "SELECT 1 FROM (SELECT 1 AS a) t0" + "".join(f" JOIN (SELECT 1 AS a) t{i} ON true" for i in range(1, OPS + 2)),
           "SELECT 1 FROM (SELECT 1 AS a) t0" + "".join(f" JOIN (SELECT 1 AS a) t{i} ON true" for i in range(1, 20_000)))
    for name, open_, close in [("parentheses", "(", ")"), ("function calls", "abs(", ")"), ("arrays", "[", "]"),
                               ("subqueries", "(SELECT ", ")")]:
        yield (name, "SELECT " + open_ * (NEST // 2) + "1" + close * (NEST // 2),
               "SELECT " + open_ * (NEST + 1) + "1" + close * (NEST + 1),
               "SELECT " + open_ * 100_000 + "1" + close * 100_000)
    case = int(os.environ["MAX_CASE_NESTING"])
    yield ("CASE", "SELECT " + "CASE WHEN true THEN " * case + "1" + " END" * case,
           "SELECT " + "CASE WHEN true THEN " * (case + 1) + "1" + " END" * (case + 1),
           "SELECT " + "CASE WHEN true THEN " * 40_000 + "1" + " END" * 40_000)
    # Unclosed CASEs: the parser's backtracking doubles with each.
    yield ("unclosed CASE", "SELECT " + "CASE WHEN true THEN " * case + "1 END",
           "SELECT " + "CASE WHEN true THEN " * 60 + "1 END", "SELECT " + "CASE WHEN true THEN " * 50_000 + "1 END")
    yield ("IN list", "SELECT 1 IN (" + ", ".join(["1"] * 50_000) + ")", None, None)
    items = int(os.environ["MAX_LIST_ITEMS"])
    wide = lambda n: "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(n))
    yield ("select list", wide(items), wide(items + 1), "SELECT " + ", ".join(["1"] * 300_000))


def http(target, sql):
    """(status, parsed body) of POST /v1/sql; the gateway needs the API key, the engine not."""
    url, _ = TARGETS[target]
    request = urllib.request.Request(url + "/v1/sql", data=sql.encode(), method="POST",
                                     headers={"X-API-Key": KEY, "Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(request, context=TLS if url.startswith("https") else None, timeout=120) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def flight_call(target, sql):
    """None when GetFlightInfo (and DoGet) succeed, else the error (pyarrow maps gRPC's
    INVALID_ARGUMENT to ArrowInvalid, the rest to FlightError subclasses)."""
    _, uri = TARGETS[target]
    client = flight.FlightClient(uri, tls_root_certs=open(CA, "rb").read()) if uri.startswith("grpc+tls") \
        else flight.FlightClient(uri)
    options = flight.FlightCallOptions(headers=[(b"x-api-key", KEY.encode())], timeout=120)
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(statement(sql)), options)
        client.do_get(info.endpoints[0].ticket, options).read_all()
        return None
    except pyarrow.ArrowException as error:
        return error
    finally:
        client.close()


def probes_answer():
    for target in TARGETS:
        status, body = http(target, "SELECT 41 + 1 AS answer")
        assert status == 200 and body == [{"answer": 42}], (target, status, body)
        assert flight_call(target, "SELECT 1") is None, target


def refused_as_too_complex(target, sql):
    status, body = http(target, sql)
    if len(sql) > 1024 * 1024:  # over either body limit: refused before it is read whole
        assert status in (400, 413), (target, status, str(body)[:300])
    else:
        assert status == 400, (target, status, str(body)[:300])
        assert body["error"]["code"] == "statement_too_complex", (target, str(body)[:300])
        assert "statement too complex" in body["error"]["message"], (target, str(body)[:300])
    if len(sql) < 4 * 1024 * 1024:  # Flight's default message limit
        error = flight_call(target, sql)
        assert isinstance(error, pyarrow.ArrowInvalid), (target, repr(error)[:300])
        assert "statement too complex" in str(error), (target, str(error)[:300])


def answered(target, sql):
    status, body = http(target, sql)
    assert status in (200, 400), (target, status, str(body)[:300])
    if status == 400:
        assert body["error"]["code"] in ("query_error", "invalid_sql", "statement_too_complex"), (target, str(body)[:300])
    error = flight_call(target, sql)
    assert error is None or isinstance(error, pyarrow.ArrowInvalid), (target, repr(error)[:300])


for name, at_limit, past_limit, huge in families():
    for target in TARGETS:
        check(f"{target}: {name} at the limit is answered", lambda: answered(target, at_limit))
        check(f"{target}: still up after {name} at the limit", probes_answer)
        if past_limit is not None:
            check(f"{target}: {name} past the limit is statement_too_complex",
                  lambda: refused_as_too_complex(target, past_limit))
            check(f"{target}: {name} as large as the body allows is refused",
                  lambda: refused_as_too_complex(target, huge))
            check(f"{target}: still up after {name} past the limit", probes_answer)

# The gateway signs every dataset a statement touches into the request's stamp.
DATASETS = int(os.environ["MAX_DATASETS"])
many = "SELECT 1 FROM " + ", ".join(f"t{i}" for i in range(DATASETS + 1))
check("gateway: a statement touching more datasets than a stamp carries is statement_too_complex",
      lambda: refused_as_too_complex("gateway", many))
finish()
