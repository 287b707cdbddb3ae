"""Typed configuration: one YAML file plus ``SPARKGATE__…`` environment overrides, validated at load.

Where it comes from, later wins:

1. the defaults below (a working local platform with nothing configured),
2. a YAML file: ``--config PATH``, else ``$SPARKGATE_CONFIG``, else ``./sparkgate.yaml`` if present,
3. environment variables ``SPARKGATE__<SECTION>__<KEY>=value`` (``__`` separates levels; values
   are parsed as YAML scalars, so ``SPARKGATE__GATEWAY__PORT=15003`` is an int and
   ``SPARKGATE__POOL__SIZE=0`` turns the warm pool off; names are case-insensitive except dotted
   Spark conf keys: ``SPARKGATE__LOCAL__SPARK_CONF__spark.dynamicAllocation.enabled=true``).

``environments`` has one section per environment a client may name (``x-doordash-environment``).
By default four environments (local, test, staging, prod) are all served by the local
provider, so snippets that say ``staging`` or ``prod`` work on a laptop, and each sees the local
``pedregal`` catalog; ``environments.<env>.catalog`` names another (production: Unity Catalog).

Every field documents its unit and why its default is what it is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sparkgate.errors import ConfigError

ENV_PREFIX = "SPARKGATE__"
#: The profile every environment uses unless it names another.
DEFAULT_PROFILE = "default"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _conf_values_as_strings(data: Any) -> Any:
    """Spark conf is all strings; YAML (and env overrides) read ``1`` and ``true`` as int and bool."""
    if not isinstance(data, dict):
        return data

    def text(v: Any) -> Any:
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v) if isinstance(v, int | float) else v

    return {k: text(v) for k, v in data.items()}


#: Spark conf (or catalog options): string values, written in YAML as ``1``, ``true`` or ``"2g"`` alike.
SparkConf = Annotated[dict[str, str], BeforeValidator(_conf_values_as_strings)]


def absolute_path(p: Path) -> Path:
    """``p`` with ``~`` expanded, made absolute against the working directory *now*, and normalised.

    Every path setting passes through here when settings are loaded, so no component ever sees a
    relative one: drivers, job programs and the standby job program run in directories of their
    own, where a relative path would name something else.
    """
    return Path(os.path.abspath(p.expanduser()))


def _absolute_file(value: str | None) -> str | None:
    return str(absolute_path(Path(value))) if value else None  # "" (as from an empty override): not set


#: A file named in the settings: relative to the working directory the settings are loaded in.
FileSetting = Annotated[str | None, AfterValidator(_absolute_file)]


def _refuse_moved(data: Any, key: str, where: str) -> Any:
    """A before-validator's body: a setting that moved gets an error saying where to, not "extra input"."""
    if isinstance(data, dict) and key in data:
        raise ValueError(f"{key} moved to {where}")
    return data


class RoutingHeaders(_Section):
    """Names of the routing headers (gRPC metadata keys, lower-case)."""

    #: Header naming the team a session belongs to.
    team: str = "x-doordash-team"
    #: Header naming the environment (a key of ``environments``).
    environment: str = "x-doordash-environment"
    #: Header naming the user, when auth is off (with auth on, the verified identity is the user).
    user: str = "x-doordash-user"
    #: Builder ``.config(PREFIX + header, value)`` pairs arrive as a Config(Set) RPC, not as headers
    #: (neither the Python nor the JVM client turns them into metadata); the gateway reads them too.
    config_prefix: str = "spark.connect.grpc.header."

    @field_validator("team", "environment", "user")
    @classmethod
    def _lower(cls, v: str) -> str:
        if not v or v != v.lower():
            raise ValueError("header names must be non-empty and lower-case (gRPC metadata keys)")
        return v


class AffinitySettings(_Section):
    """Where session → driver routes live."""

    #: ``sqlite`` (default) keeps routes across a gateway restart so a reattaching client goes back
    #: to its driver; ``memory`` forgets them.
    backend: Literal["memory", "sqlite"] = "sqlite"
    #: SQLite file; relative paths are under ``state_dir``.
    path: str = "affinity.db"
    #: Seconds a session may sit idle before it is released: its route dropped, its driver told
    #: (1800: 30 minutes).
    session_ttl_seconds: float = Field(default=1800.0, gt=0)
    #: Seconds a session is kept once its client closed every connection that carried its calls
    #: (a client that crashed or was killed): then it is released as an idle one is, instead of
    #: after ``session_ttl_seconds``. A client calling again within this time keeps its session. A
    #: connection the gateway closed (idle for ``gateway.http2.idle_timeout_seconds``, or at
    #: shutdown) does not count: an idle notebook keeps its session for the full TTL.
    client_gone_seconds: float = Field(default=120.0, gt=0)
    #: Seconds between sweeps of idle routes and buffered options.
    sweep_interval_seconds: float = Field(default=30.0, gt=0)


class StateSettings(_Section):
    """Where gateway replicas keep what they share. ``local`` (the default): this process alone, with
    routes in ``gateway.affinity``. ``redis``: session routes in Redis, so several gateways behind a
    load balancer serve every session, and a client whose gateway died carries on through another."""

    #: ``local`` or ``redis``.
    backend: Literal["local", "redis"] = "local"
    #: With ``redis``: ``redis://[:password@]host:port/db`` or ``rediss://`` (TLS).
    redis_url: str = ""
    #: Instead of ``redis_url``: Redis Sentinel addresses (``host:port``) that name the current
    #: primary of ``master_name``; the gateway follows a failover.
    sentinels: list[str] = []
    #: The Sentinel name of the Redis primary.
    master_name: str = "mymaster"
    #: Prefix of every key (hash-tagged, so the keys share a Redis Cluster slot); replicas that share
    #: state use the same prefix.
    key_prefix: str = "sparkgate"
    #: Replicas that must acknowledge a new route before its first call goes on (Redis ``WAIT``), so
    #: a failover to a replica loses no placed session; 0 with a Redis that has no replicas.
    wait_replicas: int = Field(default=0, ge=0)
    #: Milliseconds ``WAIT`` may take; a route not acknowledged in time makes its call UNAVAILABLE.
    wait_timeout_ms: int = Field(default=500, ge=1)
    #: Seconds a Redis command may take before the call that needed it fails with UNAVAILABLE.
    timeout_seconds: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _url_given(self) -> StateSettings:
        if self.backend != "redis" or self.sentinels:
            for address in self.sentinels:
                host, _, port = address.rpartition(":")
                if not host or not port.isdigit():
                    raise ValueError(f"state.sentinels: {address!r} is not host:port")
            return self
        if not self.redis_url.startswith(("redis://", "rediss://")):
            raise ValueError(
                "state.backend redis needs state.redis_url (redis://host:port/db or rediss://...) or state.sentinels"
            )
        return self


