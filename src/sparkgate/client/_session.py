"""``get_spark`` and the catalog helpers (see :mod:`sparkgate.client`)."""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from sparkgate.errors import SparkgateError

#: Where the gateway is, per environment, when nothing says otherwise: the local platform.
DEFAULT_GATEWAY = "localhost:15002"
HEADERS = {"team": "x-doordash-team", "environment": "x-doordash-environment", "user": "x-doordash-user"}


class GatewayError(SparkgateError):
    """The gateway could not be reached or refused the session; the message says what to do."""


def _config() -> dict[str, Any]:
    path = os.environ.get("SPARKGATE_CLIENT_CONFIG") or str(Path.home() / ".config" / "sparkgate" / "client.yaml")
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def gateway_for(environment: str) -> str:
    """``host:port`` of the gateway for an environment.

    In order: ``$SPARK_CONNECT_GATEWAY`` (as CI sets it; one gateway for everything), the
    ``gateways`` map of ``$SPARKGATE_CLIENT_CONFIG`` (default ``~/.config/sparkgate/client.yaml``),
    e.g. ``gateways: {staging: spark-gateway-staging.example.com:15002}``, then ``localhost:15002``.
    """
    explicit = os.environ.get("SPARK_CONNECT_GATEWAY")
    if explicit:
        return explicit.removeprefix("sc://").split("/", 1)[0]
    gateways = _config().get("gateways") or {}
    value = gateways.get(environment) or gateways.get("default") or DEFAULT_GATEWAY
    return str(value).removeprefix("sc://").split("/", 1)[0]


def access_token() -> str | None:
    """The caller's token: ``SPARKGATE_TOKEN``, else the file ``SPARKGATE_TOKEN_FILE`` or
    ``~/.config/sparkgate/token``; None when there is none (auth off)."""
    token = os.environ.get("SPARKGATE_TOKEN")
    if token:
        return token.strip()
    path = os.environ.get("SPARKGATE_TOKEN_FILE") or str(Path.home() / ".config" / "sparkgate" / "token")
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return text or None


def _user() -> str:
    """JupyterHub's user in a notebook server, else the login name (the environment's, else the
    account's: containers often run without ``$USER``)."""
    if os.environ.get("JUPYTERHUB_USER"):
        return os.environ["JUPYTERHUB_USER"]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def connection_url(team: str, environment: str, user: str | None = None, gateway: str | None = None) -> str:
    """The ``sc://`` URL ``get_spark`` connects with (routing headers as parameters)."""
    gw = gateway or gateway_for(environment)
    who = user or _user()
    params = {HEADERS["team"]: team, HEADERS["environment"]: environment, HEADERS["user"]: who, "user_id": who}
    token = access_token()
    if token:
        params["token"] = token
        if gw.split(":", 1)[0] != "localhost":
            params["use_ssl"] = "true"  # pyspark sends a token in clear only to "localhost"
    return f"sc://{gw}/;" + ";".join(f"{k}={urllib.parse.quote(v, safe='@.-_')}" for k, v in params.items())


def _reachable(gateway: str, environment: str) -> None:
    host, _, port = gateway.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port or 15002)), timeout=5):
            return
    except (OSError, ValueError) as exc:
        raise GatewayError(
            f"cannot reach the Spark Gateway at {gateway} for environment {environment!r} ({exc}). "
            "Is it running (locally: `sparkgate up`)? Point to another one with SPARK_CONNECT_GATEWAY=host:port "
            "or the gateways map in ~/.config/sparkgate/client.yaml."
        ) from None


def _explain(exc: Exception, team: str, environment: str, gateway: str) -> GatewayError:
    text = str(exc)
    details = getattr(exc, "details", None)
    first = details() if callable(details) else None  # a grpc.RpcError: the gateway's own message
    if not first:
        found = re.search(r'details = "(.*?)"', text)
        first = found.group(1) if found else (text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    if "unknown environment" in text:
        hint = "pick one of the environments the message lists"
    elif "may not use team" in text or "is not a valid name" in text:
        hint = "check the team name (lower-case letters, digits, '-') and that you are in its group"
    elif "UNAUTHENTICATED" in text or "requires credentials" in text or "token" in text.lower():
        hint = "set SPARKGATE_TOKEN (or a token file at ~/.config/sparkgate/token) to your access token"
    else:
        hint = "see the gateway's message above"
    return GatewayError(f"the Spark Gateway at {gateway} refused team {team!r} in {environment!r}: {first} ({hint})")


def get_spark(
    team: str,
    environment: str = "staging",
    app_name: str | None = None,
    user: str | None = None,
    *,
    quiet: bool = False,
) -> Any:
    """A Spark Connect session for ``team`` in ``environment``, through the gateway.

    >>> spark = get_spark("data-science", "staging")
    >>> spark.sql("SELECT 1").show()
    """
    from pyspark.sql.connect.session import SparkSession

    gateway = gateway_for(environment)
    _reachable(gateway, environment)
    who = user or _user()
    url = connection_url(team, environment, who, gateway)
    app = app_name or f"jupyter-{who}-{environment}"
    before = SparkSession.getActiveSession()
    try:
        spark = SparkSession.builder.remote(url).appName(app).getOrCreate()
        version = spark.version
    except Exception as exc:
        # pyspark registers the session before its first call fails: drop it, or the next
        # get_spark (another team or environment) would be handed this broken one.
        with contextlib.suppress(Exception):
            failed = SparkSession.getActiveSession()
            if failed is not None and failed is not before:
                failed.stop()
        raise _explain(exc, team, environment, gateway) from exc
    if not quiet:
        print(f"Connected to Spark {version} through {gateway} (team {team}, environment {environment}, user {who})")
    return spark


def show_catalogs(spark: Any) -> None:
    """Show available catalogs."""
    spark.sql("SHOW CATALOGS").show()


def show_databases(spark: Any, catalog: str = "pedregal") -> None:
    """Show databases in a catalog."""
    spark.sql(f"SHOW DATABASES IN {catalog}").show()


def show_tables(spark: Any, catalog: str, database: str) -> None:
    """Show tables in a database."""
    spark.sql(f"SHOW TABLES IN {catalog}.{database}").show()


def describe_table(spark: Any, table: str) -> None:
    """Describe a table schema."""
    spark.sql(f"DESCRIBE TABLE {table}").show(truncate=False)
