from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from sparkgate.clusters.base import POOL_NAMESPACE, Driver, DriverSpec, DriverState
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import CatalogSettings, PoolProfile, QuotaSettings, load_settings
from sparkgate.errors import DriverStartError, ResourceExhausted, Unavailable
from sparkgate.testing.fake_provider import FakeProvider


async def test_warm_driver_is_claimed_then_pool_refills() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=1, max_drivers=4)
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    d = await cm.acquire("fe", "prod")
    assert d.namespace == "sjns-fe-prod"
    await cm.wait_pool_ready(timeout=5)
    assert len(cm.warm()) == 1 and cm.warm()[0] is not d
    await cm.close()
    assert all(x.state.value == "dead" for x in p.started)


async def test_same_namespace_reuses_least_loaded_driver() -> None:
    cm = ClusterManager(FakeProvider(), pool_size=0, max_drivers=4)
    await cm.start()
    d1 = await cm.acquire("fe", "prod")
    cm.attach(d1)
    d2 = await cm.acquire("fe", "prod")
    assert d2 is d1  # no warm driver: the namespace's running driver is used
    other = await cm.acquire("ds", "prod")
    assert other is not d1
    await cm.close()


async def test_concurrent_new_sessions_start_one_driver() -> None:
    p = FakeProvider(start_delay=0.1)
    cm = ClusterManager(p, pool_size=0, max_drivers=4)
    await cm.start()
    drivers = await asyncio.gather(*(cm.acquire("fe", "test") for _ in range(5)))
    assert len({d.id for d in drivers}) == 1 and len(p.started) == 1
    await cm.close()


async def test_driver_cap() -> None:
    cm = ClusterManager(FakeProvider(), pool_size=0, max_drivers=1)
    await cm.start()
    cm.attach(await cm.acquire("a", "prod"))
    with pytest.raises(ResourceExhausted, match="max_drivers=1"):
        await cm.acquire("b", "prod")
    await cm.close()


async def test_at_the_cap_the_least_recently_used_idle_team_driver_makes_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=0, max_drivers=3)
    await cm.start()
    busy = await cm.acquire("busy", "prod")
    cm.attach(busy)
    older = await cm.acquire("older", "prod")
    newer = await cm.acquire("newer", "prod")
    older.last_used, newer.last_used = time.time() - 120, time.time() - 60
    busy.last_used = time.time() - 600  # least recently used, but it has a session

    d = await cm.acquire("next", "prod")
    assert d.namespace == "sjns-next-prod"
    assert older in p.stopped and cm.get(older.id) is None
    assert cm.get(newer.id) is newer and cm.get(busy.id) is busy

    # A driver just handed out has no session yet (it is attached after the session's route is
    # stored): it is not idle, so the cap holds.
    monkeypatch.setattr(time, "time", lambda: d.last_used + 1)
    newer.last_used = d.last_used
    with pytest.raises(ResourceExhausted, match="none has been idle"):
        await cm.acquire("one-more", "prod")
    assert cm.get(d.id) is d
    await cm.close()


async def test_a_driver_being_stopped_counts_is_not_adopted_again_and_is_stopped_on_close() -> None:
    p = FakeProvider(stop_delay=0.3)
    cm = ClusterManager(p, pool_size=0, max_drivers=2)
    await cm.start()
    idle = await cm.acquire("idle", "prod")
    busy = await cm.acquire("busy", "prod")
    cm.attach(busy)
    idle.last_used = time.time() - 60
    making_room = asyncio.create_task(cm.acquire("next", "prod"))
    await asyncio.sleep(0.05)
    assert cm.get(idle.id) is None and idle not in p.stopped  # leaving: still listed by the provider
    await cm.reconcile()
    assert cm.get(idle.id) is None  # not adopted back while it stops
    with pytest.raises(ResourceExhausted):  # two JVMs run and one starts: nothing else is idle
        await cm.acquire("third", "prod")
    d = await making_room
    assert idle in p.stopped and d.namespace == "sjns-next-prod"
    # Idle expiry stops a driver the same way; closing the manager waits for it.
    cm.driver_idle_ttl = 0.01
    d.last_used = time.time() - 60
    expiring = asyncio.create_task(cm.expire_idle())
    await asyncio.sleep(0.05)
    await cm.close()
    assert d in p.stopped
    await expiring


