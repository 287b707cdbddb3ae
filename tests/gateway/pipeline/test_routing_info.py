"""Stage 3: a new session's team and environment."""

from __future__ import annotations

import pytest

from sparkgate.connect import wire
from sparkgate.errors import BadRequest
from sparkgate.gateway.pipeline.call import Call
from sparkgate.gateway.pipeline.intents import Answer
from sparkgate.gateway.routing import RoutingInfo
from tests.gateway.conftest import Rig
from tests.gateway.pipeline.conftest import TEAM, alice, call

JVM = "_SPARK_CONNECT_SCALA spark/4.1.4 scala/2.13.17 jvm/17.0.15 os/linux"
PYTHON = "_SPARK_CONNECT_PYTHON spark/4.1.4 os/linux python/3.11.7"
TEAM_KEY, ENV_KEY = "spark.connect.grpc.header.x-doordash-team", "spark.connect.grpc.header.x-doordash-environment"


def config_set(c: Call, pairs: list[tuple[str, str | None]], client: str = JVM) -> Call:
    request = wire.encode_config_set_request(c.ids.session_id, c.ids.user_id, pairs, client_type=client)
    return Call("Config", (), c.ids, request)


def test_headers_name_the_team(gw: Rig) -> None:
    c = call(metadata=(*TEAM, ("x-doordash-user", "ann")))
    assert gw.pipeline.routing.read(c, alice(c)) == RoutingInfo("fe", "prod", "ann")


def test_a_jvm_clients_sets_are_held_until_routable(gw: Rig) -> None:
    c = call("Config")
    first = config_set(c, [(TEAM_KEY, "fe"), ("spark.app.name", "x")])
    assert gw.pipeline.routing.read(first, alice(c)) == Answer("Config", c.ids.session_id)
    info = gw.pipeline.routing.read(config_set(c, [(ENV_KEY, "prod")]), alice(c))
    assert info == RoutingInfo("fe", "prod")
    assert gw.book.take_held(("alice", c.ids.session_id)) == ((TEAM_KEY, "fe"), ("spark.app.name", "x"))


def test_a_python_clients_incomplete_set_is_refused(gw: Rig) -> None:
    c = call("Config")
    with pytest.raises(BadRequest, match="missing environment"):
        gw.pipeline.routing.read(config_set(c, [(TEAM_KEY, "fe")], client=PYTHON), alice(c))


def test_calls_that_need_no_driver_are_answered_without_routing(gw: Rig) -> None:
    c = call("Interrupt")
    assert isinstance(gw.pipeline.routing.read(c, alice(c)), Answer)
    with pytest.raises(BadRequest, match="missing team"):
        gw.pipeline.routing.read(call(), alice(c))


def test_unknown_environments_and_bad_team_names_are_refused(gw: Rig) -> None:
    c = call(metadata=(("x-doordash-team", "fe"), ("x-doordash-environment", "mars")))
    with pytest.raises(BadRequest, match="unknown environment 'mars'"):
        gw.pipeline.routing.read(c, alice(c))
    c = call(metadata=(("x-doordash-team", "Front End"), ("x-doordash-environment", "prod")))
    with pytest.raises(BadRequest, match="not a valid name"):
        gw.pipeline.routing.read(c, alice(c))
