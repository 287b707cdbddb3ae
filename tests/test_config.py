from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sparkgate.config import (
    PATH_CATALOG_CLASS,
    CatalogSettings,
    FileSetting,
    Settings,
    env_overrides,
    load_settings,
)
from sparkgate.errors import ConfigError


def test_defaults_serve_local_test_staging_and_prod() -> None:
    s = load_settings(None, {})
    assert set(s.environments) == {"local", "test", "staging", "prod"}
    assert s.gateway.port == 15002 and s.pool.size == 1
    assert s.gateway.headers.team == "x-doordash-team"


def test_env_overrides_are_typed_and_nested() -> None:
    tree = env_overrides({"SPARKGATE__GATEWAY__PORT": "15003", "SPARKGATE__POOL__SIZE": "0", "OTHER": "x"})
    assert tree == {"gateway": {"port": 15003}, "pool": {"size": 0}}


def test_file_then_env(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("gateway: {port: 1000}\nenvironments:\n  dev: {}\n")
    s = load_settings(f, {"SPARKGATE__GATEWAY__PORT": "2000"})
    assert s.gateway.port == 2000 and list(s.environments) == ["dev"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("gateway: {prot: 1}", r"gateway\.prot"),
        ("gateway: [1, 2]", "gateway"),
        ("- a", "mapping"),
        ("a: [", "not valid YAML"),
        ("gateway: {headers: {team: X-Team}}", "lower-case"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(f, {})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings("/nonexistent/sparkgate.yaml", {})


def test_pool_profiles_per_environment_and_team() -> None:
    s = load_settings(
        None,
        {},
        pool={"size": 2, "profiles": {"big": {"size": 1, "spark_version": "4.1", "spark_conf": {"a": "1"}}}},
        environments={"prod": {"profile": "big", "team_profiles": {"fe": "default"}}, "dev": {}},
    )
    assert s.profile_for("ml", "prod") == "big" and s.profile_for("fe", "prod") == "default"
    assert s.profile_for("ml", "dev") == "default"
    profiles = s.pool.all_profiles()
    assert profiles["default"].size == 2 and profiles["big"].size == 1 and profiles["big"].spark_conf == {"a": "1"}


def test_unknown_profile_is_named() -> None:
    with pytest.raises(ConfigError, match=r"environments.prod.team_profiles.fe: no pool profile 'huge'"):
        load_settings(None, {}, environments={"prod": {"team_profiles": {"fe": "huge"}}})


def test_default_profile_size_is_pool_size() -> None:
    with pytest.raises(ConfigError, match=r"pool\.size"):
        load_settings(None, {}, pool={"profiles": {"default": {"size": 3}}})
    s = load_settings(None, {}, pool={"size": 3, "profiles": {"default": {"spark_conf": {"k": "v"}}}})
    assert s.pool.profile("default").size == 3 and s.pool.profile("default").spark_conf == {"k": "v"}


def test_a_config_naming_the_removed_engine_setting_says_so() -> None:
    for engine in ("h2", "grpc"):
        with pytest.raises(ConfigError, match="engine was removed: the gateway always relays HTTP/2 frames"):
            load_settings(None, {}, gateway={"engine": engine})


def test_auth_settings_are_checked_together() -> None:
    with pytest.raises(ConfigError, match="tokens_file"):
        load_settings(None, {}, auth={"mode": "static"})
    with pytest.raises(ConfigError, match="issuer"):
        load_settings(None, {}, auth={"mode": "oidc"})
    with pytest.raises(ConfigError, match="go together"):
        load_settings(None, {}, tls={"cert_file": "a.pem"})
    with pytest.raises(ConfigError, match="client_ca_file"):
        load_settings(None, {}, auth={"service_identities": {"runner": []}})


# -- catalogs per environment ---------------------------------------------------------------------

UNITY_YAML = """
pool:
  profiles: {prod: {spark_conf: {spark.jars.packages: "io.unitycatalog:unitycatalog-spark_2.13:VERSION"}}}
environments:
  local: {}
  prod:
    profile: prod
    catalog:
      class: io.unitycatalog.spark.UCSingleCatalog
      options: {uri: "https://unity-catalog.example.com", token: secret}
"""


def test_every_environment_mounts_the_local_pedregal_catalog_by_default() -> None:
    s = load_settings(None, {})
    for env in s.environments.values():
        assert env.catalog.name == "pedregal" and env.catalog.is_path_catalog and env.catalog.root == "catalog/pedregal"
    assert s.profile_catalogs() == {"default": CatalogSettings()}
    assert CatalogSettings().spark_conf(Path("/s/catalog/pedregal")) == {
        "spark.sql.catalog.pedregal": PATH_CATALOG_CLASS,
        "spark.sql.catalog.pedregal.root": "/s/catalog/pedregal",
    }
    assert CatalogSettings(enabled=False).spark_conf() == {}
    # Another name gets a directory of its own unless it names one.
    assert (
        load_settings(None, {}, environments={"x": {"catalog": {"name": "lakehouse"}}}).environments["x"].catalog.root
        == "catalog/lakehouse"
    )


def test_unity_catalog_for_production(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(UNITY_YAML)
    s = load_settings(f, {"SPARKGATE__ENVIRONMENTS__PROD__CATALOG__OPTIONS__TOKEN": "from-env"})
    prod = s.environments["prod"].catalog
    assert prod.spark_conf() == {
        "spark.sql.catalog.pedregal": "io.unitycatalog.spark.UCSingleCatalog",
        "spark.sql.catalog.pedregal.uri": "https://unity-catalog.example.com",
        "spark.sql.catalog.pedregal.token": "from-env",
    }
    assert prod.root is None and not prod.is_path_catalog
    assert s.profile_catalogs() == {"default": s.environments["local"].catalog, "prod": prod}
    # What `sparkgate config` prints loads back as the same settings.
    dumped = s.model_dump(mode="json", by_alias=True)
    assert dumped["environments"]["prod"]["catalog"]["class"] == "io.unitycatalog.spark.UCSingleCatalog"
    assert Settings.model_validate(dumped) == s


def test_environments_sharing_a_profile_must_name_the_same_catalog() -> None:
    lake = {"catalog": {"name": "lakehouse"}}
    with pytest.raises(ConfigError) as err:
        load_settings(None, {}, environments={"local": {}, "lake": lake})
    msg = str(err.value)
    assert "environments.local.profile and environments.lake.profile both use pool profile 'default'" in msg
    assert "pedregal = io.sparkgate.catalog.PathCatalog at catalog/pedregal vs lakehouse" in msg
    assert "a profile of its own (pool.profiles)" in msg
    # A team's profile counts too.
    with pytest.raises(ConfigError, match=r"environments\.local\.team_profiles\.ml and environments\.lake\.profile"):
        load_settings(
            None,
            {},
            pool={"profiles": {"lake": {}}},
            environments={"local": {"team_profiles": {"ml": "lake"}}, "lake": {"profile": "lake", **lake}},
        )
    s = load_settings(
        None, {}, pool={"profiles": {"lake": {}}}, environments={"local": {}, "lake": {"profile": "lake", **lake}}
    )
    assert {p: c.name for p, c in s.profile_catalogs().items()} == {"default": "pedregal", "lake": "lakehouse"}
    # Catalogs turned off are alike whatever else they say.
    off = load_settings(
        None,
        {},
        environments={"a": {"catalog": {"enabled": False}}, "b": {"catalog": {"enabled": False, "name": "x"}}},
    )
    assert not off.profile_catalogs()["default"].enabled


@pytest.mark.parametrize(
    ("catalog", "match"),
    [
        ({"name": "my-catalog"}, r"environments\.prod\.catalog: .*'my-catalog' is not a catalog name"),
        ({"name": "spark_catalog"}, r"environments\.prod\.catalog: .*session catalog"),
        ({"class": "not a class"}, r"environments\.prod\.catalog: .*'not a class' is not a Java class name"),
        ({"class": "io.unitycatalog.spark.UCSingleCatalog", "root": "x"}, r"root is for the built-in path catalog"),
        ({"options": {"root": "/data"}}, r"catalog\.root, not options\.root"),
        ({"options": {"": "x"}}, r"options keys must be non-empty"),
        ({"uri": "https://uc"}, r"environments\.prod\.catalog\.uri: Extra inputs"),
    ],
)
def test_bad_catalogs_are_named(catalog: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_settings(None, {}, environments={"prod": {"catalog": catalog}})


def test_moved_catalog_settings_say_where_to() -> None:
    with pytest.raises(ConfigError, match=r"local: .*catalog moved to environments\.<env>\.catalog"):
        load_settings(None, {}, local={"catalog": {"enabled": False}})
    with pytest.raises(ConfigError, match=r"runner\.kubernetes: .*catalog_uris moved to environments\.<env>\.catalog"):
        load_settings(None, {}, runner={"kubernetes": {"catalog_uris": {"prod": "https://uc"}}})


def test_spark_conf_values_are_strings_and_dotted_env_keys_keep_their_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE__LOCAL__SPARK_CONF__spark.dynamicAllocation.enabled", "true")
    monkeypatch.setenv("SPARKGATE__LOCAL__SPARK_CONF__spark.cores.max", "1")
    s = load_settings(None, dict(os.environ), pool={"profiles": {"big": {"spark_conf": {"spark.executor.cores": 4}}}})
    assert s.local.spark_conf == {"spark.dynamicAllocation.enabled": "true", "spark.cores.max": "1"}
    assert s.pool.profiles["big"].spark_conf == {"spark.executor.cores": "4"}


def _file_settings(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Dotted names of every setting that names a file or directory (typed ``FileSetting``/``Path``)."""
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _file_settings(ann, f"{prefix}{name}.")
        elif ann is Path or any(m in FileSetting.__metadata__ for m in field.metadata):
            yield prefix + name


def test_paths_in_the_settings_are_absolute_from_where_they_were_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = sorted(_file_settings(Settings))
    assert named == [
        "auth.oidc.ca_file",
        "auth.tokens_file",
        "kubernetes.kubeconfig",
        "kubernetes.token_key_file",
        "local.class_archive_dir",
        "local.spark_home",
        "runner.gateway_ca_file",
        "state_dir",
        "tls.cert_file",
        "tls.client_ca_file",
        "tls.key_file",
    ]
    # Every other setting that looks like a path is relative to state_dir, by state_path().
    relative_to_state = ["gateway.affinity.path", "audit.path", "runner.catalog_dir"]
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    overrides: dict[str, Any] = {}
    for dotted in named:
        node = overrides
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = f"rel/{leaf}"
    s = load_settings(None, {}, **overrides)
    monkeypatch.chdir(tmp_path)  # a component that runs elsewhere (a driver, a job program)
    for dotted in named:
        value: Any = s
        for part in dotted.split("."):
            value = getattr(value, part)
        assert Path(value) == here / "rel" / dotted.rsplit(".", 1)[-1], dotted
    assert s.state_path("drivers") == here / "rel" / "state_dir" / "drivers"
    for dotted in relative_to_state:
        value = s
        for part in dotted.split("."):
            value = getattr(value, part)
        assert s.state_path(value).is_relative_to(here / "rel" / "state_dir"), dotted
    assert s.state_path("/elsewhere/audit.log") == Path("/elsewhere/audit.log")


def test_the_default_state_dir_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, {}).state_dir == tmp_path / ".sparkgate"
    assert Settings().state_dir == tmp_path / ".sparkgate"
    assert load_settings(None, {"SPARKGATE__STATE_DIR": "~/x/../state"}).state_dir == Path.home() / "state"


def test_an_empty_state_dir_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"state_dir: .*must name a directory"):
        load_settings(None, {"SPARKGATE__STATE_DIR": ""})