class Http2Limits(_Section):
    """What one client's HTTP/2 connection may do. Each default is the one nginx or Envoy ships; a
    client past a limit gets the answer named, never the service of others."""

    #: Streams one connection may have open at once (advertised as SETTINGS_MAX_CONCURRENT_STREAMS;
    #: nginx ``http2_max_concurrent_streams``: 128). One more is refused with RST_STREAM
    #: REFUSED_STREAM, which clients retry.
    max_concurrent_streams: int = Field(default=128, ge=1)
    #: Streams one connection may open in its lifetime; then GOAWAY (graceful: calls in flight
    #: finish, the client reconnects for new ones). nginx ``keepalive_requests``: 1000.
    max_streams_per_connection: int = Field(default=1000, ge=1)
    #: Rapid reset (CVE-2023-44487): once a connection opened this many streams, if at least half of
    #: them were reset by the client within ``premature_reset_seconds`` of opening, GOAWAY
    #: ENHANCE_YOUR_CALM. Envoy ``premature_reset_total_stream_count``: 500.
    premature_reset_min_streams: int = Field(default=500, ge=1)
    #: Envoy ``premature_reset_min_stream_lifetime_seconds``: 1.
    premature_reset_seconds: float = Field(default=1.0, gt=0)
    #: Frames the gateway may have queued for a client that is not reading them (PING and SETTINGS
    #: acknowledgements, resets, window updates, headers); past it the connection is closed.
    #: Envoy ``max_outbound_control_frames``: 1000.
    max_queued_control_frames: int = Field(default=1000, ge=1)
    #: Consecutive DATA, HEADERS or CONTINUATION frames with nothing in them (and not ending the
    #: stream); one more → GOAWAY ENHANCE_YOUR_CALM. Envoy
    #: ``max_consecutive_inbound_frames_with_empty_payload``: 1.
    max_consecutive_empty_frames: int = Field(default=1, ge=0)
    #: PRIORITY frames allowed per stream opened (plus one stream's worth); past it → GOAWAY
    #: ENHANCE_YOUR_CALM. Envoy ``max_inbound_priority_frames_per_stream``: 100.
    max_priority_frames_per_stream: int = Field(default=100, ge=0)
    #: Largest request header list in bytes (names + values + 32 per field, RFC 9113 §6.5.2),
    #: advertised as SETTINGS_MAX_HEADER_LIST_SIZE and checked on the compressed block before it is
    #: decoded; larger → GOAWAY ENHANCE_YOUR_CALM. Envoy ``max_request_headers_kb``: 60 KiB; 64 KiB
    #: leaves room for large OIDC tokens.
    max_header_list_bytes: int = Field(default=64 * 1024, ge=4096)
    #: Frames handled per read before the connection yields the event loop to other connections
    #: (the rest of the read waits its turn; nothing is dropped).
    frames_per_turn: int = Field(default=1000, ge=1)
    #: Bytes of calls' first messages the gateway holds while it routes them (it needs a call's
    #: whole first message to route it), per connection and for all connections together. A call
    #: whose announced message does not fit gets RESOURCE_EXHAUSTED at once, before it is sent, so
    #: windows are only credited for what the gateway can hold. Per connection: 128 MiB, the
    #: largest message Spark Connect's clients send.
    max_held_bytes_per_connection: int = Field(default=128 * 1024 * 1024, ge=1024 * 1024)
    #: The same for all connections together (1 GiB).
    max_held_bytes_total: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)
    #: Bytes of flow-control window the gateway grants for one connection's calls, both directions
    #: together (the client's uploads, its drivers' responses), and for all connections: what a
    #: client that stops reading can make the gateway hold. Each call starts with the HTTP/2 default
    #: window (64 KiB) and grows to 16 MiB while the budget has room; past it, calls go on at the
    #: pace of the window they have. Envoy ``per_connection_buffer_limit_bytes`` bounds the same
    #: thing (1 MiB by default, for a proxy that does not relay 4 MiB Arrow batches). Local drivers
    #: keep this much of the results they sent and 32 MiB more, for clients that reattach through
    #: another replica when one dies (``spark.connect.execute.reattachable.observerRetryBufferSize``).
    relay_window_bytes_per_connection: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    #: The same for all connections together (1 GiB).
    relay_window_bytes_total: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)
    #: Seconds a new connection has to send the HTTP/2 preface (a client sends it at once).
    handshake_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Seconds a request's header block, or any other frame, may take to arrive whole; then GOAWAY.
    #: nginx ``client_header_timeout``: 60.
    request_headers_timeout_seconds: float = Field(default=60.0, gt=0)
    #: Seconds a call's first message may take to arrive whole (the gateway routes on it); then the
    #: call ends with DEADLINE_EXCEEDED. nginx ``client_body_timeout``: 60.
    first_message_timeout_seconds: float = Field(default=60.0, gt=0)
    #: Seconds a connection may stay open with no call in it; then GOAWAY (clients reconnect when
    #: they next call). nginx ``keepalive_timeout``: 75.
    idle_timeout_seconds: float = Field(default=75.0, gt=0)
    #: Client connections at once; one more is answered with GOAWAY ENHANCE_YOUR_CALM and closed.
    #: Also kept 256 below the process's open-file limit (raised to its hard limit at start).
    max_connections: int = Field(default=10_000, ge=1)