async def test_restart_adopts_running_drivers() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=1)
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    await cm.close(stop_drivers=False)
    cm2 = ClusterManager(p, pool_size=1)
    await cm2.start()
    await cm2.wait_pool_ready(timeout=5)
    assert len(p.started) == 1 and cm2.warm()[0].namespace == POOL_NAMESPACE
    await cm2.close()


async def test_namespace_driver_with_room_before_warm_pool() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=1, max_drivers=4, sessions_per_driver=2)
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    d1 = await cm.acquire("fe", "prod")
    cm.attach(d1)
    await cm.wait_pool_ready(timeout=5)
    d2 = await cm.acquire("fe", "prod")  # d1 has room: the warm driver stays in the pool
    cm.attach(d2)
    assert d2 is d1 and len(cm.warm()) == 1
    d3 = await cm.acquire("fe", "prod")  # d1 is full: claim the warm one
    assert d3 is not d1 and d3.namespace == "sjns-fe-prod"
    await cm.close()


async def test_full_platform_shares_namespace_drivers() -> None:
    cm = ClusterManager(FakeProvider(), pool_size=0, max_drivers=1, sessions_per_driver=1)
    await cm.start()
    d = await cm.acquire("fe", "prod")
    cm.attach(d)
    assert await cm.acquire("fe", "prod") is d


async def test_pool_refill_counts_against_max_drivers() -> None:
    p = FakeProvider(start_delay=0.2)
    cm = ClusterManager(p, pool_size=1, max_drivers=1)
    await cm.start()  # the refill is starting the only driver allowed
    await asyncio.sleep(0.05)
    with pytest.raises(ResourceExhausted):
        await cm.acquire("fe", "prod")
    await cm.close()


async def test_idle_team_drivers_are_stopped_pool_stays() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=1, driver_idle_ttl=0.05)
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    busy = await cm.acquire("fe", "prod")
    cm.attach(busy)
    await cm.wait_pool_ready(timeout=5)
    idle = await cm.acquire("ds", "prod")
    await asyncio.sleep(0.2)  # the periodic sweep runs every ttl/4
    assert idle in p.stopped and cm.get(idle.id) is None
    assert cm.get(busy.id) is busy  # it has a session
    await cm.wait_pool_ready(timeout=5)
    assert len(cm.warm()) == 1
    await cm.close()


async def test_namespace_quotas() -> None:
    quotas = QuotaSettings(max_drivers_per_namespace=1, max_sessions_per_namespace=3)
    cm = ClusterManager(FakeProvider(), pool_size=0, sessions_per_driver=1, quotas=quotas)
    await cm.start()
    drivers = []
    for _ in range(3):
        d = await cm.acquire("fe", "prod")
        cm.attach(d)
        drivers.append(d)
    assert len({d.id for d in drivers}) == 1  # one driver allowed: shared beyond its room
    with pytest.raises(ResourceExhausted, match="max_sessions_per_namespace=3"):
        await cm.acquire("fe", "prod")
    assert (await cm.acquire("ds", "prod")) is not drivers[0]  # other teams are not affected
    await cm.close()


def _profiles(**sizes: int) -> dict[str, PoolProfile]:
    return {name: PoolProfile(size=n, spark_conf={"spark.sparkgate.test.profile": name}) for name, n in sizes.items()}


async def test_each_profile_keeps_its_own_warm_drivers() -> None:
    p = FakeProvider()
    by_team = {"ml": "big"}
    cm = ClusterManager(
        p,
        profiles=_profiles(default=1, big=1),
        profile_for=lambda team, env: by_team.get(team, "default"),
        max_drivers=6,
    )
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    assert sorted(d.profile for d in cm.warm()) == ["big", "default"]
    assert {s.profile: s.spark_conf["spark.sparkgate.test.profile"] for s in p.specs} == {
        "big": "big",
        "default": "default",
    }
    ml = await cm.acquire("ml", "prod")
    assert ml.profile == "big" and ml.namespace == "sjns-ml-prod"
    fe = await cm.acquire("fe", "prod")
    assert fe.profile == "default"
    await cm.wait_pool_ready(timeout=5)  # both profiles refilled
    assert sorted(d.profile for d in cm.warm()) == ["big", "default"]
    await cm.close()


async def test_a_namespace_never_gets_another_profiles_warm_driver() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, profiles=_profiles(default=0, big=1), profile_for=lambda t, e: "default")
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    d = await cm.acquire("fe", "prod")  # the warm driver is "big": a default one is started instead
    assert d.profile == "default" and len(cm.warm("big")) == 1
    assert p.specs[-1].namespace == "sjns-fe-prod" and p.specs[-1].profile == "default"
    await cm.close()


