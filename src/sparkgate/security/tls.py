"""TLS for the gateway's listener, reloaded when the certificate files change.

An ``ssl.SSLContext`` (ALPN ``h2``) for the gateway's HTTP/2 listener. New connections get a
renewed certificate within ``tls.reload_interval_seconds``; open ones keep theirs.

mTLS: with ``tls.client_ca_file`` a client *may* present a certificate (token users need none);
OpenSSL verifies a presented one against that CA during the handshake, and its subject's CN is the
caller's identity if listed in ``auth.service_identities``.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from sparkgate.config import TlsSettings

log = logging.getLogger(__name__)


class ServerTls:
    def __init__(self, settings: TlsSettings) -> None:
        assert settings.cert_file and settings.key_file
        self.settings = settings
        self.cert = Path(settings.cert_file)
        self.key = Path(settings.key_file)
        self.client_ca = Path(settings.client_ca_file) if settings.client_ca_file else None
        self._context: ssl.SSLContext | None = None
        self._stamp = self._mtimes()

    def _mtimes(self) -> tuple[float, ...]:
        paths = [self.cert, self.key, *([self.client_ca] if self.client_ca else [])]
        return tuple(os.stat(p).st_mtime for p in paths)

    def ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_alpn_protocols(["h2"])  # gRPC clients refuse a server that does not pick h2
            ctx.load_cert_chain(self.cert, self.key)
            if self.client_ca is not None:
                ctx.load_verify_locations(cafile=self.client_ca)
                ctx.verify_mode = ssl.CERT_OPTIONAL
            self._context = ctx
        return self._context

    def reload_if_changed(self) -> bool:
        """Load changed files into the live context (new connections use them); True if reloaded."""
        try:
            stamp = self._mtimes()
        except OSError as exc:
            log.error("TLS files not readable (%s); keeping the current certificate", exc)
            return False
        if stamp == self._stamp:
            return False
        try:
            if self._context is not None:
                self._context.load_cert_chain(self.cert, self.key)
                if self.client_ca is not None:
                    self._context.load_verify_locations(cafile=self.client_ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("TLS certificate reload failed (%s); keeping the current one", exc)
            return False
        self._stamp = stamp
        log.info("TLS certificate reloaded from %s", self.cert)
        return True


def common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else None
    return value if isinstance(value, str) else None


def peer_subject_from_ssl(ssl_object: ssl.SSLObject | None) -> str | None:
    """The CN of the client certificate OpenSSL verified during the handshake."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    subject: Any = cert.get("subject", ())
    for rdn in subject:
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
