"""Where calls go and when sessions end: the call pipeline and the session table, with an in-memory
provider (no gRPC, no Spark)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sparkgate.clusters.base import DriverState
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import load_settings
from sparkgate.connect import wire
from sparkgate.errors import BadRequest, PermissionDenied, SessionLost
from sparkgate.gateway import sessions
from sparkgate.gateway.pipeline.intents import Answer, Forward
from sparkgate.testing.fake_provider import FakeProvider
from tests.gateway.conftest import Rig

HDRS = [("x-doordash-team", "fe"), ("x-doordash-environment", "prod")]


def ids(sid: str, user: str = "alice") -> wire.RequestIds:
    return wire.RequestIds(sid, user)


JVM = "_SPARK_CONNECT_SCALA spark/4.1.4 scala/2.13.17 jvm/17.0.15 os/linux"
PYTHON = "_SPARK_CONNECT_PYTHON spark/4.1.4 os/linux python/3.11.7"


def config_set(sid: str, pairs: list[tuple[str, str | None]], user: str = "alice", client: str = JVM) -> bytes:
    return wire.encode_config_set_request(sid, user, pairs, client_type=client)


async def test_headers_route_a_new_session(gw: Rig) -> None:
    sid = str(uuid.uuid4())
    d = await gw.resolve("ExecutePlan", HDRS, ids(sid), b"")
    assert isinstance(d, Forward) and d.route.team == "fe" and d.held_config is None
    again = await gw.resolve("AnalyzePlan", [], ids(sid), b"")  # later RPCs need no headers
    assert isinstance(again, Forward) and again.driver is d.driver


async def test_python_style_single_config_set(gw: Rig) -> None:
    sid = str(uuid.uuid4())
    req = config_set(
        sid,
        [
            ("spark.connect.grpc.header.x-doordash-team", "fe"),
            ("spark.connect.grpc.header.x-doordash-environment", "prod"),
            ("spark.app.name", "x"),
        ],
    )
    d = await gw.resolve("Config", [], ids(sid), req)
    assert isinstance(d, Forward) and d.route.environment == "prod"


async def test_jvm_style_one_set_per_key_is_held_then_replayed(gw: Rig) -> None:
    sid = str(uuid.uuid4())
    first = config_set(sid, [("spark.connect.grpc.header.x-doordash-team", "fe")])
    a = await gw.resolve("Config", [], ids(sid), first)
    assert isinstance(a, Answer)
    second = config_set(sid, [("spark.connect.grpc.header.x-doordash-environment", "prod")])
    f = await gw.resolve("Config", [], ids(sid), second)
    assert isinstance(f, Forward) and f.held_config is not None
    assert list(f.held_config) == [("spark.connect.grpc.header.x-doordash-team", "fe")]


async def test_python_incomplete_set_is_refused_not_held(gw: Rig) -> None:
    sid = str(uuid.uuid4())
    team_only = config_set(sid, [("spark.connect.grpc.header.x-doordash-team", "fe")], client=PYTHON)
    with pytest.raises(BadRequest, match="environment"):
        await gw.resolve("Config", [], ids(sid), team_only)


async def test_missing_routing_on_a_non_config_call(gw: Rig) -> None:
    with pytest.raises(BadRequest, match="missing team"):
        await gw.resolve("ExecutePlan", [], ids(str(uuid.uuid4())), b"")


async def test_held_team_then_plan_names_only_environment(gw: Rig) -> None:
    sid = str(uuid.uuid4())
    await gw.resolve("Config", [], ids(sid), config_set(sid, [("spark.connect.grpc.header.x-doordash-team", "fe")]))
    with pytest.raises(BadRequest) as e:
        await gw.resolve("ExecutePlan", [], ids(sid), b"")
    assert "environment" in e.value.message and "missing team" not in e.value.message


@pytest.mark.parametrize("sid", ["", "not-a-uuid", "x" * 500])
async def test_bad_session_ids(gw: Rig, sid: str) -> None:
    with pytest.raises(BadRequest, match="session_id"):
        await gw.resolve("ExecutePlan", HDRS, ids(sid), b"")


async def test_another_users_session_id_is_refused(gw: Rig) -> None:
    sid = str(uuid.uuid4())
    await gw.resolve("ExecutePlan", HDRS, ids(sid, "alice"), b"")
    for method in ("ExecutePlan", "ReattachExecute", "Interrupt", "ReleaseSession"):
        with pytest.raises(PermissionDenied, match="belongs to another user"):
            await gw.resolve(method, HDRS, ids(sid, "mallory"), b"")
    assert isinstance(await gw.resolve("ExecutePlan", [], ids(sid, "alice"), b""), Forward)


async def test_noops_without_a_session_answer_locally(gw: Rig) -> None:
    for method in ("ReleaseSession", "ReleaseExecute", "Interrupt", "FetchErrorDetails"):
        a = await gw.resolve(method, [], ids(str(uuid.uuid4())), b"")
        assert isinstance(a, Answer)
    # Routable Interrupt / FetchErrorDetails are placed: a real server creates the session on them,
    # and a locally answered first response (no server-side session id) would break pyspark.
    for method in ("Interrupt", "FetchErrorDetails"):
        assert isinstance(await gw.resolve(method, HDRS, ids(str(uuid.uuid4())), b""), Forward)
    assert isinstance(await gw.resolve("ReleaseSession", HDRS, ids(str(uuid.uuid4())), b""), Answer)
    with pytest.raises(SessionLost, match="SESSION_NOT_FOUND"):
        await gw.resolve("ReattachExecute", HDRS, ids(str(uuid.uuid4())), b"")


async def test_release_drops_route_and_clone_pins(gw: Rig) -> None:
    sid, clone = str(uuid.uuid4()), str(uuid.uuid4())
    f = await gw.resolve("ExecutePlan", HDRS, ids(sid), b"")
    assert isinstance(f, Forward)
    await gw.clone(f.route, clone)
    c = await gw.resolve("ExecutePlan", [], ids(clone), b"")
    assert isinstance(c, Forward) and c.driver is f.driver
    assert f.driver.sessions == 2
    await gw.book.released(f.route)
    assert gw.book.store.get(f.route.key) is None and f.driver.sessions == 1


async def test_dead_driver_gives_session_changed(gw: Rig) -> None:
    sid = str(uuid.uuid4())
    f = await gw.resolve("ExecutePlan", HDRS, ids(sid), b"")
    assert isinstance(f, Forward)
    f.driver.state = DriverState.DEAD
    with pytest.raises(SessionLost, match="SESSION_CHANGED"):
        await gw.resolve("ExecutePlan", [], ids(sid), b"")
    # stop() on that session still succeeds, and the route is gone
    assert isinstance(await gw.resolve("ReleaseSession", [], ids(sid), b""), Answer)
    assert gw.book.store.get(f.route.key) is None


async def test_concurrent_first_calls_make_one_route(gw: Rig) -> None:
    sid = str(uuid.uuid4())
    results = await asyncio.gather(*(gw.resolve("Config", HDRS, ids(sid), b"") for _ in range(5)))
    assert len({r.driver.id for r in results if isinstance(r, Forward)}) == 1
    assert len(gw.book.store.all()) == 1


async def test_idle_routes_expire(gw: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[str] = []

    async def release(calls: object, address: str, session_id: str, user_id: str, **kw: object) -> None:
        released.append(session_id)

    monkeypatch.setattr(sessions, "release_session", release)
    sid = str(uuid.uuid4())
    f = await gw.resolve("ExecutePlan", HDRS, ids(sid), b"")
    assert isinstance(f, Forward)
    gw.book.settings = gw.book.settings.model_copy(
        update={"affinity": gw.book.settings.affinity.model_copy(update={"session_ttl_seconds": 0.01})}
    )
    await asyncio.sleep(0.05)
    await gw.book.sweep()
    assert gw.book.store.all() == [] and f.driver.sessions == 0
    assert released == [sid]  # and the driver lets go of it now, not at its own idle timeout


async def test_dead_driver_routes_are_dropped_and_clients_told(gw: Rig) -> None:
    sid = str(uuid.uuid4())
    f = await gw.resolve("ExecutePlan", HDRS, ids(sid), b"")
    assert isinstance(f, Forward)
    f.driver.state = DriverState.DEAD
    await gw.book.driver_died(f.driver, "process exited with code -9")
    assert gw.book.store.get(f.route.key) is None
    # Even with routing headers, the lost session is not silently placed on a new driver.
    with pytest.raises(SessionLost, match="code -9"):
        await gw.resolve("ExecutePlan", HDRS, ids(sid), b"")
    assert isinstance(await gw.resolve("ReleaseSession", [], ids(sid), b""), Answer)
    # A new session of the same client is placed normally.
    assert isinstance(await gw.resolve("ExecutePlan", HDRS, ids(str(uuid.uuid4())), b""), Forward)


async def test_no_driver_in_time_is_unavailable_with_retry_info() -> None:
    from sparkgate.errors import Unavailable

    s = load_settings(None, {}, gateway={"driver_wait_seconds": 0.05})
    cm = ClusterManager(FakeProvider(start_delay=1.0), pool_size=0)
    await cm.start()
    r = Rig.make(s, cm)
    with pytest.raises(Unavailable, match="retry") as e:
        await r.resolve("ExecutePlan", HDRS, ids(str(uuid.uuid4())), b"")
    assert e.value.retry_after_seconds
    assert r.book.store.all() == []
    await cm.close()


async def test_releases_during_a_release_are_answered_by_the_gateway(gw: Rig) -> None:
    """pyspark's stop(): ReleaseExecutes still in flight must not reach a driver closing the session."""
    sid = str(uuid.uuid4())
    placed = await gw.resolve("ExecutePlan", HDRS, ids(sid), b"")
    release = await gw.resolve("ReleaseSession", [], ids(sid), b"")
    assert isinstance(placed, Forward) and isinstance(release, Forward)
    assert isinstance(await gw.resolve("ReleaseExecute", [], ids(sid), b""), Answer)
    assert isinstance(await gw.resolve("ExecutePlan", [], ids(sid), b""), Forward)  # only releases
    # Another ReleaseSession still goes to the driver: a retry after a failed one must reach it.
    assert isinstance(await gw.resolve("ReleaseSession", [], ids(sid), b""), Forward)
    other = str(uuid.uuid4())
    assert isinstance(await gw.resolve("ExecutePlan", HDRS, ids(other), b""), Forward)
    assert isinstance(await gw.resolve("ReleaseExecute", [], ids(other), b""), Forward)  # other sessions
    await gw.book.released(release.route)
    assert gw.book.store.get(release.route.key) is None
    assert isinstance(await gw.resolve("ReleaseExecute", [], ids(sid), b""), Answer)  # no route: as before


