"""A local OIDC issuer for tests and demos: discovery + JWKS over HTTP on loopback, and tokens.

    with OidcIssuer() as issuer:                      # serves http://127.0.0.1:<port>
        token = issuer.token("alice@example.com", groups=["fe"], audience="sparkgate")
        issuer.rotate()                               # a new signing key (the old one unpublished)

Keys are RSA-2048 (RS256) unless ``algorithm="ES256"``. It serves what Okta's authorization
servers serve for verification — ``/.well-known/openid-configuration`` (``issuer``, ``jwks_uri``)
and the JWKS — and counts JWKS requests, so tests can see key-rotation refetches.
"""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class OidcIssuer:
    def __init__(self, algorithm: str = "RS256") -> None:
        self.algorithm = algorithm
        self._ids = itertools.count(1)
        self.keys: dict[str, PrivateKey] = {}
        self.kid = ""
        self.rotate(keep_old=False)
        self.jwks_requests = 0
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/v1/keys"}
                elif self.path == "/v1/keys":
                    issuer.jwks_requests += 1
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-issuer", daemon=True)

    def __enter__(self) -> OidcIssuer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def new_key(self) -> PrivateKey:
        if self.algorithm == "ES256":
            return ec.generate_private_key(ec.SECP256R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def rotate(self, *, keep_old: bool = False) -> str:
        """Sign with a new key from now on; the old one stays published only with ``keep_old``."""
        kid = f"key-{next(self._ids)}"
        if not keep_old:
            self.keys.clear()
        self.keys[kid] = self.new_key()
        self.kid = kid
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            public = key.public_key()
            if isinstance(public, ec.EllipticCurvePublicKey):
                jwk = ECAlgorithm.to_jwk(public, as_dict=True)
            else:
                assert isinstance(public, rsa.RSAPublicKey)
                jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
            jwk.update(kid=kid, use="sig", alg=self.algorithm)
            keys.append(jwk)
        return {"keys": keys}

    def token(
        self,
        subject: str,
        *,
        groups: list[str] | None = None,
        audience: str = "sparkgate",
        issuer: str | None = None,
        lifetime: float = 3600,
        not_before: float | None = None,
        key: PrivateKey | None = None,
        kid: str | None = None,
        claim: str = "email",
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A signed JWT (by default a valid one; every argument can make it invalid)."""
        now = time.time()
        claims: dict[str, Any] = {
            "iss": issuer if issuer is not None else self.url,
            "aud": audience,
            "sub": subject,
            claim: subject,
            "iat": int(now),
            "exp": int(now + lifetime),
            "groups": groups or [],
        }
        if not_before is not None:
            claims["nbf"] = int(not_before)
        claims.update(extra or {})
        signing_kid = kid if kid is not None else self.kid
        signing_key = key if key is not None else self.keys[self.kid]
        return jwt.encode(claims, signing_key, algorithm=self.algorithm, headers={"kid": signing_kid})