async def test_drivers_mount_the_catalog_of_their_profiles_environments() -> None:
    s = load_settings(
        None,
        {},
        pool={"size": 1, "profiles": {"lake": {"size": 1}, "spare": {}}},
        environments={"local": {}, "lake": {"profile": "lake", "catalog": {"name": "lakehouse"}}},
    )
    p = FakeProvider()
    cm = ClusterManager(
        p,
        profiles=s.pool.all_profiles(),
        profile_for=s.profile_for,
        catalogs=s.profile_catalogs(),
        max_drivers=6,
    )
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    assert {spec.profile: spec.catalog.name for spec in p.specs} == {"default": "pedregal", "lake": "lakehouse"}
    assert (await cm.acquire("t1", "lake")).profile == "lake"
    spare = await cm._start("sjns-x-y", "spare")  # a profile no environment uses: the default catalog
    assert spare.profile == "spare" and p.specs[-1].catalog == CatalogSettings()
    await cm.close()


async def test_pack_policy_fills_the_busiest_driver_first() -> None:
    from sparkgate.clusters.placement import LeastSessions, Pack

    p = FakeProvider()
    cm = ClusterManager(p, pool_size=0, sessions_per_driver=2, placement=Pack(), max_drivers=4)
    await cm.start()
    a = await cm.acquire("fe", "prod")
    cm.attach(a)
    cm.attach(a)  # full
    b = await cm.acquire("fe", "prod")
    assert b is not a
    cm.detach(a.id)  # a: 1 session, b: 0 sessions
    assert await cm.acquire("fe", "prod") is a  # pack: the busier one with room
    cm.placement = LeastSessions()
    assert await cm.acquire("fe", "prod") is b  # spread: the emptier one
    await cm.close()


async def test_crash_looping_starts_back_off() -> None:
    p = FakeProvider()
    p.fail_starts = 10
    cm = ClusterManager(p, pool_size=0, start_backoff=(60.0, 300.0))
    await cm.start()
    with pytest.raises(DriverStartError):
        await cm.acquire("fe", "prod")
    # While backing off, new sessions learn why at once, and no JVM is started for them.
    with pytest.raises(Unavailable, match="fake start failure") as e:
        await cm.acquire("fe", "prod")
    assert e.value.retry_after_seconds is not None and 55 < e.value.retry_after_seconds <= 60
    assert len(p.specs) == 1
    assert cm.backoff["sjns-fe-prod"].failures == 1
    # Other namespaces are not held back by fe's failures.
    p.fail_starts = 0
    assert (await cm.acquire("ds", "prod")).namespace == "sjns-ds-prod"
    # Once the wait is over, the next attempt runs, and success clears the record.
    cm.backoff["sjns-fe-prod"].retry_at = 0
    assert (await cm.acquire("fe", "prod")).namespace == "sjns-fe-prod"
    assert "sjns-fe-prod" not in cm.backoff
    await cm.close()


async def test_warm_pool_retries_a_failing_profile_with_growing_delays() -> None:
    p = FakeProvider()
    p.fail_starts = 3
    cm = ClusterManager(p, pool_size=1, start_backoff=(0.05, 0.1))
    await cm.start()
    await cm.wait_pool_ready(timeout=5)  # failed 3 times, waited 0.05 + 0.1 + 0.1, then started
    assert len(p.specs) == 4 and len(cm.warm()) == 1 and not cm.backoff
    await cm.close()


async def test_warm_pool_backoff_grows_and_is_capped() -> None:
    p = FakeProvider()
    p.fail_starts = 100
    cm = ClusterManager(p, pool_size=1, start_backoff=(10.0, 25.0))
    await cm.start()
    await asyncio.sleep(0.05)
    b = cm.backoff["pool:default"]
    assert b.failures == 1 and 9 < b.retry_at - time.monotonic() <= 10
    for expected in (20.0, 25.0, 25.0):  # doubled, then capped
        b.retry_at = 0
        cm.refill_pool()
        await asyncio.sleep(0.05)
        assert expected - 1 < b.retry_at - time.monotonic() <= expected
    assert len(p.specs) == 4  # one start per allowed attempt, none in between
    await cm.close()


