"""Stage 1: who makes the call."""

from __future__ import annotations

import pytest

from sparkgate.config import AuthSettings, RateLimitSettings
from sparkgate.errors import Unauthenticated
from sparkgate.gateway.pipeline.call import Caller
from sparkgate.gateway.pipeline.identify import Identify
from sparkgate.security.guard import Guard
from sparkgate.security.identity import Identity
from tests.gateway.pipeline.conftest import Tokens, call


def test_without_auth_the_caller_is_who_the_client_says() -> None:
    c = call(user="alice")
    caller = Identify(Guard(AuthSettings(), {}, RateLimitSettings())).now(c)
    assert caller is not None and caller.user_id == "alice" and caller.rewrite_user is None


async def test_a_token_is_verified_once_then_known_at_once() -> None:
    tokens = Tokens()
    guard = Guard(AuthSettings(mode="static"), {}, RateLimitSettings(), authenticator=tokens)
    identify = Identify(guard)
    c = call(metadata=(("authorization", "Bearer t-bob"),), user="mallory")
    assert identify.now(c) is None  # not verified yet: the pipeline waits for verify()
    caller = await identify.verify(c)
    # Sessions are filed under the verified subject, and the driver is told it instead of the claim.
    assert caller.user_id == "bob" and caller.rewrite_user == "bob" and caller.identity.verified
    assert identify.now(c) == caller and tokens.checked == 1


async def test_a_call_without_credentials_is_refused() -> None:
    identify = Identify(Guard(AuthSettings(mode="static"), {}, RateLimitSettings(), authenticator=Tokens()))
    c = call()
    assert identify.now(c) is None
    with pytest.raises(Unauthenticated, match="requires credentials"):
        await identify.verify(c)


def test_a_verified_caller_who_claims_itself_needs_no_rewrite() -> None:
    c = call(user="bob")
    assert Caller.of(Identity("bob", method="token"), c.ids).rewrite_user is None
