"""Access history through the gateway: each call runs under its own request id over HTTP
(JSON, CSV, Arrow IPC), pyarrow Flight SQL and ADBC (a prepared statement with a parameter),
and the rows the client decoded are printed as JSON ({request id: rows}) for
gateway/tests/integration/data_policy.rs to compare with the rows each audit event records.

CONFIG (JSON): http, flight, ca (as data_policy.py), key (an API key), statements ({name: sql}).
"""

import json
import os
import ssl
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight

from checks import statement

CONFIG = json.loads(os.environ["CONFIG"])
CA = open(CONFIG["ca"], "rb").read()
KEY = CONFIG["key"]
ENCODINGS = {"json": "application/json", "csv": "text/csv", "arrow": "application/vnd.apache.arrow.stream"}

received = {}
context = ssl.create_default_context(cadata=CA.decode())
for name, sql in CONFIG["statements"].items():
    for encoding, accept in ENCODINGS.items():
        request_id = f"{name}-{encoding}"
        request = urllib.request.Request(
            CONFIG["http"] + "/v1/sql", data=sql.encode(), method="POST",
            headers={"x-api-key": KEY, "accept": accept, "x-request-id": request_id},
        )
        with urllib.request.urlopen(request, context=context) as response:
            body = response.read()
        if encoding == "json":
            received[request_id] = len(json.loads(body))
        elif encoding == "csv":
            received[request_id] = len(body.decode().splitlines()) - 1
        else:
            received[request_id] = pa.ipc.open_stream(body).read_all().num_rows

    request_id = f"{name}-flight"
    client = flight.FlightClient(CONFIG["flight"], tls_root_certs=CA)
    options = flight.FlightCallOptions(headers=[(b"x-api-key", KEY.encode()), (b"x-request-id", request_id.encode())])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(statement(sql)), options)
    received[request_id] = client.do_get(info.endpoints[0].ticket, options).read_all().num_rows

kwargs = {
    "adbc.flight.sql.client_option.tls_root_certs": CA.decode(),
    "adbc.flight.sql.rpc.call_header.x-api-key": KEY,
    "adbc.flight.sql.rpc.call_header.x-request-id": "adbc-prepared",
}
with flightsql.connect(CONFIG["flight"], db_kwargs=kwargs, autocommit=True) as conn:
    cursor = conn.cursor()
    # A JDBC / ODBC style placeholder: bound as $1.
    cursor.execute("SELECT name, email FROM demo.customers WHERE tenant = ?", parameters=("acme",))
    received["adbc-prepared"] = cursor.fetch_arrow_table().num_rows

print(json.dumps(received))