async def test_a_release_never_answered_is_forgotten(gw: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = str(uuid.uuid4())
    await gw.resolve("ExecutePlan", HDRS, ids(sid), b"")
    assert isinstance(await gw.resolve("ReleaseSession", [], ids(sid), b""), Forward)
    assert isinstance(await gw.resolve("ReleaseExecute", [], ids(sid), b""), Answer)
    monkeypatch.setattr(sessions, "RELEASING_SECONDS", 0.0)
    assert isinstance(await gw.resolve("ReleaseExecute", [], ids(sid), b""), Forward)  # to the driver again
    await gw.book.sweep()
    assert not gw.book._releasing  # and no longer kept


async def test_a_session_whose_client_left_is_released(gw: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[tuple[str, str]] = []

    async def release(calls: object, address: str, session_id: str, user_id: str, **kw: object) -> None:
        released.append((session_id, user_id))

    monkeypatch.setattr(sessions, "release_session", release)
    gone, idle, elsewhere, back = (str(uuid.uuid4()) for _ in range(4))
    keys = {}
    for sid in (gone, idle, elsewhere, back):
        f = await gw.resolve("ExecutePlan", HDRS, ids(sid), b"")
        assert isinstance(f, Forward)
        keys[sid] = f.route.key
        gw.book.carried(f.route.key)
    driver = f.driver
    gw.book.carried(keys[elsewhere])  # its calls also went over a second connection, still open
    gw.book.connection_closed([keys[gone], keys[elsewhere], keys[back]], by_client=True)
    gw.book.connection_closed([keys[idle]], by_client=False)  # the gateway closed it (idle timeout)
    gw.book.carried(keys[back])  # its client reconnected and called again
    gw.book.settings = gw.book.settings.model_copy(
        update={"affinity": gw.book.settings.affinity.model_copy(update={"client_gone_seconds": 0.01})}
    )
    await asyncio.sleep(0.05)
    before = driver.sessions
    await gw.book.sweep()
    assert released == [(gone, "alice")]
    assert {r.session_id for r in gw.book.store.all()} == {idle, elsewhere, back}
    assert driver.sessions == before - 1


async def test_a_released_sessions_next_call_says_why(gw: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    async def release(*args: object, **kw: object) -> None:
        return None

    monkeypatch.setattr(sessions, "release_session", release)
    busy, idle = str(uuid.uuid4()), str(uuid.uuid4())
    for sid in (busy, idle):
        assert isinstance(await gw.resolve("ExecutePlan", HDRS, ids(sid), b""), Forward)
    gw.book.call_started(("alice", busy))  # a long call, still running
    gw.book.settings = gw.book.settings.model_copy(
        update={"affinity": gw.book.settings.affinity.model_copy(update={"session_ttl_seconds": 0.01})}
    )
    await asyncio.sleep(0.05)
    await gw.book.sweep()
    assert [r.session_id for r in gw.book.store.all()] == [busy]  # not idle while its call runs
    with pytest.raises(SessionLost, match=r"released after 0\.01s without a call"):
        await gw.resolve("ExecutePlan", [], ids(idle), b"")
    gw.book.call_ended(("alice", busy))
    await asyncio.sleep(0.05)
    await gw.book.sweep()
    assert gw.book.store.all() == []