class GatewaySettings(_Section):
    """The Spark Gateway: an HTTP/2 relay of Spark Connect calls (:mod:`sparkgate.gateway.h2`)."""

    #: Address the gRPC listener binds (default: all interfaces, on Spark Connect's port 15002).
    host: str = "0.0.0.0"
    #: Port of the gRPC listener (Spark Connect's default, 15002); 0 picks a free port.
    port: int = Field(default=15002, ge=0, le=65535)
    #: Largest gRPC message in bytes on both legs (256 MiB: clients send up to 128 MiB).
    max_message_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    headers: RoutingHeaders = RoutingHeaders()
    affinity: AffinitySettings = AffinitySettings()
    #: Limits on each client's HTTP/2 connection.
    http2: Http2Limits = Http2Limits()
    #: Seconds a session's options are kept while it waits for the rest of its routing info
    #: (the JVM client sends team and environment in two separate Config RPCs).
    pending_ttl_seconds: float = Field(default=300.0, gt=0)
    #: Upper bound on sessions waiting for routing info, so a misbehaving client cannot grow memory.
    pending_max_sessions: int = Field(default=10000, gt=0)
    #: Seconds a new session may wait for a driver to be started for it before UNAVAILABLE.
    driver_wait_seconds: float = Field(default=300.0, gt=0)
    #: Seconds to let in-flight calls finish on SIGTERM before they are cancelled.
    drain_seconds: float = Field(default=10.0, ge=0)
    #: Processes serving the gateway's port (``SO_REUSEPORT``: the kernel spreads connections over
    #: them), each a replica sharing sessions and drivers through ``state``. ``None``: one per CPU
    #: core with ``state.backend: redis``, else 1; more than 1 needs ``state.backend: redis``.
    workers: int | None = Field(default=None, ge=1, le=256)
    #: Bind the port with ``SO_REUSEPORT`` so that several processes share it (``workers`` sets
    #: it in the processes it starts).
    reuse_port: bool = False

    @model_validator(mode="before")
    @classmethod
    def _one_engine(cls, data: Any) -> Any:
        if isinstance(data, dict) and "engine" in data:
            raise ValueError(
                "engine was removed: the gateway always relays HTTP/2 frames (what engine: h2 did); delete the setting"
            )
        return data


#: sparkgate's own catalog plugin: tables in a directory (``driver_plugin/PathCatalog.java``); local drivers only.
PATH_CATALOG_CLASS = "io.sparkgate.catalog.PathCatalog"
_CATALOG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JAVA_CLASS = re.compile(r"[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*")