async def test_reconcile_drops_vanished_and_adopts_new_drivers() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=0)
    dead: list[tuple[str, str]] = []

    async def listener(d: Driver, why: str) -> None:
        dead.append((d.id, why))

    cm.on_driver_dead(listener)
    await cm.start()
    d = await cm.acquire("fe", "prod")
    p.vanish(d)
    ext = p.add_external(namespace="sjns-ds-prod")
    await cm.reconcile()
    assert cm.get(d.id) is None and dead == [(d.id, "no longer listed by the fake provider")]
    assert cm.get(ext.id) is ext and await cm.acquire("ds", "prod") is ext
    await cm.close()


# -- adopting drivers started with settings that have changed since ---------------------------


def profiles(conf: str, size: int = 1) -> dict[str, PoolProfile]:
    return {"default": PoolProfile(size=size, spark_conf={"spark.sql.shuffle.partitions": conf})}


async def warm_driver_left_running(p: FakeProvider, conf: str) -> Driver:
    """A warm driver started with ``conf`` by a manager (gateway) that then stopped without it."""
    cm = ClusterManager(p, profiles=profiles(conf))
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    driver = cm.warm()[0]
    await cm.close(stop_drivers=False)
    return driver


async def until_stopped(p: FakeProvider, driver: Driver) -> None:
    for _ in range(200):
        if driver in p.stopped:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{driver.id} was not stopped")


async def test_an_outdated_warm_driver_is_replaced_after_a_restart() -> None:
    p = FakeProvider()
    old = await warm_driver_left_running(p, "8")
    cm2 = ClusterManager(p, profiles=profiles("16"))  # the profile's conf changed meanwhile
    await cm2.start()
    await cm2.wait_pool_ready(timeout=5)
    await until_stopped(p, old)  # it never had a session: stopped at once
    (fresh,) = cm2.warm()
    assert fresh is not old and p.specs[-1].spark_conf == {"spark.sql.shuffle.partitions": "16"}
    assert (await cm2.acquire("fe", "prod")) is fresh
    await cm2.close()


async def test_an_outdated_team_driver_keeps_its_sessions_but_takes_no_new_ones() -> None:
    p = FakeProvider()
    quotas = QuotaSettings(max_drivers_per_namespace=1, max_sessions_per_namespace=0)
    cm = ClusterManager(p, profiles=profiles("8", size=0), quotas=quotas)
    await cm.start()
    old = await cm.acquire("fe", "prod")
    await cm.close(stop_drivers=False)

    cm2 = ClusterManager(p, profiles=profiles("16", size=0), quotas=quotas, driver_idle_ttl=0.2)
    await cm2.start()
    adopted = cm2.get(old.id)
    assert adopted is not None and adopted.state.value == "draining"
    cm2.attach(adopted)  # the restarted gateway restored a route to it
    assert await cm2.expire_idle() == []  # in use: kept
    new = await cm2.acquire("fe", "prod")  # a new session gets a driver with today's settings,
    assert new is not adopted  # although the namespace may hold only one driver
    cm2.attach(new)
    assert p.specs[-1].spark_conf == {"spark.sql.shuffle.partitions": "16"}
    cm2.detach(adopted.id)
    await until_stopped(p, adopted)  # its last session ended: stopped (by the periodic idle check)
    assert cm2.get(adopted.id) is None
    assert new not in p.stopped  # in use
    await cm2.close()


async def test_drivers_with_unchanged_or_unknown_settings_are_adopted_as_ready() -> None:
    p = FakeProvider()
    same = await warm_driver_left_running(p, "8")
    unknown = p.add_external()  # not started by sparkgate: no fingerprint to compare

    cm2 = ClusterManager(p, profiles=profiles("8"))
    await cm2.start()
    assert {d.id for d in cm2.warm()} == {same.id, unknown.id}
    await cm2.close()


def test_fingerprints_follow_what_a_driver_runs_with() -> None:
    base = DriverSpec(spark_conf={"a": "1", "b": "2"})
    assert base.fingerprint() == DriverSpec(namespace="sjns-fe-prod", spark_conf={"b": "2", "a": "1"}).fingerprint()
    assert base.fingerprint() != DriverSpec(spark_conf={"a": "1"}).fingerprint()
    assert base.fingerprint() != DriverSpec(spark_conf={"a": "1", "b": "2"}, spark_version="3.5").fingerprint()
    catalog = CatalogSettings(name="other")
    assert base.fingerprint() != DriverSpec(spark_conf={"a": "1", "b": "2"}, catalog=catalog).fingerprint()
    assert base.fingerprint("4g") != base.fingerprint("8g")


