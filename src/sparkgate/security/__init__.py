"""Who is calling, and what they may do: authentication, authorization, rate limits, audit, TLS.

The gateway asks :class:`~sparkgate.security.guard.Guard` about every call; the pieces behind it
are small and pluggable (an :class:`~sparkgate.security.auth.Authenticator` per ``auth.mode``).
"""