class CatalogSettings(_Section):
    """The Spark catalog an environment's drivers mount: ``spark.sql.catalog.<name>=<class>`` plus
    ``spark.sql.catalog.<name>.<option>=<value>`` for each option.

    Default: sparkgate's path catalog named ``pedregal`` (the name queries use, e.g.
    ``pedregal.raw.events``), which only local drivers can mount. Production names Unity Catalog::

        catalog:
          class: io.unitycatalog.spark.UCSingleCatalog
          options: {uri: "https://unity-catalog.example.com", token: "..."}
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: Mount it (the path catalog needs a JDK once, to build its plugin, kept in
    #: ``$XDG_CACHE_HOME/sparkgate/plugins``, else ``~/.cache/sparkgate/plugins``).
    enabled: bool = True
    #: The name queries use: ``pedregal.raw.events``.
    name: str = "pedregal"
    #: The catalog plugin class (``spark.sql.catalog.<name>``); its jar must be on the driver's
    #: classpath (the path catalog's is built by sparkgate; others via a profile's ``spark_conf``,
    #: e.g. ``spark.jars.packages``, or the image).
    class_name: str = Field(default=PATH_CATALOG_CLASS, alias="class")
    #: Path catalog only: its directory (relative to ``state_dir``); default ``catalog/<name>``.
    root: str | None = None
    #: Path catalog only: write the sample tables (``raw.events``, ``raw.orders``,
    #: ``feature_store.user_features``, ``ds`` partitions for the last 14 days) into it at start.
    sample_data: bool = True
    #: ``spark.sql.catalog.<name>.<key>`` settings, e.g. Unity Catalog's ``uri`` and ``token``.
    options: SparkConf = {}

    @property
    def is_path_catalog(self) -> bool:
        return self.class_name == PATH_CATALOG_CLASS

    @model_validator(mode="before")
    @classmethod
    def _default_root(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("root") is not None:
            return data
        if data.get("class", data.get("class_name", PATH_CATALOG_CLASS)) != PATH_CATALOG_CLASS:
            return data
        return {**data, "root": f"catalog/{data.get('name', 'pedregal')}"}

    @model_validator(mode="after")
    def _consistent(self) -> CatalogSettings:
        if not _CATALOG_NAME.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} is not a catalog name (letters, digits and _)")
        if self.name.lower() == "spark_catalog":
            raise ValueError("name spark_catalog is Spark's session catalog; pick another name")
        if not _JAVA_CLASS.fullmatch(self.class_name):
            raise ValueError(f"class {self.class_name!r} is not a Java class name")
        if any(not k or k.startswith(".") or k.endswith(".") for k in self.options):
            raise ValueError("options keys must be non-empty and not start or end with a dot")
        if self.is_path_catalog:
            if "root" in self.options:
                raise ValueError("the path catalog's directory is catalog.root, not options.root")
        elif self.root is not None:
            raise ValueError(f"root is for the built-in path catalog only; {self.class_name} takes options")
        return self

    def mount_key(self) -> str:
        """Equal for catalogs a driver mounts the same way (every disabled catalog is alike)."""
        return self.model_dump_json() if self.enabled else "none"

    def describe(self) -> str:
        if not self.enabled:
            return "none"
        where = f" at {self.root}" if self.is_path_catalog else ""
        return f"{self.name} = {self.class_name}{where}"

    def spark_conf(self, root: Path | None = None) -> dict[str, str]:
        """``spark.sql.catalog.<name>`` and its options (for the path catalog, ``root`` resolved)."""
        if not self.enabled:
            return {}
        prefix = f"spark.sql.catalog.{self.name}"
        conf = {prefix: self.class_name, **{f"{prefix}.{k}": v for k, v in self.options.items()}}
        if self.is_path_catalog and root is not None:
            conf[f"{prefix}.root"] = str(root)
        return conf


class LocalProviderSettings(_Section):
    """Spark Connect servers started from the installed ``pyspark`` wheel on this machine."""

    #: Spark distribution to launch; default: the ``pyspark`` package directory (it ships the jars).
    spark_home: FileSetting = None
    #: JVM heap for each driver. The JVM's 1 GiB default dies with OutOfMemoryError on a 10M-row collect.
    driver_memory: str = "2g"
    #: Spark master for local drivers: threads in the driver JVM.
    master: str = "local[2]"
    #: Drivers listen on loopback only: nobody reaches them except through the gateway.
    bind_host: str = "127.0.0.1"
    #: Seconds a driver may take to answer and run its warm-up query (a cold JVM takes ~10 s here).
    startup_timeout_seconds: float = Field(default=180.0, gt=0)
    #: Before a warm pool's driver counts as ready, run a pyspark client against it
    #: (``sparkgate.clusters.warmup``) so a user's first session does not pay for JIT-compiling the
    #: client paths (~0.5 s). Adds a few seconds to the pool's starts, none to a session; a driver
    #: started for a team that waits for it skips it.
    client_warmup: bool = True
    #: Start drivers from a class-data archive (the JVM's class data sharing): the classes a Spark
    #: Connect driver loads, parsed and verified once, built in the background by a training run
    #: after the first driver is ready (once per Java, Spark build and heap; a gateway tries twice
    #: at most). A cold driver starts in about a third of the time; a missing, damaged or unusable
    #: archive only costs that speed.
    class_archive: bool = True
    #: Where class-data archives are kept (empty: ``$XDG_CACHE_HOME/sparkgate/class-archives``,
    #: else ``~/.cache/sparkgate/class-archives``: shared by every state directory of the user).
    class_archive_dir: FileSetting = None
    #: Extra Spark conf for every local driver.
    spark_conf: SparkConf = {}
    #: Most local drivers at once (each costs ~1.5 GB of RAM).
    max_drivers: int = Field(default=6, gt=0)
    #: Each driver requires its own pre-shared ``spark.connect.authenticate.token``, which only the
    #: gateway holds (``{state_dir}/driver-tokens/<id>``, mode 0600): nothing on this machine
    #: reaches a driver except through the gateway, even on loopback, and a token read on one
    #: driver opens no other.
    require_token: bool = True

    @model_validator(mode="before")
    @classmethod
    def _catalog_moved(cls, data: Any) -> Any:
        return _refuse_moved(data, "catalog", "environments.<env>.catalog (name, class, root, options)")


class KubernetesPodSettings(_Section):
    """How a driver Pod looks (``provider: kubernetes``): ``kubernetes.pod`` for every profile,
    ``pool.profiles.<name>.pod`` for one (its fields replace those it sets)."""

    #: Image with Spark (``/opt/spark``) and the local catalog plugin: ``deploy/docker/driver.Dockerfile``.
    image: str = "ghcr.io/sparkgate/spark-driver:4.1.4"
    #: When the node pulls the image (Kubernetes ``imagePullPolicy``); a moving tag needs ``Always``.
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    #: CPU the driver container requests (and is limited to).
    cpu: str = "1"
    #: Memory of the driver container (request and limit); the JVM heap is 75 % of it.
    memory: str = "4Gi"
    #: Service account of driver Pods: it may create, watch and delete its executors' Pods
    #: (the chart's driver role, ``<release>-sparkgate-driver``) and nothing else.
    service_account: str = "sparkgate-driver"
    #: Node labels a driver Pod must run on (Kubernetes ``nodeSelector``), e.g. ``{pool: spark}``.
    node_selector: dict[str, str] = {}
    #: Kubernetes tolerations, as in a Pod spec (``key``, ``operator``, ``value``, ``effect``).
    tolerations: list[dict[str, str]] = []


class KubernetesSettings(_Section):
    """A Kubernetes cluster: driver Pods (``environments.<env>.provider: kubernetes``), batch jobs
    (``runner.backend: kubernetes``)."""

    #: Namespace of the driver Pods, their Secrets, the fleet Lease and the jobs' SparkApplications.
    namespace: str = "sparkgate"
    #: Name of this installation: its driver Pods are labelled ``app.kubernetes.io/instance`` with
    #: it and its gateways see no others, so two installations can share a namespace (the Helm
    #: chart sets the release name).
    instance: str = Field(default="sparkgate", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    #: Kubeconfig file to reach the API server; empty: the Pod's service account (in the cluster).
    kubeconfig: FileSetting = None
    #: Context of the kubeconfig to use (empty: its current context).
    context: str = ""
    #: Driver Pods of every profile (``pool.profiles.<name>.pod`` changes some fields for one).
    pod: KubernetesPodSettings = KubernetesPodSettings()
    #: File holding the key each driver's token is derived from (HMAC-SHA256 of its Pod name), so
    #: that every gateway replica, and a restarted one, can reach every driver without reading a
    #: Secret, and a token read on one driver opens no other. Every replica must read the same key
    #: (the Helm chart mounts one Secret into all). Empty: a random key per gateway process —
    #: drivers it started are not adopted after a restart; they are stopped instead.
    token_key_file: FileSetting = None
    #: JVM extensions every driver loads (the batch sandbox, the local catalog): the jar in the
    #: driver image. Empty: drivers start without it (sandboxed jobs are then refused on them).
    plugin_jar: str = "local:///opt/sparkgate/sparkgate-driver-plugin.jar"
    #: The class-data archive in the driver image that driver Pods start from (JVM class data
    #: sharing: a cold driver starts in about half the time). The image's is trained with the heap
    #: of a 4Gi Pod; a JVM that cannot use it starts without it. Empty: none.
    class_archive: str = "/opt/sparkgate/class-archive.jsa"
    #: Seconds a driver Pod may take to accept connections on 15002 (image pull included).
    startup_timeout_seconds: float = Field(default=600.0, gt=0)
    #: Most driver Pods at once (warm, in use and being stopped): what a runaway pool or a
    #: flood of new teams can cost the cluster at most.
    max_drivers: int = Field(default=50, gt=0)
    #: Name of the ``coordination.k8s.io`` Lease held by the gateway that runs the warm pool
    #: (empty: ``<instance>-fleet``).
    lease_name: str = ""
    #: A driver with sessions is protected from node drains (its Pod is labelled for the chart's
    #: PodDisruptionBudget) for at most this many seconds after its node is cordoned: it takes no
    #: new session meanwhile, and then it is released so the drain goes on.
    drain_grace_seconds: float = Field(default=3600.0, ge=0)
    #: Label selector of Spark Connect servers run by others, used as drivers but never started
    #: or stopped by sparkgate (e.g. ``app=team-spark-connect``; their Pods carry
    #: ``sparkgate.io/namespace`` naming the team namespace they serve). Empty: none.
    adopt_selector: str = ""


class PoolProfile(_Section):
    """A kind of driver: what it runs (Spark version, conf) and how many are kept warm.

    Warm drivers are started before anyone asks, so everything that must be fixed at JVM start
    (memory, jars, catalogs, static SQL conf) belongs to a profile; environments and teams pick one
    (``environments.<env>.profile``, ``environments.<env>.team_profiles``). A warm driver is only
    handed to a namespace whose profile it was started with.
    """

    #: Warm drivers of this profile kept ready. The ``default`` profile's is ``pool.size``.
    size: int = Field(default=0, ge=0)
    #: Spark version the drivers must run, checked against the provider when the platform starts
    #: (``None``: whatever the provider runs — for ``local``, the installed pyspark's).
    spark_version: str | None = None
    #: Spark conf for drivers of this profile (on top of ``local.spark_conf``).
    spark_conf: SparkConf = {}
    #: Driver Pod fields for this profile (``provider: kubernetes``), over ``kubernetes.pod``
    #: (e.g. ``{memory: 16Gi, node_selector: {pool: highmem}}``).
    pod: dict[str, Any] = {}

    @field_validator("pod")
    @classmethod
    def _pod_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        KubernetesPodSettings.model_validate(v)  # (names and types as in kubernetes.pod)
        return v


class PoolSettings(_Section):
    #: Warm drivers of the ``default`` profile kept ready for new sessions (0 = start drivers on
    #: demand only). Other profiles set their own ``size``.
    size: int = Field(default=1, ge=0)
    #: Named driver profiles besides ``default`` (whose conf may be set here too; its size is ``size``).
    profiles: dict[str, PoolProfile] = {}
    #: Sessions a driver takes before new sessions of its namespace go to another driver
    #: (1 = a driver of its own for each session; a local driver serves several well).
    sessions_per_driver: int = Field(default=8, ge=1)
    #: Which of a namespace's ready drivers with room a new session goes to: ``least-sessions``
    #: (spread load: the least-loaded driver) or ``pack`` (fill the busiest first, so the
    #: others go idle and are stopped after ``driver_idle_ttl_seconds``).
    placement: Literal["least-sessions", "pack"] = "least-sessions"
    #: Seconds a team's driver may sit with no session before it is stopped for good (process
    #: gone; the warm pool keeps its own target), so idle team drivers do not pile up.
    driver_idle_ttl_seconds: float = Field(default=900.0, gt=0)
    #: Seconds to wait after a failed driver start before the next attempt for the same profile or
    #: namespace; doubles on each consecutive failure up to ``start_backoff_max_seconds``. New
    #: sessions asking meanwhile get UNAVAILABLE with the last error and when to retry, instead of
    #: each starting a JVM that crashes the same way.
    start_backoff_seconds: float = Field(default=5.0, gt=0)
    #: The longest that wait grows to.
    start_backoff_max_seconds: float = Field(default=300.0, gt=0)
    #: Seconds between comparisons of the driver registry with the provider's list (drivers that
    #: vanished are dropped like dead ones; drivers started elsewhere are adopted).
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)

    @field_validator("profiles")
    @classmethod
    def _default_size(cls, v: dict[str, PoolProfile]) -> dict[str, PoolProfile]:
        d = v.get(DEFAULT_PROFILE)
        if d is not None and d.size:
            raise ValueError("the default profile's warm size is pool.size, not pool.profiles.default.size")
        return v

    def profile(self, name: str) -> PoolProfile:
        """A profile with its effective size (``default`` exists even when not listed)."""
        if name == DEFAULT_PROFILE:
            base = self.profiles.get(DEFAULT_PROFILE, PoolProfile())
            return base.model_copy(update={"size": self.size})
        return self.profiles[name]

    def all_profiles(self) -> dict[str, PoolProfile]:
        return {name: self.profile(name) for name in {DEFAULT_PROFILE, *self.profiles}}


class QuotaSettings(_Section):
    """Per-namespace (team and environment) limits; exceeding one gives RESOURCE_EXHAUSTED naming it."""

    #: Most drivers one namespace may hold (0 = only ``local.max_drivers`` bounds it). At the limit,
    #: new sessions share the namespace's drivers beyond ``pool.sessions_per_driver``.
    max_drivers_per_namespace: int = Field(default=3, ge=0)
    #: Most concurrent sessions one namespace may have (0 = no limit).
    max_sessions_per_namespace: int = Field(default=200, ge=0)


class AdminSettings(_Section):
    """The operator HTTP endpoints (``/status``, ``/healthz``, ``/readyz``)."""

    #: Loopback by default: ``/status`` lists users and session ids.
    host: str = "127.0.0.1"
    #: Port of these endpoints and ``/metrics``; 0 picks a free port.
    port: int = Field(default=9090, ge=0, le=65535)
    #: Serve them (``/status``, ``/healthz``, ``/readyz``, ``/metrics``).
    enabled: bool = True


class HealthSettings(_Section):
    """Active health probes of drivers (a ReleaseSession of an unknown session: creates nothing)."""

    #: Seconds between probe rounds. With ``failures_to_dead`` = 2 an unreachable driver is dead in
    #: about 2 s; a local driver that exits is noticed at once by its provider.
    interval_seconds: float = Field(default=1.0, gt=0)
    #: Seconds a probe may take.
    timeout_seconds: float = Field(default=2.0, gt=0)
    #: Consecutive failed probes before a driver is declared dead (its sessions get SESSION_CHANGED).
    failures_to_dead: int = Field(default=2, ge=1)
    #: Consecutive good probes before a suspect driver takes new sessions again.
    successes_to_ready: int = Field(default=2, ge=1)


class OidcSettings(_Section):
    """OIDC / JWT bearer tokens (Okta-compatible): ``sc://gw:15002/;token=<JWT>``."""

    #: The issuer URL; its ``/.well-known/openid-configuration`` names the JWKS (signing keys).
    issuer: str = ""
    #: Required ``aud`` claim (an Okta authorization server's audience, e.g. ``api://sparkgate``).
    audience: str = ""
    #: Claim that names the person or service (the identity the driver sees as user id).
    identity_claim: str = "email"
    #: Claim with the caller's groups (a list, or a space/comma separated string).
    groups_claim: str = "groups"
    #: Signature algorithms accepted (asymmetric only: a shared-secret HS256 token is refused).
    algorithms: list[Literal["RS256", "ES256"]] = ["RS256", "ES256"]
    #: Seconds of clock skew tolerated on ``exp`` / ``nbf`` / ``iat``.
    leeway_seconds: float = Field(default=30.0, ge=0)
    #: A token whose ``kid`` is unknown makes the gateway refetch the JWKS (key rotation), at most
    #: once per this many seconds, so a flood of forged tokens cannot hammer the issuer.
    jwks_min_refresh_seconds: float = Field(default=30.0, ge=0)
    #: Seconds a fetched JWKS is trusted before it is refetched anyway.
    jwks_max_age_seconds: float = Field(default=3600.0, gt=0)
    #: Seconds for each HTTP request to the issuer.
    http_timeout_seconds: float = Field(default=5.0, gt=0)
    #: CA bundle for the issuer's HTTPS certificate (default: the system's).
    ca_file: FileSetting = None


