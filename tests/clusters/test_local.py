"""Local provider pieces that need no JVM (starting real drivers is covered in tests/e2e)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparkgate.clusters import catalog
from sparkgate.clusters.base import Driver, DriverSpec, DriverState
from sparkgate.clusters.local import CONNECT_SERVER_CLASS, TOKEN_CONF, LocalProvider, scrub_token
from sparkgate.config import CatalogSettings, LocalProviderSettings, load_settings
from sparkgate.errors import ConfigError, DriverStartError
from sparkgate.spark import plugin


def test_a_profile_for_another_spark_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "RELEASE").write_text("Spark 4.1.4 built for Hadoop 3.4.1\n")
    provider = LocalProvider(LocalProviderSettings(spark_home=str(tmp_path)), tmp_path)
    provider.check_spec(DriverSpec(profile="ok", spark_version="4.1"))
    with pytest.raises(
        DriverStartError, match=r"profile 'old' needs Spark 3.5, but the local provider runs Spark 4.1.4"
    ):
        provider.check_spec(DriverSpec(profile="old", spark_version="3.5"))


def test_installed_pyspark_version_is_read() -> None:
    pyspark = pytest.importorskip("pyspark")
    provider = LocalProvider(LocalProviderSettings(), Path("/nonexistent"))
    assert provider.spark_version == pyspark.__version__


def _conf(cmd: list[str]) -> dict[str, str]:
    """Every Spark conf the command gives the driver: its properties file, then its ``--conf``s."""
    conf = _properties(Path(cmd[cmd.index("--properties-file") + 1]))
    conf.update(cmd[i + 1].split("=", 1) for i, word in enumerate(cmd) if word == "--conf")
    return conf


def _properties(path: Path) -> dict[str, str]:
    """A minimal java.util.Properties reader (for what write_properties escapes)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        key, i = [], 0
        while line[i] != "=":
            if line[i] == "\\":
                i += 1
            key.append(line[i])
            i += 1
        value = line[i + 1 :]
        unescaped = value.replace("\\\\", "\0").replace("\\n", "\n").replace("\\t", "\t")
        out["".join(key)] = unescaped.replace("\\ ", " ").replace("\0", "\\")
    return out


