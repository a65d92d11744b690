"""Signs an identity stamp as the gateway does (gateway/identity/src/stamp.rs: v1, Ed25519,
key id = the first 8 bytes of the public key's SHA-256), for the row and column policy
benchmark (run-data-policy-benchmark.sh) and the query limits benchmark
(run-limits-benchmark.sh), which talk to the engine directly.

  python3 loadtests/stamp.py STAMP_KEY_PEM CASE [LIMITS_JSON]
      # CASE: plain | open | filtered | masked | selective; LIMITS_JSON: the `limits` claim
"""

import base64
import hashlib
import json
import sys
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    elif case == "filtered":
        governed["unmasked"] = TAGGED
        governed["rows"] = rows("gt_eq", 0)
    elif case == "masked":
        governed["masks"] = MASKS
        governed["rows"] = rows("gt_eq", 0)
    elif case == "selective":
        governed["masks"] = MASKS
        governed["rows"] = rows("lt", 100000)
    return [governed] if case != "plain" else []


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def private_key(path):
    """The key of a PKCS#8 PEM, v1 or v2 (aws-lc writes v2, with the public key, which this
    `cryptography` does not read): the 32-byte seed is the OCTET STRING inside the private
    key's OCTET STRING."""
    pem = open(path).read()
    der = base64.b64decode("".join(l for l in pem.splitlines() if not l.startswith("-----")))
    at = der.find(b"\x04\x22\x04\x20")
    if at < 0:
        raise SystemExit(f"{path}: not an Ed25519 PKCS#8 key")
    return Ed25519PrivateKey.from_private_bytes(der[at + 4 : at + 36])


def main():
    key = private_key(sys.argv[1])
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
    if len(sys.argv) > 3:
        claims["limits"] = json.loads(sys.argv[3])
    signed = f"v1.{kid}.{b64(json.dumps(claims).encode())}"
    print(f"{signed}.{b64(key.sign(signed.encode()))}")


main()