class AuthSettings(_Section):
    """Who may call the gateway, and for which teams and environments."""

    #: ``none``: no credentials checked (the local default; logged loudly at start); the user is
    #: whoever the client says. ``static``: bearer tokens listed in ``tokens_file``. ``oidc``: JWTs
    #: from ``oidc.issuer``. With ``static`` or ``oidc`` a call without valid credentials is
    #: UNAUTHENTICATED, unless it comes over mTLS from one of ``service_identities``.
    mode: Literal["none", "static", "oidc"] = "none"
    #: YAML file for ``static``: ``tokens: [{token_sha256: <hex> | token: <plain>, subject: alice@x, groups: [fe]}]``.
    tokens_file: FileSetting = None
    oidc: OidcSettings = OidcSettings()
    #: mTLS client certificate subjects (CN) that may call without a token, with their groups,
    #: e.g. ``{sparkgate-runner: [platform]}`` (needs ``tls.client_ca_file``).
    service_identities: dict[str, list[str]] = {}
    #: Groups whose members may use a team: ``{team: [group, ...]}``. A team not listed here may be
    #: used by members of the group with the team's own name.
    team_groups: dict[str, list[str]] = {}
    #: Members of these groups may use every team.
    admin_groups: list[str] = []


class TlsSettings(_Section):
    """TLS on the gateway's listener (``sparkgate certs`` makes a local CA and certificates)."""

    #: PEM certificate chain and key; both set → the gateway speaks only TLS (ALPN h2).
    cert_file: FileSetting = None
    #: The certificate's private key (PEM).
    key_file: FileSetting = None
    #: CA that signs client certificates: set → clients may present one (mTLS) and its subject is
    #: their identity if listed in ``auth.service_identities``.
    client_ca_file: FileSetting = None
    #: Seconds between checks of the files; a changed certificate is used for new connections.
    reload_interval_seconds: float = Field(default=30.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file and self.key_file)


