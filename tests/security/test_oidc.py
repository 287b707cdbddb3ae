"""OIDC/JWT verification against a real local issuer (discovery + JWKS over HTTP on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkgate.config import OidcSettings
from sparkgate.errors import Unauthenticated
from sparkgate.security.oidc import OidcAuthenticator
from sparkgate.testing.oidc_issuer import OidcIssuer


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as i:
        yield i


@pytest.fixture
async def oidc(issuer: OidcIssuer) -> AsyncIterator[OidcAuthenticator]:
    settings = OidcSettings(issuer=issuer.url, audience="sparkgate", jwks_min_refresh_seconds=0)
    async with OidcAuthenticator(settings) as a:
        yield a


async def test_valid_token_gives_identity_and_groups(issuer: OidcIssuer, oidc: OidcAuthenticator) -> None:
    who = await oidc.authenticate(issuer.token("alice@example.com", groups=["fe", "analysts"]))
    assert who.subject == "alice@example.com" and who.groups == {"fe", "analysts"} and who.method == "oidc"
    assert who.expires_at is not None and who.verified


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: i.token("a@x", key=rsa.generate_private_key(public_exponent=65537, key_size=2048)), "signature"),
        (lambda i: i.token("a@x", lifetime=-120), "expired"),
        (lambda i: i.token("a@x", audience="another-app"), "not for this gateway"),
        (lambda i: i.token("a@x", issuer="https://evil.example.com"), "another issuer"),
        (lambda i: i.token("a@x", not_before=__import__("time").time() + 600), "not valid yet"),
        (lambda i: i.token("a@x", kid="no-such-key"), "does not publish"),
        (lambda i: i.token("a@x", claim="sub", extra={"email": None}), "'email' claim"),
        (lambda i: "not.a.jwt", "not a JWT"),
        (lambda i: jwt.encode({"email": "a@x"}, "s" * 32, algorithm="HS256"), "algorithm 'HS256'"),
        (lambda i: jwt.encode({"email": "a@x"}, None, algorithm="none"), "algorithm 'none'"),
    ],
    ids=["forged", "expired", "audience", "issuer", "nbf", "unknown-kid", "no-identity", "garbage", "hs256", "none"],
)
async def test_bad_tokens_are_refused_with_the_reason(
    issuer: OidcIssuer, oidc: OidcAuthenticator, make: object, reason: str
) -> None:
    with pytest.raises(Unauthenticated, match=reason):
        await oidc.authenticate(make(issuer))  # type: ignore[operator]


async def test_key_rotation_refetches_and_old_keys_stop_working(issuer: OidcIssuer, oidc: OidcAuthenticator) -> None:
    old = issuer.token("alice@example.com")
    assert (await oidc.authenticate(old)).subject == "alice@example.com"
    fetches = oidc.fetches
    issuer.rotate()  # the old key is no longer published
    new = issuer.token("bob@example.com")
    assert (await oidc.authenticate(new)).subject == "bob@example.com"  # unknown kid → refetch
    assert oidc.fetches == fetches + 1
    with pytest.raises(Unauthenticated, match="does not publish"):
        await oidc.authenticate(old)


async def test_unknown_kid_refetches_are_rate_limited(issuer: OidcIssuer) -> None:
    settings = OidcSettings(issuer=issuer.url, audience="sparkgate", jwks_min_refresh_seconds=300)
    async with OidcAuthenticator(settings) as oidc:
        before = issuer.jwks_requests
        for i in range(5):
            with pytest.raises(Unauthenticated):
                await oidc.authenticate(issuer.token("x@y", kid=f"random-{i}"))
        assert issuer.jwks_requests == before  # fetched at start less than 300 s ago: not again


async def test_es256(issuer: OidcIssuer) -> None:
    with OidcIssuer(algorithm="ES256") as es:
        async with OidcAuthenticator(OidcSettings(issuer=es.url, audience="sparkgate")) as oidc:
            assert (await oidc.authenticate(es.token("carol@example.com"))).subject == "carol@example.com"


async def test_issuer_down_at_start_is_retried_later() -> None:
    issuer = OidcIssuer()  # not serving yet
    async with OidcAuthenticator(OidcSettings(issuer=issuer.url, audience="sparkgate", http_timeout_seconds=1)) as a:
        with pytest.raises(Unauthenticated, match="cannot fetch"):
            await a.authenticate(issuer.token("a@x"))
        with issuer:
            assert (await a.authenticate(issuer.token("a@x"))).subject == "a@x"
