"""Authenticators: turn a bearer token into an :class:`Identity` (or refuse it).

One small protocol, one implementation per ``auth.mode``:

* ``static`` — :class:`StaticTokens`, tokens listed in a YAML file (stored as SHA-256 digests);
* ``oidc`` — :class:`sparkgate.security.oidc.OidcAuthenticator`, Okta-compatible JWTs;
* ``none`` — no authenticator at all: the caller is who they say (``x-doordash-user`` or the
  request's user id), which :class:`sparkgate.security.guard.Guard` logs loudly at start.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import yaml

from sparkgate.errors import ConfigError, Unauthenticated
from sparkgate.security.identity import Identity, parse_groups

log = logging.getLogger(__name__)


class Authenticator(Protocol):
    """Verifies bearer tokens. Use as an async context manager (it may fetch keys at start)."""

    name: str

    async def authenticate(self, token: str) -> Identity:
        """The token's identity; raises :class:`~sparkgate.errors.Unauthenticated` saying why not."""
        ...

    async def __aenter__(self) -> Authenticator: ...

    async def __aexit__(self, *exc: object) -> None: ...


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StaticTokens:
    """Bearer tokens from a YAML file, re-read when the file changes::

    tokens:
      - token_sha256: 9f86d0…   # sha256 of the token (sparkgate never needs the token itself)
        subject: alice@example.com
        groups: [fe, analysts]
      - token: dev-token-bob     # or the token in clear (for local setups)
        subject: bob@example.com
        groups: [ds]
    """

    name = "static"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_digest: dict[str, Identity] = {}
        self._mtime = 0.0

    async def __aenter__(self) -> StaticTokens:
        await asyncio.to_thread(self._load)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def _load(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
            data: Any = yaml.safe_load(self.path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"auth.tokens_file {self.path}: {exc}") from exc
        entries = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ConfigError(f"auth.tokens_file {self.path}: expected a mapping with a 'tokens' list")
        table: dict[str, Identity] = {}
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not e.get("subject") or not (e.get("token") or e.get("token_sha256")):
                raise ConfigError(f"auth.tokens_file {self.path}: tokens[{i}] needs subject and token or token_sha256")
            digest = str(e.get("token_sha256") or token_digest(str(e["token"]))).lower()
            table[digest] = Identity(str(e["subject"]), parse_groups(e.get("groups", [])), "token")
        self._by_digest, self._mtime = table, mtime
        log.info("auth: %d static token(s) from %s", len(table), self.path)

    async def authenticate(self, token: str) -> Identity:
        digest = token_digest(token)
        found = self._lookup(digest)
        if found is None and await asyncio.to_thread(self._changed):
            await asyncio.to_thread(self._load)
            found = self._lookup(digest)
        if found is None:
            raise Unauthenticated("the bearer token is not valid (not in auth.tokens_file)")
        return found

    def _lookup(self, digest: str) -> Identity | None:
        for known, identity in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return identity
        return None

    def _changed(self) -> bool:
        try:
            return os.stat(self.path).st_mtime != self._mtime
        except OSError:
            return False