class RateLimitSettings(_Section):
    """Token buckets on RPCs; exceeding one gives RESOURCE_EXHAUSTED with RetryInfo. 0 = no limit.
    Gateway replicas sharing state (``state.backend: redis``) each admit an even share."""

    #: RPCs per second one user may make on average, and how many at once above that.
    per_user_rps: float = Field(default=0.0, ge=0)
    #: How many RPCs one user may make at once above ``per_user_rps``.
    per_user_burst: int = Field(default=200, ge=1)
    #: RPCs per second one team (all its users) may make, and its burst.
    per_team_rps: float = Field(default=0.0, ge=0)
    #: How many RPCs one team may make at once above ``per_team_rps``.
    per_team_burst: int = Field(default=1000, ge=1)
    #: With replicas sharing state: ``split`` — each replica admits rate ÷ replicas alive from
    #: buckets of its own (no round trip); ``exact`` — one bucket per user and team in Redis (GCRA,
    #: one round trip per call; while Redis does not answer, the split buckets stand in).
    mode: Literal["split", "exact"] = "split"


class AuditSettings(_Section):
    """The audit log: JSON lines of who did what (sessions, auth failures, denials, errors)."""

    #: Write it.
    enabled: bool = True
    #: File (relative to ``state_dir``), or ``-`` for stderr.
    path: str = "audit.log"