async def test_a_driver_declared_dead_is_not_adopted_again_while_it_is_being_stopped() -> None:
    class ListsRecords(FakeProvider):
        """Lists what it recorded when each driver started (as the local provider's files do)."""

        async def list_drivers(self) -> list[Driver]:
            return [dataclasses.replace(d, state=DriverState.READY) for d in self.started if d not in self.stopped]

    p = ListsRecords(stop_delay=0.5)
    cm = ClusterManager(p, pool_size=0)
    await cm.start()
    d = await cm.acquire("fe", "prod")
    dying = asyncio.create_task(cm._driver_died(d, "probe failed 3 times"))
    await asyncio.sleep(0.1)  # being stopped: still listed, as READY
    await cm.reconcile()
    assert cm.get(d.id) is None
    await dying
    await cm.close()


# -- gateways sharing one fleet ---------------------------------------------------------------


class SharedRecords(FakeProvider):
    """One provider's records seen by several managers (gateways): each lists its own copies."""

    async def list_drivers(self) -> list[Driver]:
        return [
            dataclasses.replace(d, namespace=self.claims.get(d.id, d.namespace))
            for d in self.started
            if d.state is not DriverState.DEAD
        ]


class NotLeader:
    token = 0

    def is_leader(self) -> bool:
        return False


def follower(p: FakeProvider) -> ClusterManager:
    """A gateway sharing ``p``'s drivers with the one that leads the fleet."""
    cm = ClusterManager(p, pool_size=1, max_drivers=4)
    cm.leadership = NotLeader()
    return cm


async def test_two_gateways_racing_for_the_last_warm_driver_get_different_drivers() -> None:
    p = SharedRecords()
    p.claim_delay = 0.05  # both decide before either claim is written
    leader = ClusterManager(p, pool_size=1, max_drivers=4)
    await leader.start()
    await leader.wait_pool_ready(timeout=5)
    other = follower(p)
    await other.start()  # adopts the warm driver the leader started
    (warm,) = other.warm()
    a, b = await asyncio.gather(leader.acquire("fe", "prod"), other.acquire("ds", "prod"))
    assert a.id != b.id and warm.id in {a.id, b.id}
    assert {p.claims[warm.id]} == {a.namespace if a.id == warm.id else b.namespace}
    # The same race within one team: drivers of that team only (perhaps two; never another's).
    await leader.wait_pool_ready(timeout=5)
    await other.reconcile()
    c, d = await asyncio.gather(leader.acquire("ml", "prod"), other.acquire("ml", "prod"))
    assert c.namespace == d.namespace == "sjns-ml-prod"
    for x in (a, b, c, d):
        assert p.claims.get(x.id, x.namespace) == x.namespace  # each driver serves one namespace
    await other.close(stop_drivers=False)
    await leader.close()


async def test_a_driver_claimed_through_another_gateway_is_not_offered_as_warm_after_reconcile() -> None:
    p = SharedRecords()
    leader = ClusterManager(p, pool_size=1, max_drivers=4)
    await leader.start()
    await leader.wait_pool_ready(timeout=5)
    other = follower(p)
    await other.start()
    taken = await leader.acquire("fe", "prod")
    assert [d.id for d in other.warm()] == [taken.id]  # (not yet known here)
    await other.reconcile()
    assert taken.id not in {d.id for d in other.warm()}
    assert other.get(taken.id) is not None and other.get(taken.id).namespace == "sjns-fe-prod"  # type: ignore[union-attr]
    await other.close(stop_drivers=False)
    await leader.close()


async def test_before_starting_a_driver_a_gateway_looks_for_one_another_gateway_started() -> None:
    p = SharedRecords()
    other = follower(p)
    await other.start()  # (nothing to adopt yet)
    leader = ClusterManager(p, pool_size=1, max_drivers=4)
    await leader.start()
    await leader.wait_pool_ready(timeout=5)
    assert other.warm() == []  # not yet adopted here (reconcile runs every 30 s)
    d = await other.acquire("fe", "prod")  # the leader's warm driver, not a new one
    assert len(p.started) == 1 and p.claims[d.id] == "sjns-fe-prod"
    e = await leader.acquire("fe", "prod")  # and the leader finds the team's driver the same way
    assert e.id == d.id
    await other.close(stop_drivers=False)
    await leader.close()


