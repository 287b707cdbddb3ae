"""The gateway's gatekeeper: who is calling (authentication), may they (rate limits), and the audit trail.

:meth:`Guard.identify` is asked on every call. A verified token's identity is cached until the
token expires, so a session's RPCs are not re-verified one by one (:meth:`Guard.cached` is the
synchronous fast path the h2 engine uses); a new or changed token is verified once.

``auth.mode: none`` checks nothing: the caller is whoever the request says (its user id), and the
gateway says so loudly at start. Any other mode refuses calls without valid credentials —
a bearer token, or an mTLS client certificate of one of ``auth.service_identities``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from sparkgate.config import AuthSettings, EnvironmentSettings, RateLimitSettings, Settings
from sparkgate.errors import Unauthenticated
from sparkgate.security.audit import AuditLog
from sparkgate.security.auth import Authenticator, StaticTokens
from sparkgate.security.authz import Authorizer
from sparkgate.security.identity import Identity, bearer_token
from sparkgate.security.oidc import OidcAuthenticator
from sparkgate.security.ratelimit import RateLimiter

log = logging.getLogger(__name__)

#: Verified tokens remembered at most (each a few hundred bytes).
_CACHE_MAX = 10_000

Metadata = Iterable[tuple[str, str | bytes]]


class Guard:
    def __init__(
        self,
        auth: AuthSettings,
        environments: Mapping[str, EnvironmentSettings],
        rate_limits: RateLimitSettings,
        *,
        authenticator: Authenticator | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.settings = auth
        self.authenticator = authenticator
        self.enabled = auth.mode != "none"
        if self.enabled and authenticator is None:
            raise ValueError(f"auth.mode {auth.mode} needs an authenticator")
        self.authz = Authorizer(auth, environments)
        self.limits = RateLimiter(rate_limits)
        self.audit = audit or AuditLog(None, enabled=False)
        self._cache: dict[str, Identity] = {}
        self._services = {
            name: Identity(name, frozenset(groups), "mtls") for name, groups in auth.service_identities.items()
        }
        #: Authentication failures so far (for metrics).
        self.failures = 0
        #: Tokens the platform itself hands its own services (e.g. the runner), never written down.
        self._internal: dict[str, Identity] = {}

    def add_service_token(self, token: str, identity: Identity) -> None:
        """Accept ``token`` as ``identity`` (an in-process credential for one of the platform's services)."""
        self._internal[token] = identity

    async def __aenter__(self) -> Guard:
        self.audit.start()
        if self.authenticator is not None:
            await self.authenticator.__aenter__()
        if not self.enabled:
            log.warning(
                "auth.mode is 'none': callers are NOT authenticated; anyone who can reach the gateway may use "
                "any team's drivers as any user. Set auth.mode to oidc or static outside a laptop."
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.authenticator is not None:
            await self.authenticator.__aexit__(*exc)
        self.audit.close()

    # -- identity -----------------------------------------------------------------------------

    def cached(self, metadata: Metadata, peer: str | None, claimed: str) -> Identity | None:
        """The caller's identity if it needs no verification now, else None (use :meth:`identify`).

        Raises :class:`Unauthenticated` at once for a call with no credentials at all.
        """
        if not self.enabled:
            return Identity(claimed)
        token = bearer_token(metadata)
        if token is None:
            service = self._services.get(peer) if peer else None
            if service is not None:
                return service
            raise self._no_credentials(peer)
        hit = self._internal.get(token) or self._cache.get(token)
        if hit is not None and (hit.expires_at is None or hit.expires_at > time.time()):
            return hit
        return None

    async def identify(self, metadata: Metadata, peer: str | None, claimed: str, *, method: str = "") -> Identity:
        """The caller's identity; raises :class:`Unauthenticated` (and audits it) if there is none."""
        try:
            hit = self.cached(metadata, peer, claimed)
            if hit is not None:
                return hit
            token = bearer_token(metadata)
            assert token is not None and self.authenticator is not None
            self._cache.pop(token, None)
            who = await self.authenticator.authenticate(token)
        except Unauthenticated as exc:
            self.failures += 1
            self.audit.emit("auth.failure", method=method, claimed_user=claimed, peer=peer, reason=exc.message)
            log.info("authentication failed (%s, claimed user %r): %s", method, claimed, exc.message)
            raise
        if len(self._cache) >= _CACHE_MAX:
            self._cache.pop(next(iter(self._cache)))
        self._cache[token] = who
        return who

    def _no_credentials(self, peer: str | None) -> Unauthenticated:
        extra = f" (client certificate {peer!r} is not one of auth.service_identities)" if peer else ""
        return Unauthenticated(
            "this gateway requires credentials: connect with a token, e.g. "
            "sc://<gateway>:15002/;use_ssl=true;token=<your access token>" + extra
        )


def build_guard(settings: Settings) -> Guard:
    """The guard ``settings`` ask for: its authenticator by ``auth.mode``, and the audit log."""
    a = settings.auth
    authenticator: Authenticator | None = None
    if a.mode == "static":
        assert a.tokens_file is not None  # validated with the settings
        authenticator = StaticTokens(Path(a.tokens_file).expanduser())
    elif a.mode == "oidc":
        authenticator = OidcAuthenticator(a.oidc)
    audit_path = None if settings.audit.path == "-" else settings.state_path(settings.audit.path)
    return Guard(
        a,
        settings.environments,
        settings.rate_limits,
        authenticator=authenticator,
        audit=AuditLog(audit_path, enabled=settings.audit.enabled),
    )
