"""Helpers for the pipeline's stage tests (the ``gw`` fixture is in ``tests/gateway/conftest.py``)."""

from __future__ import annotations

import uuid

from sparkgate.connect import wire
from sparkgate.errors import Unauthenticated
from sparkgate.gateway.pipeline.call import Call, Caller
from sparkgate.security.identity import Identity

TEAM = (("x-doordash-team", "fe"), ("x-doordash-environment", "prod"))


def call(method: str = "ExecutePlan", metadata: tuple[tuple[str, str], ...] = (), **kw: str) -> Call:
    session_id = kw.pop("session_id", None) or str(uuid.uuid4())
    return Call(method, metadata, wire.RequestIds(session_id, kw.pop("user", "alice"), **kw), b"")


def again(c: Call, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> Call:
    """Another call of the same session."""
    return Call(method, metadata, c.ids, b"")


def alice(c: Call) -> Caller:
    return Caller.of(Identity("alice"), c.ids)


class Tokens:
    """An authenticator knowing one token per subject (``t-<subject>``), all in group ``fe``."""

    name = "test"

    def __init__(self) -> None:
        self.checked = 0

    async def authenticate(self, token: str) -> Identity:
        self.checked += 1
        if not token.startswith("t-"):
            raise Unauthenticated("unknown token")
        return Identity(token[2:], frozenset({"fe"}), "token")

    async def __aenter__(self) -> Tokens:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