async def test_a_session_is_not_handed_the_driver_it_just_failed_on_by_a_start_it_joined() -> None:
    p = SharedRecords()
    cm = ClusterManager(p, pool_size=0, max_drivers=4)
    await cm.start()
    theirs = p.add_external(namespace="sjns-fe-prod")  # started by another gateway, not known here yet
    first, failed_over = await asyncio.gather(
        cm.acquire("fe", "prod"),  # starts looking: finds that driver
        cm.acquire("fe", "prod", exclude=frozenset({theirs.id})),  # joins the same start
        return_exceptions=True,
    )
    assert isinstance(first, Driver) and first.id == theirs.id
    assert isinstance(failed_over, Unavailable) and "just failed on" in failed_over.message
    assert len(p.started) == 1  # (no driver started for it either: it retries)
    await cm.close(stop_drivers=False)


async def test_on_one_machine_a_team_takes_the_warm_driver_already_starting() -> None:
    """Rather than start a second cold JVM beside it (tried: a team's session waited 21.5 s for
    its own start although the warm driver starting beside it was ready 7 s earlier)."""
    p = FakeProvider(start_delay=0.3)
    p.starts_share_cpu = True  # (drivers are JVMs on this machine)
    cm = ClusterManager(p, pool_size=1, max_drivers=4)
    await cm.start()  # the warm pool starts filling
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    d = await cm.acquire("fe", "prod")
    assert time.monotonic() - t0 < 0.28  # the rest of the warm driver's start, not a whole one
    assert d.id == "fake-1" and d.namespace == "sjns-fe-prod"
    assert [s.namespace for s in p.specs] == [POOL_NAMESPACE]  # no start of its own
    await cm.wait_pool_ready(timeout=5)  # and the pool refills
    await cm.close()


async def test_on_one_machine_the_warm_pool_waits_for_a_teams_start() -> None:
    p = FakeProvider(start_delay=0.3)
    p.starts_share_cpu = True  # (drivers are JVMs on this machine)
    cm = ClusterManager(p, pool_size=0, max_drivers=4)
    await cm.start()
    team = asyncio.create_task(cm.acquire("fe", "prod"))
    await asyncio.sleep(0.05)
    cm.profiles["default"] = PoolProfile(size=1)  # the pool wants one
    t0 = time.monotonic()
    cm.refill_pool()
    await team
    assert time.monotonic() - t0 < 0.35  # the team's start did not share the machine
    await cm.wait_pool_ready(timeout=5)
    assert time.monotonic() - t0 >= 0.5  # the warm driver started after it
    assert [s.namespace for s in p.specs] == ["sjns-fe-prod", POOL_NAMESPACE]
    await cm.close()


async def test_a_drain_its_provider_calls_off_returns_the_driver_to_new_sessions() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=0, max_drivers=4)
    await cm.start()
    node_drained = await cm.acquire("fe", "prod")
    stopped_elsewhere = await cm.acquire("ml", "prod")
    cm.drain(node_drained.id, "its node is being drained")
    cm.drain(stopped_elsewhere.id, "another gateway stops it", stopping=True)
    assert node_drained.state is stopped_elsewhere.state is DriverState.DRAINING
    cm.undrain(node_drained.id)
    cm.undrain(stopped_elsewhere.id)  # (not the provider's drain to call off)
    assert node_drained.state is DriverState.READY
    assert stopped_elsewhere.state is DriverState.DRAINING
    assert await cm.acquire("fe", "prod") is node_drained  # new sessions go there again
    cm.undrain(node_drained.id)  # (called off twice: nothing more)
    assert node_drained.state is DriverState.READY
    await cm.close()


async def test_a_driver_adopted_while_its_provider_drains_it_returns_when_the_drain_is_called_off() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=0, max_drivers=4)
    await cm.start()
    held = await cm.acquire("fe", "prod")
    await cm.close(stop_drivers=False)
    held.state = DriverState.DRAINING  # (as its provider lists it: its node is being drained)
    cm2 = ClusterManager(p, pool_size=0, max_drivers=4)  # a gateway restarted during the drain
    await cm2.start()
    adopted = cm2.get(held.id)
    assert adopted is not None and adopted.state is DriverState.DRAINING
    cm2.undrain(held.id)
    assert adopted.state is DriverState.READY
    await cm2.close()