class KubernetesJobSettings(_Section):
    """How a job becomes a Spark Operator ``SparkApplication``."""

    #: Container image per environment; ``default`` for the rest. The image carries Spark, Python
    #: and sparkgate (the job program is its main file): the driver Pods' image
    #: (``deploy/docker/driver.Dockerfile``).
    images: dict[str, str] = {"default": "ghcr.io/sparkgate/spark-driver:4.1.4"}
    #: The job program inside the image.
    main_file: str = "local:///opt/sparkgate/program.py"
    #: Service account of the driver pod (the chart's driver account: it may run executors).
    service_account: str = "sparkgate-driver"
    #: Where job output goes, per environment (``{job_id}`` is replaced); ``default`` for the rest.
    output_uris: dict[str, str] = {"default": "s3a://sparkgate-scratch/{environment}/{job_id}"}
    #: Seconds a finished SparkApplication is kept before the operator deletes it (its
    #: ``timeToLiveSeconds``; the job's run-time limit is the runner's TTL, enforced by Cancel).
    keep_finished_seconds: int = Field(default=86400, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _catalog_uris_moved(cls, data: Any) -> Any:
        return _refuse_moved(
            data,
            "catalog_uris",
            "environments.<env>.catalog (class: io.unitycatalog.spark.UCSingleCatalog, options: {uri: ...})",
        )


class RunnerSettings(_Section):
    """The Spark Runner: batch manifests → Spark jobs (gRPC ``sparkrunner.SparkRunnerService``)."""

    #: ``sparkgate up`` starts it beside the gateway.
    enabled: bool = True
    #: Loopback by default: with ``auth.mode: none`` anyone reaching it could run jobs.
    host: str = "127.0.0.1"
    #: gRPC port; 50051 is where Spark Runner clients expect it.
    port: int = Field(default=50051, ge=0, le=65535)
    #: Where jobs run: ``local`` — processes on this machine (``local_driver``) — or
    #: ``kubernetes`` — a Spark Operator ``SparkApplication`` per job in ``kubernetes.namespace``
    #: (``runner.kubernetes``; needs the Spark Operator in the cluster and ``pip install
    #: 'sparkgate[kubernetes]'``). Jobs on Kubernetes run on when sparkgate stops, and are followed
    #: again when it starts.
    backend: Literal["local", "kubernetes"] = "local"
    #: SQLAlchemy URL of the job store; empty = SQLite at ``{state_dir}/runner.db``. PostgreSQL:
    #: ``postgresql+psycopg://user:pass@host/db`` (``pip install 'sparkgate[postgres]'``).
    database_url: str = ""
    #: Where local jobs run: ``pool`` — on a warm driver through the gateway (seconds to start;
    #: the job's Spark conf that only applies at JVM start is ignored) — or ``own`` — a driver of
    #: its own per job (``spark-submit``; ~10 s more, fully isolated). ``options.driver`` overrides.
    local_driver: Literal["pool", "own"] = "pool"
    #: Spark Connect URL of the gateway for ``pool`` jobs (``sparkgate up`` uses its own gateway).
    gateway_url: str = "sc://127.0.0.1:15002"
    #: CA that signed the gateway's TLS certificate, for pool jobs when ``tls`` is on (e.g. the one
    #: ``sparkgate certs`` made: ``.sparkgate/certs/ca.pem``). With auth on, ``sparkgate up`` gives
    #: the runner its own in-process credential; jobs run as ``sparkgate-runner`` on the gateway.
    gateway_ca_file: FileSetting = None
    #: Seconds a job may run before it is cancelled (``options.ttl_seconds`` overrides, up to this).
    max_ttl_seconds: float = Field(default=6 * 3600.0, gt=0)
    #: Seconds a job may run when its submit names no ``ttl_seconds``.
    default_ttl_seconds: float = Field(default=3600.0, gt=0)
    #: Rows each source is limited to in sandbox mode (``options.sample_limit`` overrides).
    sandbox_sample_limit: int = Field(default=10_000, ge=1)
    #: Jobs running at once (on this machine, or on Kubernetes: ``backend``); more wait as PENDING.
    max_running: int = Field(default=2, ge=1)
    #: Largest manifest Submit accepts, in bytes (nginx ``client_max_body_size``: 1 MiB); larger is
    #: refused before it is parsed.
    max_manifest_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Jobs one user may have waiting (PENDING); one more is refused with
    #: RESOURCE_EXHAUSTED (HTTP 429 in the Playground) until some have started.
    max_pending_jobs_per_user: int = Field(default=50, ge=1)
    #: Jobs all users together may have waiting.
    max_pending_jobs: int = Field(default=1000, ge=1)
    #: Submits one user may make per minute (a token bucket: bursts up to this, then one every
    #: 60/N seconds); one more is refused with RESOURCE_EXHAUSTED and when to retry.
    submits_per_minute_per_user: int = Field(default=60, ge=1)
    #: Driver log lines returned by Check(include_logs).
    log_tail_lines: int = Field(default=200, ge=1)
    #: Watch streams (a job's live events: the Playground's job view) open at once; one more is
    #: refused with RESOURCE_EXHAUSTED.
    max_watches: int = Field(default=200, ge=1)
    #: Watch streams one authenticated user may have open at once.
    max_watches_per_user: int = Field(default=20, ge=1)
    #: Directory of the local sample catalog (relative to ``state_dir``); ``samples.*`` tables.
    catalog_dir: str = "catalog"
    kubernetes: KubernetesJobSettings = KubernetesJobSettings()


class PlaygroundSettings(_Section):
    """The DCP Playground: REST API + web UI over the Spark Runner."""

    #: ``sparkgate up`` starts it (needs the runner).
    enabled: bool = True
    #: Loopback by default: with ``auth.mode: none`` it trusts the X-User-Email header.
    host: str = "127.0.0.1"
    #: Port of the web UI and REST API; 0 picks a free port.
    port: int = Field(default=8080, ge=0, le=65535)
    #: The Spark Runner to talk to when run on its own (``sparkgate playground``).
    runner_target: str = "127.0.0.1:50051"
    #: Largest request body in bytes (a manifest in JSON, escaped); larger gets 413 before it is
    #: read whole. Twice the runner's largest manifest.
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)


class EnvironmentSettings(_Section):
    """One environment a client can name."""

    #: Which cluster provider serves this environment: ``local`` (drivers on this machine) or
    #: ``kubernetes`` (driver Pods; the ``kubernetes`` section). All environments use one.
    provider: Literal["local", "kubernetes"] = "local"
    #: Driver profile (``pool.profiles``) for this environment's sessions.
    profile: str = DEFAULT_PROFILE
    #: Teams whose sessions in this environment use another profile: ``{team: profile}``.
    team_profiles: dict[str, str] = {}
    #: With auth on: only members of one of these groups may use this environment (empty: anyone
    #: allowed to use the team), e.g. ``prod: {allowed_groups: [prod-access]}``.
    allowed_groups: list[str] = []
    #: The catalog its sessions and jobs see. Mounted when a driver's JVM starts, so every
    #: environment sharing a profile (``profile``, ``team_profiles``) must name the same catalog.
    catalog: CatalogSettings = CatalogSettings()
    #: Absolute paths and URIs batch jobs may read and write in this environment (e.g.
    #: ``/data/lake``, ``s3a://lake/teams``). A manifest's relative paths go under the job's output
    #: directory and may not leave it; any other location is refused at Submit, naming the field.
    data_roots: list[str] = []

    def profiles(self) -> list[tuple[str, str]]:
        """``(setting, profile)`` for every profile this environment's sessions may use."""
        return [("profile", self.profile), *((f"team_profiles.{t}", p) for t, p in self.team_profiles.items())]


