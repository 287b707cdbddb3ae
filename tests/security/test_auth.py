"""Static tokens and the guard (identity, cache, mTLS service identities)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparkgate.config import AuthSettings, RateLimitSettings
from sparkgate.errors import Unauthenticated
from sparkgate.security.auth import StaticTokens, token_digest
from sparkgate.security.guard import Guard
from sparkgate.security.identity import bearer_token, parse_groups


def _tokens(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_static_tokens_plain_and_hashed(tmp_path: Path) -> None:
    f = _tokens(
        tmp_path / "tokens.yaml",
        f"tokens:\n  - {{token: t-alice, subject: alice@x, groups: [fe]}}\n"
        f"  - {{token_sha256: {token_digest('t-bob')}, subject: bob@x, groups: ds analysts}}\n",
    )
    async with StaticTokens(f) as st:
        assert (await st.authenticate("t-alice")).groups == {"fe"}
        bob = await st.authenticate("t-bob")
        assert bob.subject == "bob@x" and bob.groups == {"ds", "analysts"} and bob.method == "token"
        with pytest.raises(Unauthenticated, match="not valid"):
            await st.authenticate("t-mallory")
        # A new token in the file is picked up without a restart.
        f.write_text(f.read_text() + "  - {token: t-carol, subject: carol@x}\n")
        os.utime(f, (1, 1))
        assert (await st.authenticate("t-carol")).subject == "carol@x"


def test_bearer_token_parsing() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", "bearer  abc ")]) == "abc"
    assert bearer_token([("authorization", "Basic abc")]) is None
    assert bearer_token([("x", "y")]) is None
    assert parse_groups("a, b c") == {"a", "b", "c"} and parse_groups(["a", 1]) == {"a", "1"}


def _guard(tmp_path: Path, **auth: object) -> Guard:
    f = _tokens(tmp_path / "t.yaml", "tokens:\n  - {token: good, subject: alice@x, groups: [fe]}\n")
    settings = AuthSettings(mode="static", tokens_file=str(f), **auth)  # type: ignore[arg-type]
    return Guard(settings, {}, RateLimitSettings(), authenticator=StaticTokens(f))


async def test_guard_verifies_once_then_caches(tmp_path: Path) -> None:
    async with _guard(tmp_path) as g:
        md = [("authorization", "Bearer good")]
        assert g.cached(md, None, "jovyan") is None  # not verified yet
        who = await g.identify(md, None, "jovyan")
        assert who.subject == "alice@x"
        assert g.cached(md, None, "jovyan") is who  # the fast path from now on
        with pytest.raises(Unauthenticated, match="requires credentials"):
            await g.identify([], None, "jovyan")
        with pytest.raises(Unauthenticated):
            await g.identify([("authorization", "Bearer bad")], None, "jovyan")
        assert g.failures == 2


async def test_mtls_service_identity_needs_no_token(tmp_path: Path) -> None:
    async with _guard(tmp_path, service_identities={"sparkgate-runner": ["platform"]}) as g:
        who = await g.identify([], "sparkgate-runner", "")
        assert who.subject == "sparkgate-runner" and who.method == "mtls" and who.groups == {"platform"}
        with pytest.raises(Unauthenticated, match=r"not one of auth\.service_identities"):
            await g.identify([], "someone-else", "")


async def test_no_auth_trusts_the_claimed_user() -> None:
    async with Guard(AuthSettings(), {}, RateLimitSettings()) as g:
        who = await g.identify([], None, "jovyan")
        assert who.subject == "jovyan" and not who.verified
