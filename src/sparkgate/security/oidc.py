"""OIDC / JWT bearer tokens (Okta-compatible).

At start the issuer's ``/.well-known/openid-configuration`` is read for its ``jwks_uri`` and the
signing keys are fetched. A token is accepted when its signature verifies with the key its header
names (``kid``), with an allowed algorithm (RS256/ES256 — never ``none`` or HMAC, whatever the
token says), and its ``iss``, ``aud``, ``exp`` and ``nbf`` hold with a small clock skew.

Key rotation: a token naming an unknown ``kid`` makes the gateway refetch the JWKS — at most once
per ``jwks_min_refresh_seconds``, so forged tokens with random kids cannot hammer the issuer.
HTTP runs in a thread (urllib), never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

import jwt

from sparkgate.config import OidcSettings
from sparkgate.errors import Unauthenticated
from sparkgate.security.identity import Identity, parse_groups

log = logging.getLogger(__name__)


class OidcAuthenticator:
    name = "oidc"

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self.issuer = settings.issuer.rstrip("/")
        self._keys: dict[str, jwt.PyJWK] = {}
        self._jwks_uri = ""
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self._ssl = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
        #: JWKS fetches so far (for tests and metrics).
        self.fetches = 0

    async def __aenter__(self) -> OidcAuthenticator:
        try:
            await self._refresh()
        except Unauthenticated as exc:
            # The issuer may come up after the gateway: keep serving, retry on the first token.
            log.error("auth: OIDC issuer %s not reachable at start (%s); will retry per token", self.issuer, exc)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    # -- keys ---------------------------------------------------------------------------------

    def _get_json(self, url: str) -> Any:
        req = urllib.request.Request(url, headers={"accept": "application/json"})
        with urllib.request.urlopen(req, timeout=self.settings.http_timeout_seconds, context=self._ssl) as resp:
            return json.load(resp)

    async def _refresh(self) -> None:
        async with self._lock:
            try:
                if not self._jwks_uri:
                    conf = await asyncio.to_thread(self._get_json, f"{self.issuer}/.well-known/openid-configuration")
                    if conf.get("issuer", "").rstrip("/") != self.issuer:
                        raise Unauthenticated(
                            f"the OIDC issuer's configuration names issuer {conf.get('issuer')!r}, not {self.issuer!r}"
                        )
                    self._jwks_uri = str(conf["jwks_uri"])
                jwks = await asyncio.to_thread(self._get_json, self._jwks_uri)
            except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
                raise Unauthenticated(f"cannot fetch the OIDC signing keys from {self.issuer}: {exc}") from exc
            finally:
                self._fetched_at = time.monotonic()
            self.fetches += 1
            keys: dict[str, jwt.PyJWK] = {}
            for raw in jwks.get("keys", []):
                try:
                    key = jwt.PyJWK(raw)
                except jwt.PyJWTError:
                    continue  # a key type or algorithm we do not use
                keys[str(raw.get("kid", ""))] = key
            self._keys = keys
            log.info("auth: %d OIDC signing key(s) from %s", len(keys), self._jwks_uri)

    async def _key(self, kid: str) -> jwt.PyJWK:
        s = self.settings
        age = time.monotonic() - self._fetched_at
        key = self._keys.get(kid)
        if key is None and len(self._keys) == 1 and not kid:
            key = next(iter(self._keys.values()))
        stale = age > s.jwks_max_age_seconds
        if (key is None and age >= s.jwks_min_refresh_seconds) or stale or not self._jwks_uri:
            await self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(
                f"the token is signed with key {kid!r}, which the issuer {self.issuer} does not publish"
            )
        return key

    # -- tokens -------------------------------------------------------------------------------

    async def authenticate(self, token: str) -> Identity:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not a JWT") from None
        alg = header.get("alg")
        if alg not in s.algorithms:
            raise Unauthenticated(f"the token's algorithm {alg!r} is not accepted (allowed: {', '.join(s.algorithms)})")
        key = await self._key(str(header.get("kid", "")))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=s.audience,
                issuer=self.settings.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired; get a new one from your identity provider") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the token is not for this gateway (aud must be {s.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"the token is from another issuer (iss must be {self.settings.issuer!r})") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
        subject = claims.get(s.identity_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated(f"the token has no {s.identity_claim!r} claim (auth.oidc.identity_claim)")
        exp = claims.get("exp")
        return Identity(
            subject,
            parse_groups(claims.get(s.groups_claim, [])),
            "oidc",
            float(exp) if isinstance(exp, int | float) else None,
        )
