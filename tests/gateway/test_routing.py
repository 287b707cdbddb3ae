from __future__ import annotations

import pytest

from sparkgate.config import RoutingHeaders
from sparkgate.errors import BadRequest
from sparkgate.gateway.routing import PartialRouting, from_config_pairs, from_metadata, validate

H = RoutingHeaders()
ENVS = {"local": 1, "prod": 1}


def test_headers_from_metadata() -> None:
    md = [("x-doordash-team", "fe"), ("x-doordash-environment", b"prod"), ("user-agent", "x")]
    assert from_metadata(md, H) == PartialRouting("fe", "prod", "")


def test_config_pairs_case_insensitive_header_name() -> None:
    pairs = [
        ("spark.connect.grpc.header.X-DoorDash-Team", "fe"),
        ("spark.connect.grpc.header.x-doordash-user", "svc"),
        ("spark.app.name", "x"),
    ]
    assert from_config_pairs(pairs, H) == PartialRouting("fe", "", "svc")


def test_headers_win_over_config_pairs() -> None:
    p = PartialRouting("from-header", "", "")
    p.fill(PartialRouting("from-config", "prod", "u"))
    assert p == PartialRouting("from-header", "prod", "u")


def test_missing_names_what_and_how() -> None:
    with pytest.raises(BadRequest) as e:
        validate(PartialRouting("fe", "", ""), H, ENVS)
    msg = e.value.message
    assert "environment" in msg and "x-doordash-environment" in msg and "sc://" in msg
    assert "missing team" not in msg


def test_unknown_environment_lists_known() -> None:
    with pytest.raises(BadRequest, match="local, prod"):
        validate(PartialRouting("fe", "qa", ""), H, ENVS)


@pytest.mark.parametrize("team", ["Fe", "a b", "-x", "x" * 49, "ä"])
def test_bad_team_names(team: str) -> None:
    with pytest.raises(BadRequest, match="not a valid name"):
        validate(PartialRouting(team, "prod", ""), H, ENVS)


def test_custom_header_names() -> None:
    h = RoutingHeaders(team="x-team", environment="x-env", user="x-user")
    assert from_metadata([("x-team", "a"), ("x-env", "local")], h).complete