@pytest.fixture
def no_javac(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """``plugin_jar`` without a compiler: a made-up jar (the real build is covered in tests/e2e)."""
    built: list[Path] = []

    def fake_jar(spark_home: Path, cache_dir: Path | None = None) -> Path:
        built.append((cache_dir or plugin.default_plugin_dir()) / "sparkgate-driver-plugin-test.jar")
        return built[-1]

    monkeypatch.setattr(plugin, "plugin_jar", fake_jar)
    return built


async def test_a_driver_mounts_its_profiles_catalog(tmp_path: Path, no_javac: list[Path]) -> None:
    settings = load_settings(
        None,
        {},
        state_dir=str(tmp_path),
        local={"spark_conf": {"spark.sql.extensions": "com.example.Ext"}},
        pool={"profiles": {"lake": {"spark_conf": {"spark.jars": "/opt/extra.jar"}}}},
        environments={"local": {}, "lake": {"profile": "lake", "catalog": {"name": "lakehouse"}}},
    )
    provider = LocalProvider(settings.local, settings.state_dir)
    catalogs = settings.profile_catalogs()
    spec = DriverSpec(profile="lake", spark_conf={"spark.jars": "/opt/extra.jar"}, catalog=catalogs["lake"])
    conf = _conf(provider._command("local-1", 1, 2, spec, await provider._mount(spec.catalog), workdir=tmp_path))
    root = tmp_path / "catalog" / "lakehouse"
    assert conf["spark.sql.catalog.lakehouse"] == "io.sparkgate.catalog.PathCatalog"
    assert conf["spark.sql.catalog.lakehouse.root"] == str(root)
    assert "spark.sql.catalog.pedregal" not in conf
    # List-valued conf adds up: the plugin jar and the eager loading stay next to the operator's.
    assert conf["spark.jars"] == f"{plugin.default_plugin_dir()}/sparkgate-driver-plugin-test.jar,/opt/extra.jar"
    assert conf["spark.sql.extensions"] == f"{plugin.EXTENSIONS},com.example.Ext"
    assert (root / "raw" / "events.schema.json").is_file()  # the sample tables, under its own name
    # Prepared once per catalog, however many drivers start with it.
    await provider._mount(spec.catalog)
    await provider._mount(catalogs["default"])
    assert len(no_javac) == 2 and (tmp_path / "catalog" / "pedregal" / "raw").is_dir()


async def test_configured_conf_is_not_on_the_command_line(tmp_path: Path) -> None:
    """Catalog tokens and storage keys go to an owner-only properties file, not to what `ps` shows."""
    settings = load_settings(
        None,
        {},
        state_dir=str(tmp_path),
        local={"spark_conf": {"spark.hadoop.fs.s3a.secret.key": "s3-secret", "spark.ui.showConsoleProgress": "true"}},
        environments={
            "prod": {
                "catalog": {
                    "class": "io.unitycatalog.spark.UCSingleCatalog",
                    "options": {"uri": "https://uc", "token": "uc-secret"},
                }
            }
        },
    )
    provider = LocalProvider(settings.local, settings.state_dir)
    spec = DriverSpec(
        profile="default", spark_conf={"spark.note": "a = b: c\\d\nx"}, catalog=settings.profile_catalogs()["default"]
    )
    cmd = provider._command("local-1", 1, 2, spec, await provider._mount(spec.catalog), workdir=tmp_path)
    assert not any("secret" in word for word in cmd)
    conf = _conf(cmd)
    assert conf["spark.sql.catalog.pedregal.token"] == "uc-secret"
    assert conf["spark.hadoop.fs.s3a.secret.key"] == "s3-secret"
    assert conf["spark.note"] == "a = b: c\\d\nx"  # escaped as java.util.Properties expects
    assert conf["spark.sparkgate.driver.id"] == "local-1"  # sparkgate's own tags stay visible (adoption)
    assert conf["spark.ui.showConsoleProgress"] == "true"  # an override of sparkgate's own stays a --conf
    properties = tmp_path / "spark.properties"
    assert properties.stat().st_mode & 0o777 == 0o600
    assert "--load-spark-defaults" in cmd  # the distribution's spark-defaults.conf is still read


async def test_a_relative_state_dir_gives_the_driver_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_javac: list[Path]
) -> None:
    """The driver runs in its own directory: `sparkgate up`'s default state dir (.sparkgate) is relative."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, {}, state_dir=".sparkgate")
    provider = LocalProvider(settings.local, Path(".sparkgate"))
    spec = DriverSpec(profile="default", catalog=settings.profile_catalogs()["default"])
    workdir = provider._dir / "local-1"
    workdir.mkdir(parents=True)
    cmd = provider._command("local-1", 1, 2, spec, await provider._mount(spec.catalog), workdir=workdir)
    assert cmd[cmd.index("--properties-file") + 1] == str(
        tmp_path / ".sparkgate" / "drivers" / "local-1" / "spark.properties"
    )
    conf = _conf(cmd)
    assert conf["spark.sql.catalog.pedregal.root"] == str(tmp_path / ".sparkgate" / "catalog" / "pedregal")
    assert conf["spark.jars"] == str(plugin.default_plugin_dir() / "sparkgate-driver-plugin-test.jar")


async def test_without_a_jdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_jdk(spark_home: Path, cache_dir: Path | None = None) -> Path:
        raise ConfigError("javac and jar not found")

    monkeypatch.setattr(plugin, "plugin_jar", no_jdk)
    unity = CatalogSettings.model_validate({"class": "io.unitycatalog.spark.UCSingleCatalog", "options": {"uri": "u"}})
    # No sandbox (sandboxed jobs are refused), no path catalog; another catalog is mounted, only
    # not loaded ahead of use.
    assert catalog.driver_conf(CatalogSettings(), tmp_path, tmp_path) == {}
    assert catalog.driver_conf(unity, tmp_path, tmp_path) == {
        "spark.sql.catalog.pedregal": "io.unitycatalog.spark.UCSingleCatalog",
        "spark.sql.catalog.pedregal.uri": "u",
    }
    assert catalog.driver_conf(CatalogSettings(enabled=False), tmp_path, tmp_path) == {}


async def test_the_sandbox_is_loaded_without_a_catalog(tmp_path: Path, no_javac: list[Path]) -> None:
    conf = catalog.driver_conf(CatalogSettings(enabled=False), tmp_path, tmp_path)
    assert conf == {"spark.jars": str(no_javac[0]), "spark.sql.extensions": plugin.EXTENSIONS}


async def test_a_drivers_fingerprint_covers_the_local_settings_and_is_recorded(tmp_path: Path) -> None:
    """A restarted gateway compares it to what it would start now (see ClusterManager._adopt)."""

    def provider(**local: object) -> LocalProvider:
        settings = load_settings(None, {}, state_dir=str(tmp_path), local=local)
        return LocalProvider(settings.local, settings.state_dir)

    spec = DriverSpec(spark_conf={"spark.sql.shuffle.partitions": "8"})
    base = provider(driver_memory="2g")
    assert base.fingerprint(spec) == provider(driver_memory="2g").fingerprint(spec)
    assert base.fingerprint(spec) != provider(driver_memory="4g").fingerprint(spec)
    assert base.fingerprint(spec) != provider(driver_memory="2g", spark_conf={"spark.x": "1"}).fingerprint(spec)
    assert base.fingerprint(spec) != spec.fingerprint()
    (tmp_path / "drivers" / "local-1").mkdir(parents=True)
    base._write_record(Driver(id="local-1", address="127.0.0.1:1", provider="local", fingerprint="f1"))
    assert json.loads((tmp_path / "drivers" / "local-1" / "driver.json").read_text())["fingerprint"] == "f1"


async def test_each_driver_gets_its_own_token_in_its_properties_only_until_it_is_up(tmp_path: Path) -> None:
    provider = LocalProvider(LocalProviderSettings(), tmp_path)
    tokens = [provider.tokens.new(f"local-{i}") for i in range(2)]
    assert tokens[0] != tokens[1] and all(len(t) >= 40 for t in tokens)
    kept = tmp_path / "driver-tokens"
    assert kept.stat().st_mode & 0o777 == 0o700 and (kept / "local-0").stat().st_mode & 0o777 == 0o600
    spec = DriverSpec(profile="default")
    cmd = provider._command("local-0", 1, 2, spec, {}, workdir=tmp_path, token=tokens[0])
    assert not any(tokens[0] in word for word in cmd)  # not on the command line
    assert _conf(cmd)[TOKEN_CONF] == tokens[0]
    scrub_token(tmp_path / "spark.properties")  # once the driver is up
    assert TOKEN_CONF not in _conf(cmd) and _conf(cmd)["spark.sparkgate.driver.id"] == "local-0"
    # A restarted gateway finds each driver's own token; a stopped driver's is gone.
    assert LocalProvider(LocalProviderSettings(), tmp_path).tokens.get("local-1") == tokens[1]
    provider.tokens.forget("local-1")
    assert provider.tokens.get("local-1") is None


def test_drivers_started_with_the_shared_token_of_earlier_versions_are_still_reached(tmp_path: Path) -> None:
    (tmp_path / "driver-token").write_text("shared\n")
    assert LocalProvider(LocalProviderSettings(), tmp_path).tokens.get("local-old") == "shared"


async def test_of_gateways_sharing_a_state_dir_racing_for_a_warm_driver_exactly_one_claims_it(
    tmp_path: Path,
) -> None:
    # A process that passes for a driver (the JVM's main class and the driver's id on its command line).
    proc = subprocess.Popen(  # noqa: ASYNC220 - starts at once; a stand-in driver process
        [sys.executable, "-c", "import time; time.sleep(60)", CONNECT_SERVER_CLASS, "local-7"],
    )
    try:
        gateways = [LocalProvider(LocalProviderSettings(), tmp_path) for _ in range(8)]
        warm = Driver(id="local-7", address="127.0.0.1:1", provider="local", pid=proc.pid, state=DriverState.READY)
        (tmp_path / "drivers" / "local-7").mkdir(parents=True)
        gateways[0]._write_record(warm)
        teams = [f"sjns-team{i}-prod" for i in range(len(gateways))]
        holders = await asyncio.gather(*(g.claim(warm, team) for g, team in zip(gateways, teams, strict=True)))
        assert len(set(holders)) == 1 and holders[0] in teams  # every claim names the one that won
        (listed,) = await gateways[-1].list_drivers()
        assert listed.namespace == holders[0]  # what another gateway (or a restarted one) adopts
        assert not list((tmp_path / "drivers" / "local-7").glob(".claim.*"))  # no temporary file left
    finally:
        proc.kill()
        proc.wait()


def test_only_a_warm_pools_driver_is_warmed_up_by_a_client(tmp_path: Path) -> None:
    """A team waiting for its driver gets it as soon as it answers: the client warm-up (seconds)
    is for drivers that wait in the pool."""
    from sparkgate.clusters.base import Driver

    provider = LocalProvider(LocalProviderSettings(), tmp_path)
    team = Driver(id="local-1", address="127.0.0.1:1", provider="local", namespace="sjns-fe-prod")
    pool = Driver(id="local-2", address="127.0.0.1:1", provider="local")
    assert not provider._warms_up(team) and provider._warms_up(pool)
    assert not LocalProvider(LocalProviderSettings(client_warmup=False), tmp_path)._warms_up(pool)


async def test_a_class_archive_keeps_the_java_options_of_spark_defaults(
    tmp_path: Path, no_javac: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive's JVM options go before the operator's: from configuration, else from the
    distribution's spark-defaults.conf (which a --conf of the same key would otherwise hide)."""
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    home = tmp_path / "spark"
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "spark-defaults.conf").write_text("spark.driver.defaultJavaOptions -Dfrom=defaults\n")
    archive = ["-XX:SharedArchiveFile=/a.jsa"]

    def options(**local: object) -> str:
        settings = load_settings(None, {}, state_dir=str(tmp_path), local={"spark_home": str(home), **local})
        provider = LocalProvider(settings.local, settings.state_dir)
        spec = DriverSpec(profile="default", catalog=settings.profile_catalogs()["default"])
        cmd = provider._command("local-1", 1, 2, spec, {}, workdir=tmp_path, java_options=archive)
        return _conf(cmd)["spark.driver.defaultJavaOptions"]

    assert options() == "-XX:SharedArchiveFile=/a.jsa -Dfrom=defaults"
    configured = {"spark_conf": {"spark.driver.defaultJavaOptions": "-Dfrom=config"}}
    assert options(**configured) == "-XX:SharedArchiveFile=/a.jsa -Dfrom=config"