def _default_environments() -> dict[str, EnvironmentSettings]:
    return {name: EnvironmentSettings() for name in ("local", "test", "staging", "prod")}


class Settings(_Section):
    """The whole platform's configuration."""

    #: Directory for state (route database, driver logs and records, jobs, the sample catalog).
    #: A relative path is made absolute against the working directory the settings are loaded in.
    state_dir: Path = Field(default=Path(".sparkgate"), validate_default=True)
    #: ``text`` for people, ``json`` for log pipelines.
    log_format: Literal["text", "json"] = "text"
    #: ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR`` (``--log-level`` overrides).
    log_level: str = "INFO"
    gateway: GatewaySettings = GatewaySettings()
    state: StateSettings = StateSettings()
    pool: PoolSettings = PoolSettings()
    health: HealthSettings = HealthSettings()
    admin: AdminSettings = AdminSettings()
    quotas: QuotaSettings = QuotaSettings()
    local: LocalProviderSettings = LocalProviderSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    auth: AuthSettings = AuthSettings()
    tls: TlsSettings = TlsSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    audit: AuditSettings = AuditSettings()
    runner: RunnerSettings = RunnerSettings()
    playground: PlaygroundSettings = PlaygroundSettings()
    environments: dict[str, EnvironmentSettings] = Field(default_factory=_default_environments)

    def max_drivers(self) -> int:
        """Most drivers at once, as the provider's section says (``local`` or ``kubernetes``)."""
        kubernetes = any(env.provider == "kubernetes" for env in self.environments.values())
        return self.kubernetes.max_drivers if kubernetes else self.local.max_drivers

    @field_validator("state_dir", mode="before")
    @classmethod
    def _state_dir_named(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip():
            raise ValueError("must name a directory (default .sparkgate)")
        return v

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, v: Path) -> Path:
        return absolute_path(v)

    @field_validator("environments")
    @classmethod
    def _some_env(cls, v: dict[str, EnvironmentSettings]) -> dict[str, EnvironmentSettings]:
        if not v:
            raise ValueError("at least one environment is needed")
        return v

    @model_validator(mode="after")
    def _auth_complete(self) -> Settings:
        a = self.auth
        if a.mode == "static" and not a.tokens_file:
            raise ValueError("auth.mode static needs auth.tokens_file")
        if a.mode == "oidc" and not (a.oidc.issuer and a.oidc.audience):
            raise ValueError("auth.mode oidc needs auth.oidc.issuer and auth.oidc.audience")
        if bool(self.tls.cert_file) != bool(self.tls.key_file):
            raise ValueError("tls.cert_file and tls.key_file go together")
        if a.service_identities and not self.tls.client_ca_file:
            raise ValueError("auth.service_identities need tls.client_ca_file (they are mTLS identities)")
        return self

    @model_validator(mode="after")
    def _profiles_exist(self) -> Settings:
        known = set(self.pool.all_profiles())
        for env_name, env in self.environments.items():
            for where, name in env.profiles():
                if name not in known:
                    raise ValueError(
                        f"environments.{env_name}.{where}: no pool profile {name!r} (known: {', '.join(sorted(known))})"
                    )
        return self

    @model_validator(mode="after")
    def _one_catalog_per_profile(self) -> Settings:
        # A warm driver is started for a profile before anyone asks for it, with one catalog in
        # its JVM; it may then serve any environment using that profile.
        seen: dict[str, tuple[str, CatalogSettings]] = {}
        for env_name, env in self.environments.items():
            for where, profile in env.profiles():
                here = f"environments.{env_name}.{where}"
                first, catalog = seen.setdefault(profile, (here, env.catalog))
                if catalog.mount_key() != env.catalog.mount_key():
                    raise ValueError(
                        f"{first} and {here} both use pool profile {profile!r}, but their environments name "
                        f"different catalogs ({catalog.describe()} vs {env.catalog.describe()}); a driver mounts "
                        "its catalog when it starts, so give one of these environments a profile of its own "
                        "(pool.profiles)"
                    )
        return self

    def profile_catalogs(self) -> dict[str, CatalogSettings]:
        """The catalog each pool profile's drivers mount (a profile no environment uses: the default)."""
        found = {profile: env.catalog for env in self.environments.values() for _, profile in env.profiles()}
        return {name: found.get(name, CatalogSettings()) for name in self.pool.all_profiles()}

    def profile_for(self, team: str, environment: str) -> str:
        """The driver profile a team's sessions in an environment use."""
        env = self.environments[environment]
        return env.team_profiles.get(team, env.profile)

    def state_path(self, name: str) -> Path:
        """A path setting that is relative to ``state_dir`` (absolute ones stay as they are)."""
        return absolute_path(self.state_dir / Path(name).expanduser())


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def env_overrides(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """``SPARKGATE__A__B=v`` → ``{"a": {"b": v}}`` with ``v`` parsed as a YAML scalar."""
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        # Setting names are matched in lower case; dotted keys (Spark conf) keep theirs, since
        # Spark's are case-sensitive (spark.dynamicAllocation.enabled).
        path = [p if "." in p else p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_path(tree, path, value)
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_settings(
    path: str | Path | None = None,
    environ: dict[str, str] | os._Environ[str] | None = None,
    **overrides: Any,
) -> Settings:
    """Load and validate settings; raises :class:`ConfigError` naming the bad key."""
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get("SPARKGATE_CONFIG") or ("sparkgate.yaml" if Path("sparkgate.yaml").is_file() else None)
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path).expanduser()
        try:
            loaded = yaml.safe_load(p.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {p} does not exist") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must be a mapping at the top level")
        data = loaded or {}
    data = _merge(data, env_overrides(environ))
    data = _merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from exc
