"""Flight clients authenticating to the gateway (over TLS, no client certificate):
pyarrow.flight's Basic-auth Handshake with an API key, and ADBC Flight SQL with a bearer JWT
and with its `username` / `password` options (grpc-go sends unpadded base64 Basic auth).

Run by gateway/tests/integration/auth.rs, which starts the engine, the gateway and an OIDC provider and
passes:
  FLIGHT_URI   grpc+tls://localhost:PORT (the gateway's Flight listener)
  CA_FILE      the CA that signed the gateway's certificate
  API_KEY      a valid API key for principal "svc-etl"
  JWT          a valid OIDC token for principal "alice"
Exits non-zero on the first failed check.
"""

import os

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight

from checks import check, finish, statement

URI = os.environ["FLIGHT_URI"]
CA = open(os.environ["CA_FILE"], "rb").read()
API_KEY = os.environ["API_KEY"]
JWT = os.environ["JWT"]

def basic_token_with_api_key():
    client = flight.FlightClient(URI, tls_root_certs=CA)
    name, value = client.authenticate_basic_token(b"svc-etl", API_KEY.encode())
    assert name.lower() == b"authorization" and value.startswith(b"Bearer pcs_"), (name, value[:12])
    options = flight.FlightCallOptions(headers=[(name, value)])
    descriptor = flight.FlightDescriptor.for_command(statement(b"SELECT current_principal() AS p"))
    info = client.get_flight_info(descriptor, options)
    rows = client.do_get(info.endpoints[0].ticket, options).read_all().to_pylist()
    assert rows == [{"p": "svc-etl"}], rows


def basic_token_with_wrong_key_is_refused():
    client = flight.FlightClient(URI, tls_root_certs=CA)
    try:
        client.authenticate_basic_token(b"svc-etl", b"pcl_" + b"A" * 43)
    except flight.FlightUnauthenticatedError as exc:
        assert "API key invalid" in str(exc), exc
        assert "AAAA" not in str(exc), exc
    else:
        raise AssertionError("a wrong API key opened a session")


def adbc_bearer_rows(token, sql):
    """The rows of `sql` over ADBC with `Authorization: Bearer <token>`."""
    kwargs = {
        "adbc.flight.sql.client_option.tls_root_certs": CA.decode(),
        "adbc.flight.sql.authorization_header": f"Bearer {token}",
    }
    with flightsql.connect(URI, db_kwargs=kwargs) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table().to_pylist()


def adbc_with_bearer_jwt():
    rows = adbc_bearer_rows(JWT, "SELECT current_principal() AS p, current_principal_groups() AS g")
    assert rows == [{"p": "alice", "g": ["acme"]}], rows


def adbc_with_an_api_key_as_the_bearer_token():
    # What clients that set their own authorization header (flightsql-dbapi) send.
    rows = adbc_bearer_rows(API_KEY, "SELECT current_principal() AS p")
    assert rows == [{"p": "svc-etl"}], rows


def adbc_without_credentials_is_refused():
    kwargs = {"adbc.flight.sql.client_option.tls_root_certs": CA.decode()}
    try:
        with flightsql.connect(URI, db_kwargs=kwargs) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception as exc:
        assert "no credentials" in str(exc), exc
    else:
        raise AssertionError("a query ran without credentials")


def adbc_username_password(user, password, principal):
    def run():
        kwargs = {
            "adbc.flight.sql.client_option.tls_root_certs": CA.decode(),
            "username": user,
            "password": password,
        }
        with flightsql.connect(URI, db_kwargs=kwargs) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_principal() AS p")
            rows = cur.fetch_arrow_table().to_pylist()
        assert rows == [{"p": principal}], rows
    return run


check("pyarrow authenticate_basic_token with an API key, then a query", basic_token_with_api_key)
# len(user) + 1 + len(password) at every remainder mod 3: unpadded base64 of each length.
for user in ["x", "ab", "reader", "analyst", "dev-acme"]:
    check(f"ADBC username {user!r} / password = API key", adbc_username_password(user, API_KEY, "svc-etl"))
check("ADBC username / password = JWT", adbc_username_password("alice", JWT, "alice"))
check("pyarrow Handshake with a wrong API key is refused", basic_token_with_wrong_key_is_refused)
check("ADBC with a bearer JWT", adbc_with_bearer_jwt)
check("ADBC with an API key as the bearer token", adbc_with_an_api_key_as_the_bearer_token)
check("ADBC without credentials is refused", adbc_without_credentials_is_refused)

finish()
