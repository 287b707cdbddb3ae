from __future__ import annotations

from pathlib import Path

import pytest

from sparkgate.config import env_overrides, load_settings
from sparkgate.errors import ConfigError


def test_defaults_serve_the_seeds_environments() -> None:
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


def test_auth_settings_are_checked_together() -> None:
    with pytest.raises(ConfigError, match="tokens_file"):
        load_settings(None, {}, auth={"mode": "static"})
    with pytest.raises(ConfigError, match="issuer"):
        load_settings(None, {}, auth={"mode": "oidc"})
    with pytest.raises(ConfigError, match="go together"):
        load_settings(None, {}, tls={"cert_file": "a.pem"})
    with pytest.raises(ConfigError, match=r"needs gateway\.engine h2"):
        load_settings(
            None, {}, tls={"cert_file": "a", "key_file": "b", "client_ca_file": "c"}, gateway={"engine": "grpc"}
        )
    with pytest.raises(ConfigError, match="client_ca_file"):
        load_settings(None, {}, auth={"service_identities": {"runner": []}})
