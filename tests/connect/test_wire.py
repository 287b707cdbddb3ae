"""The wire scanner against messages serialized by the real Spark Connect protos."""

from __future__ import annotations

import uuid

import pytest

from sparkgate.connect import wire
from sparkgate.errors import BadRequest

pb = pytest.importorskip("pyspark.sql.connect.proto.base_pb2")

SID = str(uuid.uuid4())


def _ctx(user: str = "alice") -> object:
    return pb.UserContext(user_id=user, user_name="ignored")


def test_scan_execute_plan_reads_session_user_and_operation() -> None:
    req = pb.ExecutePlanRequest(session_id=SID, user_context=_ctx(), operation_id="op-1", client_type="x")
    req.plan.root.sql.query = "SELECT " + "1," * 1000 + "1"
    ids = wire.scan_request("ExecutePlan", req.SerializeToString())
    assert ids == wire.RequestIds(SID, "alice", "op-1", "")


@pytest.mark.parametrize(
    ("method", "msg"),
    [
        ("AnalyzePlan", pb.AnalyzePlanRequest),
        ("Config", pb.ConfigRequest),
        ("AddArtifacts", pb.AddArtifactsRequest),
        ("ArtifactStatus", pb.ArtifactStatusesRequest),
        ("Interrupt", pb.InterruptRequest),
        ("ReleaseSession", pb.ReleaseSessionRequest),
        ("FetchErrorDetails", pb.FetchErrorDetailsRequest),
    ],
)
def test_every_request_has_session_and_user_at_fields_1_and_2(method: str, msg: type) -> None:
    data = msg(session_id=SID, user_context=_ctx("bob")).SerializeToString()
    ids = wire.scan_request(method, data)
    assert (ids.session_id, ids.user_id) == (SID, "bob")


def test_reattach_and_release_operation_ids() -> None:
    r = pb.ReattachExecuteRequest(session_id=SID, operation_id="op-9", last_response_id="r1")
    assert wire.scan_request("ReattachExecute", r.SerializeToString()).operation_id == "op-9"
    r2 = pb.ReleaseExecuteRequest(session_id=SID, operation_id="op-8")
    assert wire.scan_request("ReleaseExecute", r2.SerializeToString()).operation_id == "op-8"


def test_clone_session_new_id() -> None:
    new = str(uuid.uuid4())
    r = pb.CloneSessionRequest(session_id=SID, new_session_id=new)
    assert wire.scan_request("CloneSession", r.SerializeToString()).new_session_id == new


def test_no_user_context_means_empty_user() -> None:
    ids = wire.scan_request("Config", pb.ConfigRequest(session_id=SID).SerializeToString())
    assert ids.user_id == ""


def test_config_set_pairs() -> None:
    req = pb.ConfigRequest(session_id=SID)
    req.operation.set.pairs.add(key="spark.connect.grpc.header.x-doordash-team", value="fe")
    req.operation.set.pairs.add(key="spark.app.name", value="app")
    req.operation.set.silent = True
    assert wire.config_set_pairs(req.SerializeToString()) == [
        ("spark.connect.grpc.header.x-doordash-team", "fe"),
        ("spark.app.name", "app"),
    ]


def test_config_get_is_not_a_set() -> None:
    req = pb.ConfigRequest(session_id=SID)
    req.operation.get.keys.append("spark.sql.shuffle.partitions")
    assert wire.config_set_pairs(req.SerializeToString()) is None


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff", b"\x0a\x10abc", b"\x08", b"\x00\x01", b"\x0b"])
def test_garbage_is_a_bad_request(garbage: bytes) -> None:
    with pytest.raises(BadRequest):
        wire.scan_request("ExecutePlan", garbage)


def test_invalid_utf8_session_id() -> None:
    with pytest.raises(BadRequest, match="UTF-8"):
        wire.scan_request("Config", b"\x0a\x02\xc3\x28")


def test_encoded_config_set_parses_with_real_protos() -> None:
    data = wire.encode_config_set_request(SID, "alice", [("a", "1"), ("b", None)])
    req = pb.ConfigRequest.FromString(data)
    assert req.session_id == SID and req.user_context.user_id == "alice"
    assert [(p.key, p.value if p.HasField("value") else None) for p in req.operation.set.pairs] == [
        ("a", "1"),
        ("b", None),
    ]
    assert req.operation.set.silent


@pytest.mark.parametrize(
    ("method", "msg"),
    [
        ("Config", pb.ConfigResponse),
        ("ReleaseSession", pb.ReleaseSessionResponse),
        ("ReleaseExecute", pb.ReleaseExecuteResponse),
        ("Interrupt", pb.InterruptResponse),
        ("FetchErrorDetails", pb.FetchErrorDetailsResponse),
        ("AddArtifacts", pb.AddArtifactsResponse),
    ],
)
def test_empty_responses_carry_the_session_id(method: str, msg: type) -> None:
    resp = msg.FromString(wire.empty_response(method, SID, "ssid-1"))
    assert resp.session_id == SID
    assert resp.server_side_session_id == "ssid-1"
    assert wire.scan_response_ssid(method, wire.empty_response(method, SID, "ssid-1")) == "ssid-1"


def test_with_user_id_replaces_only_the_user_id() -> None:
    ctx = wire.encode_string(1, "jovyan") + wire.encode_string(2, "Jo Vyan") + wire.encode_string(999, b"ext")
    req = wire.encode_string(1, "sid") + wire.encode_string(2, ctx) + wire.encode_varint_field(7, 300)
    out = wire.with_user_id(req, "alice@example.com")
    ids = wire.scan_request("ExecutePlan", out)
    assert ids.session_id == "sid" and ids.user_id == "alice@example.com"
    expected_ctx = wire.encode_string(1, "alice@example.com") + wire.encode_string(2, "Jo Vyan")
    expected_ctx += wire.encode_string(999, b"ext")
    assert out == wire.encode_string(1, "sid") + wire.encode_string(2, expected_ctx) + wire.encode_varint_field(7, 300)


def test_with_user_id_adds_a_missing_user_context() -> None:
    out = wire.with_user_id(wire.encode_string(1, "sid"), "bob")
    assert wire.scan_request("Config", out).user_id == "bob"
