"""Shared by the Python client checks of the gateway and the engine (PYTHONPATH, set by
testkit::python_path()): a check runner and hand-built Flight SQL commands (protobuf Any), so
the checks need nothing beyond pyarrow and ADBC."""

import os
import sys

_results = []


def check(name, fn):
    """Runs one check, reporting every failure; `finish()` sets the exit code."""
    try:
        fn()
    except Exception as exc:
        _results.append(False)
        print(f"FAIL {name}: {exc!r}", file=sys.stderr)
    else:
        _results.append(True)
        print(f"ok   {name}")


def finish():
    failed = _results.count(False)
    print(f"{len(_results) - failed} passed, {failed} failed")
    # Every result is out: leave without the interpreter's teardown, where gRPC's threads
    # behind pyarrow's Flight clients have been seen to crash the process ("double free")
    # after every check had passed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if failed else 0)


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return bytes([number << 3 | 2]) + _varint(len(payload)) + payload


def sql_any(type_name, message):
    """`message` wrapped in an Any of the Flight SQL type `type_name`."""
    return field(1, b"type.googleapis.com/arrow.flight.protocol.sql." + type_name) + field(2, message)


def statement(sql):
    """A Flight SQL CommandStatementQuery."""
    if isinstance(sql, str):
        sql = sql.encode()
    return sql_any(b"CommandStatementQuery", field(1, sql))
