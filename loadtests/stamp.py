"""Signs an identity stamp as the gateway does (gateway/identity/src/stamp.rs: v1, Ed25519,
key id = the first 8 bytes of the public key's SHA-256), for the row and column policy
benchmark (run-data-policy-benchmark.sh), which talks to the engine directly.

  python3 loadtests/stamp.py STAMP_KEY_PEM CASE     # CASE: plain | open | masked | selective
"""

import base64
import hashlib
import json
import sys
import time

from cryptography.hazmat.primitives import serialization

SCOPE = ["datafusion.bench.plain", "datafusion.bench.governed"]
MASKS = [
    {"column": "email", "mask": "email_domain"},
    {"column": "phone", "mask": "last4"},
    {"column": "national_id", "mask": "null"},
    {"column": "note", "mask": {"constant": {"value": "redacted"}}},
    {"column": "joined", "mask": "year_only"},
]
TAGGED = [m["column"] for m in MASKS]


def rows(op, value):
    """`id <op> value`, counted only when true (as the gateway compiles a residual)."""
    return {"is_true": {"compare": {"op": op, "left": {"column": "id"}, "right": {"long": value}}}}


def decision(case):
    governed = {"dataset": "datafusion.bench.governed"}
    if case == "open":
        governed["unmasked"] = TAGGED
    elif case == "masked":
        governed["masks"] = MASKS
        governed["rows"] = rows("gt_eq", 0)
    elif case == "selective":
        governed["masks"] = MASKS
        governed["rows"] = rows("lt", 100000)
    return [governed] if case != "plain" else []


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main():
    key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = hashlib.sha256(raw).hexdigest()[:16]
    now = int(time.time())
    claims = {
        "aud": "portcullis-engine",
        "iat": now,
        "exp": now + 60,
        "principal": {"kind": "service", "id": "bench", "subject": "bench", "auth_method": "api_key"},
        "policy": "benchmark",
        "scope": SCOPE,
    }
    data = decision(sys.argv[2])
    if data:
        claims["data"] = data
    signed = f"v1.{kid}.{b64(json.dumps(claims).encode())}"
    print(f"{signed}.{b64(key.sign(signed.encode()))}")


main()
