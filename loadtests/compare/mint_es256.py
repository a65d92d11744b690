"""An ES256 key, its JWKS and a signed bearer token, for the proxy comparison.

Only the Python standard library and the `openssl` command: the key is made and the token
signed by openssl; this converts formats (DER point → JWK, DER signature → JWS r||s).

    python3 loadtests/compare/mint_es256.py DIR ISSUER
writes DIR/es256.pem (private), DIR/es256-pub.pem, DIR/jwks.json, DIR/token.
"""

import base64
import json
import subprocess
import sys
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def der_signature_to_jws(der: bytes) -> bytes:
    """ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } → r || s, 32 bytes each."""
    if der[0] != 0x30:
        raise ValueError("not a DER sequence")
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    parts = []
    for _ in range(2):
        if der[i] != 0x02:
            raise ValueError("not a DER integer")
        n = der[i + 1]
        parts.append(der[i + 2 : i + 2 + n].lstrip(b"\0").rjust(32, b"\0"))
        i += 2 + n
    return parts[0] + parts[1]


def main() -> None:
    out, issuer = sys.argv[1], sys.argv[2]
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{out}/es256.pem")
    openssl("ec", "-in", f"{out}/es256.pem", "-pubout", "-out", f"{out}/es256-pub.pem")
    point = openssl("ec", "-in", f"{out}/es256.pem", "-pubout", "-outform", "DER")[-65:]
    if point[0] != 0x04:
        raise ValueError("expected an uncompressed P-256 point")
    jwk = {"kty": "EC", "crv": "P-256", "x": b64(point[1:33]), "y": b64(point[33:]),
           "kid": "bench-1", "alg": "ES256", "use": "sig"}
    with open(f"{out}/jwks.json", "w") as f:
        json.dump({"keys": [jwk]}, f)
    now = int(time.time())
    header = b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "bench-1"}).encode())
    claims = {"iss": issuer, "aud": "portcullis", "sub": "bench", "email": "bench@acme.test",
              "groups": ["acme"], "tenant": "acme", "iat": now, "exp": now + 4 * 3600}
    payload = b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    der = openssl("dgst", "-sha256", "-sign", f"{out}/es256.pem", data=signing_input)
    with open(f"{out}/token", "w") as f:
        f.write(f"{header}.{payload}.{b64(der_signature_to_jws(der))}")


if __name__ == "__main__":
    main()
