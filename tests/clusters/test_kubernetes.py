"""Drivers as Pods, end to end on the fake API server (``sparkgate.testing.kube``): its kubelet runs
each driver Pod as a real process (the fake Spark Connect backend) on a loopback IP of its own,
and the gateway reaches it there with real gRPC, as in a cluster."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc.aio
import pytest

from sparkgate.clusters.base import Driver, DriverSpec, DriverState
from sparkgate.clusters.driver_pod import BUSY, DRAINING_SINCE, NAMESPACE, POOL, selector
from sparkgate.clusters.kubernetes import KubernetesProvider
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import KubernetesSettings, Settings, load_settings
from sparkgate.errors import DriverStartError
from sparkgate.kube import rbac
from sparkgate.kube.api import PODS, KubeApi
from sparkgate.kube.lease import KubeLease
from sparkgate.platform import Platform
from sparkgate.testing.kube import FakeKubeApi, FakeKubelet, fake_connect_runner
from tests.gateway.test_relay import ROUTE, SVC, request

NS = "default"


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[FakeKubeApi, FakeKubelet]]:
    async with FakeKubeApi(bookmark_interval=0.2) as api, FakeKubelet(api, fake_connect_runner) as kubelet:
        yield api, kubelet


def token_key(directory: Path) -> Path:
    """A file holding the key driver tokens are derived from (``kubernetes.token_key_file``)."""
    path = directory / "token-key"
    path.write_bytes(b"0123456789abcdef0123456789abcdef")
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return token_key(tmp_path)


def platform_settings(
    api: FakeKubeApi, tmp_path: Path, key: Path, *, startup_timeout_seconds: float = 60, **pool: Any
) -> Settings:
    """A gateway alone (no runner, no Playground) whose drivers are Pods on ``api``; ``pool``
    settings beside a warm pool of one."""
    return load_settings(
        None,
        {},
        gateway={"host": "127.0.0.1", "port": 0},
        admin={"enabled": False},
        runner={"enabled": False},
        playground={"enabled": False},
        pool={"size": 1, **pool},
        state_dir=tmp_path / "state",
        environments={"prod": {"provider": "kubernetes"}},
        kubernetes={
            "namespace": NS,
            "kubeconfig": str(api.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)),
            "token_key_file": str(key),
            "plugin_jar": "",
            "startup_timeout_seconds": startup_timeout_seconds,
        },
    )


def k8s_settings(key: Path, **kw: Any) -> KubernetesSettings:
    base: dict[str, Any] = {
        "namespace": NS,
        "token_key_file": str(key),
        "plugin_jar": "",
        "startup_timeout_seconds": 60,
    }
    return KubernetesSettings(**(base | kw))


async def config_call(address: str, token: str | None) -> None:
    md = (("authorization", f"Bearer {token}"),) if token else ()
    async with grpc.aio.insecure_channel(address) as ch:
        await ch.unary_unary(SVC + "Config")(request(), metadata=md, timeout=5)


async def pool_ready(cm: ClusterManager, api: FakeKubeApi, timeout: float = 90) -> None:
    """The warm pool full, or a failure that shows each driver Pod's state."""
    try:
        await cm.wait_pool_ready(timeout=timeout)
    except TimeoutError:
        states = {p["metadata"]["name"]: p.get("status") for p in pods(api)}
        raise AssertionError(f"warm pool not ready in {timeout}s: {states}; backoff: {cm.backoff}") from None


def pods(api: FakeKubeApi) -> list[dict[str, Any]]:
    return [p for p in api.objects("pods", NS) if p["metadata"]["labels"].get("app.kubernetes.io/managed-by")]


async def test_warm_pods_start_ready_and_each_answers_only_with_its_own_token(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path
) -> None:
    api, _ = cluster
    async with KubeApi(api.kubeconfig(), namespace=NS) as client:
        provider = KubernetesProvider(k8s_settings(key), api=client)
        async with provider:
            cm = ClusterManager(provider, pool_size=2, max_drivers=4)
            await cm.start()
            await pool_ready(cm, api)
            a, b = cm.warm()
            assert a.address != b.address and a.address.endswith(":15002")  # a Pod IP each
            await config_call(a.address, a.token)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await config_call(a.address, b.token)  # another driver's token opens nothing here
            assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert {p["metadata"]["labels"][POOL] for p in pods(api)} == {"true"}
            secrets = {s["metadata"]["name"] for s in api.objects("secrets", NS)}
            assert secrets == {a.id, b.id}  # one each, named after its Pod
            await cm.close()
            await asyncio.sleep(0)
        assert api.objects("secrets", NS) == []  # deleted with their Pods (owner references)
    assert rbac.pairs(rbac.GATEWAY_RULES + rbac.GATEWAY_CLUSTER_RULES) >= api.seen


async def test_a_starting_driver_is_found_ready_when_the_watch_goes_quiet(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch may stall without ending (a proxy holding the stream): a driver still starting is
    read directly, now and then, so its start does not wait for the watch's silence timeout."""
    from sparkgate.clusters import kubernetes

    api, _ = cluster
    monkeypatch.setattr(kubernetes, "LOOK_AGAIN_SECONDS", 0.2)
    async with KubeApi(api.kubeconfig(), namespace=NS) as client:
        async with KubernetesProvider(k8s_settings(key), api=client) as provider:
            assert provider.pods is not None
            await provider.pods._tasks.close()  # the watch goes quiet: nothing more is heard
            d = await provider.start_driver(DriverSpec())
            assert d.state is DriverState.READY and d.address.endswith(":15002")
            await provider.stop_driver(d)


async def test_two_gateways_claiming_one_warm_pod_get_it_once(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path
) -> None:
    api, _ = cluster
    async with (
        KubeApi(api.kubeconfig(), namespace=NS) as c1,
        KubeApi(api.kubeconfig(), namespace=NS) as c2,
    ):
        p1, p2 = KubernetesProvider(k8s_settings(key), api=c1), KubernetesProvider(k8s_settings(key), api=c2)
        async with p1, p2:
            leader = ClusterManager(p1, pool_size=1, max_drivers=4)
            await leader.start()
            await pool_ready(leader, api)
            (warm,) = leader.warm()
            await p2.pods.wait_for(lambda: len(p2.pods.objects) == 1, 5)  # type: ignore[union-attr]
            (seen_there,) = await p2.list_drivers()
            got = await asyncio.gather(p1.claim(warm, "sjns-fe-prod"), p2.claim(seen_there, "sjns-ds-prod"))
            assert got[0] == got[1] in {"sjns-fe-prod", "sjns-ds-prod"}  # one claim won; both know which
            (pod,) = pods(api)
            assert pod["metadata"]["annotations"][NAMESPACE] == got[0]
            assert pod["metadata"]["labels"][POOL] == "false" and pod["metadata"]["labels"][BUSY] == "true"
            await leader.close()


async def test_a_session_through_the_gateway_and_its_pod_deleted(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path, tmp_path: Path
) -> None:
    """A session claims a warm Pod; its Pod deleted, the client is told its session changed, and
    the pool refills. A watch broken meanwhile with 410 lists again and misses nothing."""
    api, _ = cluster
    settings = platform_settings(api, tmp_path, key)
    async with Platform(settings) as p:
        await pool_ready(p.clusters, api)
        (warm,) = p.clusters.warm()
        sid = str(uuid.uuid4())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{p.gateway.port}") as ch:
            await ch.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)
            pod = api.get_object("pods", warm.id, NS)
            assert pod is not None and pod["metadata"]["annotations"][NAMESPACE] == "sjns-fe-prod"
            provider = p.provider
            assert isinstance(provider, KubernetesProvider) and provider.pods is not None
            relists = provider.pods.relists
            api.break_watches()
            api.expire_history()  # the watch comes back with a resourceVersion now too old: 410
            api.delete_object("pods", warm.id, NS)  # deleted in the gap (kubectl delete, an eviction)
            deadline = time.monotonic() + 15
            while p.clusters.get(warm.id) is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert p.clusters.get(warm.id) is None and provider.pods.relists > relists
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ch.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)
            assert "SESSION_CHANGED" in (err.value.details() or "")
            await pool_ready(p.clusters, api)  # the pool refilled
            assert [d.id for d in p.clusters.warm()] != [warm.id]


async def test_a_restarted_gateway_adopts_its_pods_and_a_crashed_pod_is_dead(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path
) -> None:
    api, kubelet = cluster
    async with KubeApi(api.kubeconfig(), namespace=NS) as client:
        async with KubernetesProvider(k8s_settings(key), api=client) as provider:
            cm = ClusterManager(provider, pool_size=1, max_drivers=4)
            await cm.start()
            await pool_ready(cm, api)
            (first,) = cm.warm()
            await cm.close(stop_drivers=False)  # a restart: the Pods stay
        async with KubernetesProvider(k8s_settings(key), api=client) as provider:
            cm = ClusterManager(provider, pool_size=1, max_drivers=4)
            await cm.start()
            (adopted,) = cm.warm()
            assert adopted.id == first.id and adopted.state is DriverState.READY
            await config_call(adopted.address, adopted.token)  # its token, from the shared key
            kubelet.kill(first.id, NS)  # the JVM dies (OOM-killed, say)
            deadline = time.monotonic() + 10
            while cm.get(first.id) is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert cm.get(first.id) is None and first.id in cm.dead
            await pool_ready(cm, api)
            await cm.close()


async def test_a_driver_that_cannot_start_says_why(cluster: tuple[FakeKubeApi, FakeKubelet], key: Path) -> None:
    api, _ = cluster
    async with KubeApi(api.kubeconfig(), namespace=NS) as client:
        provider = KubernetesProvider(k8s_settings(key, startup_timeout_seconds=1), api=client)
        async with provider:
            api.fail_next("create", "secrets", 500)
            cm = ClusterManager(provider, pool_size=0, max_drivers=4)
            await cm.start()
            with pytest.raises(Exception, match="Kubernetes refused"):
                await provider.start_driver(cm._spec("sjns-fe-prod", "default"))
            await asyncio.sleep(0.2)
            assert pods(api) == [] or all(p["metadata"].get("deletionTimestamp") for p in pods(api))
            await cm.close()


async def pod_when(api: FakeKubeApi, name: str, holds: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """The driver Pod once ``holds`` says so (within 15 s)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pod = api.get_object("pods", name, NS)
        if pod is not None and holds(pod):
            return pod
        await asyncio.sleep(0.05)
    raise AssertionError(f"driver Pod {name} {what}: {api.get_object('pods', name, NS)}")


async def released_to_the_drain(api: FakeKubeApi, name: str) -> dict[str, Any]:
    """The driver Pod once the busy-driver PodDisruptionBudget no longer holds it."""
    return await pod_when(api, name, lambda pod: pod["metadata"]["labels"][BUSY] == "false", "still protected")


@contextlib.asynccontextmanager
async def a_gateway(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path, *, pool_size: int, drain_grace_seconds: float = 3600
) -> AsyncIterator[tuple[KubeApi, KubernetesProvider, ClusterManager]]:
    """A gateway's provider and cluster manager on the fake cluster."""
    api, _ = cluster
    async with KubeApi(api.kubeconfig(), namespace=NS) as client:
        provider = KubernetesProvider(k8s_settings(key, drain_grace_seconds=drain_grace_seconds), api=client)
        async with provider:
            cm = ClusterManager(provider, pool_size=pool_size, max_drivers=4)
            await cm.start()
            try:
                yield client, provider, cm
            finally:
                await cm.close()


@contextlib.asynccontextmanager
async def a_team_driver(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path, *, drain_grace_seconds: float
) -> AsyncIterator[tuple[KubeApi, KubernetesProvider, Driver]]:
    """A gateway's provider on the fake cluster, and a driver a team has claimed."""
    async with a_gateway(cluster, key, pool_size=0, drain_grace_seconds=drain_grace_seconds) as (client, provider, cm):
        yield client, provider, await cm.acquire("fe", "prod")


async def test_a_node_drain_stops_new_sessions_and_releases_the_driver_after_the_grace(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path
) -> None:
    api, kubelet = cluster
    async with a_team_driver(cluster, key, drain_grace_seconds=0.3) as (_, _, d):
        kubelet.cordon()
        deadline = time.monotonic() + 15
        while d.state is not DriverState.DRAINING and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert d.state is DriverState.DRAINING  # no new session goes there
        pod = await released_to_the_drain(api, d.id)
        assert pod["metadata"]["annotations"][DRAINING_SINCE]  # when the grace began, for other gateways
        # The drain called off: its team's sessions are protected again, and new ones come.
        kubelet.uncordon()
        await annotated(api, d.id, present=False)
        await pod_when(api, d.id, lambda pod: pod["metadata"]["labels"][BUSY] == "true", "not protected again")
        assert d.state is DriverState.READY


async def test_the_drain_grace_runs_from_when_the_first_gateway_saw_the_drain(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path
) -> None:
    """A gateway that (re)starts during a drain does not give the driver a grace of its own."""
    api, kubelet = cluster
    async with a_team_driver(cluster, key, drain_grace_seconds=3600) as (client, _, d):
        an_hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3601))
        await client.patch(PODS, d.id, {"metadata": {"annotations": {DRAINING_SINCE: an_hour_ago}}})
        kubelet.cordon()
        pod = await released_to_the_drain(api, d.id)
        assert pod["metadata"]["annotations"][DRAINING_SINCE] == an_hour_ago


async def test_a_warm_driver_on_a_cordoned_node_takes_no_session_until_it_is_uncordoned(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path
) -> None:
    api, kubelet = cluster
    async with a_gateway(cluster, key, pool_size=1) as (_, provider, cm):
        await pool_ready(cm, api)
        (warm,) = cm.warm()
        told: list[tuple[str, str]] = []
        drain, undrain = provider.on_drain, provider.on_undrain
        assert drain is not None and undrain is not None
        provider.on_drain = lambda name, why: (told.append(("drain", name)), drain(name, why))[-1]
        provider.on_undrain = lambda name: (told.append(("undrain", name)), undrain(name))[-1]
        kubelet.cordon()
        deadline = time.monotonic() + 15
        while ("drain", warm.id) not in told and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert ("drain", warm.id) in told  # (it would not be protected from the drain: no team holds it)
        kubelet.uncordon()
        while ("undrain", warm.id) not in told and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert told == [("drain", warm.id), ("undrain", warm.id)]
        pod = api.get_object("pods", warm.id, NS)
        assert pod is not None and pod["metadata"]["labels"][BUSY] == "false"  # (still no team's)


async def test_an_uncordoned_node_stops_the_grace_and_a_later_drain_gets_its_own(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path
) -> None:
    api, kubelet = cluster
    async with a_team_driver(cluster, key, drain_grace_seconds=3600) as (_, provider, d):
        kubelet.cordon()
        await annotated(api, d.id, present=True)
        kubelet.uncordon()
        pod = await annotated(api, d.id, present=False)
        assert pod["metadata"]["labels"][BUSY] == "true"  # still protected: no drain is going on
        assert d.id not in provider._draining
        assert d.state is DriverState.READY  # and it takes new sessions again


async def annotated(api: FakeKubeApi, name: str, *, present: bool) -> dict[str, Any]:
    """The driver Pod once its drain annotation is there (or gone)."""

    def holds(pod: dict[str, Any]) -> bool:
        return bool((pod["metadata"].get("annotations") or {}).get(DRAINING_SINCE)) is present

    return await pod_when(api, name, holds, f"{DRAINING_SINCE} {'never written' if present else 'still there'}")


async def test_one_gateway_holds_the_fleet_lease_and_another_takes_over(
    cluster: tuple[FakeKubeApi, FakeKubelet],
) -> None:
    api, _ = cluster
    async with KubeApi(api.kubeconfig(), namespace=NS) as client:
        a = KubeLease(lambda: client, "sparkgate-fleet", "a", lease_seconds=1)
        b = KubeLease(lambda: client, "sparkgate-fleet", "b", lease_seconds=1)
        await a.campaign()
        await b.campaign()
        assert a.is_leader() and not b.is_leader() and a.token == 1
        await a.campaign()  # renewing keeps it
        assert a.is_leader()
        t0 = time.monotonic()
        while not b.is_leader():  # a stops renewing (paused, gone)
            await b.campaign()
            await asyncio.sleep(0.1)
            assert time.monotonic() - t0 < 5, "no takeover"
        assert b.token == 2 and not a.is_leader()  # a higher token; a's own clock ran out first
        await a.campaign()  # a wakes: it does not lead
        assert not a.is_leader()
        await b.release()  # b leaves (a rollout): a takes over at its next round, not a lease later
        await a.campaign()
        assert a.is_leader() and a.token == 3 and not b.is_leader()
    lease = api.get_object("leases", "sparkgate-fleet", NS)
    assert lease is not None and lease["spec"]["holderIdentity"] == "a"


def test_the_selector_names_sparkgates_driver_pods() -> None:
    assert selector("sparkgate") == (
        "app.kubernetes.io/managed-by=sparkgate,app.kubernetes.io/component=driver,app.kubernetes.io/instance=sparkgate"
    )
    assert PODS.path(NS, "x", "log") == "/api/v1/namespaces/default/pods/x/log"


async def test_a_server_run_by_others_is_used_never_stopped(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path
) -> None:
    api, _ = cluster
    api.put_object(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "team-connect",
                "namespace": NS,
                "labels": {"app": "team-connect"},
                "annotations": {NAMESPACE: "sjns-fe-prod"},
            },
            "spec": {
                "containers": [
                    {
                        "name": "connect",
                        "image": "theirs",
                        "ports": [{"name": "spark-connect", "containerPort": 15002}],
                        "readinessProbe": {"tcpSocket": {"port": 15002}},
                    }
                ]
            },
        }
    )
    async with KubeApi(api.kubeconfig(), namespace=NS) as client:
        provider = KubernetesProvider(k8s_settings(key, adopt_selector="app=team-connect"), api=client)
        async with provider:
            deadline = time.monotonic() + 10
            while not [d for d in await provider.list_drivers() if d.state is DriverState.READY]:
                assert time.monotonic() < deadline, "never ready"
                await asyncio.sleep(0.1)
            cm = ClusterManager(provider, pool_size=0, max_drivers=4, driver_idle_ttl=0.01)
            await cm.start()
            d = await cm.acquire("fe", "prod")
            assert d.id == "team-connect" and d.external
            d.last_used = 0.0
            assert await cm.expire_idle() == [] and cm.get(d.id) is d  # never stopped
            await provider.discard(d)
            await cm.close()
        assert api.get_object("pods", "team-connect", NS) is not None


async def test_a_pod_one_gateway_cannot_reach_is_left_to_the_others_and_a_cordoned_node_drains_on_adoption(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path
) -> None:
    api, kubelet = cluster
    async with KubeApi(api.kubeconfig(), namespace=NS) as client:
        async with KubernetesProvider(k8s_settings(key), api=client) as provider:
            cm = ClusterManager(provider, pool_size=0, max_drivers=4)
            await cm.start()
            d = await cm.acquire("fe", "prod")
            await provider.discard(d)  # (its probes failed from this gateway only)
            assert api.get_object("pods", d.id, NS) is not None  # alive: others may reach it
            await cm.close(stop_drivers=False)
            kubelet.cordon()  # while no gateway runs
        async with KubernetesProvider(k8s_settings(key), api=client) as provider:
            cm = ClusterManager(provider, pool_size=0, max_drivers=4)
            await cm.start()
            adopted = cm.get(d.id)
            assert adopted is not None and adopted.state is DriverState.DRAINING  # no new session there
            await cm.close()


def test_a_profile_s_spark_version_must_match_its_image(key: Path) -> None:
    provider = KubernetesProvider(k8s_settings(key))
    provider.check_spec(DriverSpec(spark_version="4.1"))  # the default image: 4.1.4
    with pytest.raises(DriverStartError, match=r"pool.profiles.default.pod.image"):
        provider.check_spec(DriverSpec(spark_version="3.5"))


async def test_the_leader_removes_a_driver_pod_whose_start_was_cut(
    cluster: tuple[FakeKubeApi, FakeKubelet], key: Path
) -> None:
    api, _ = cluster
    async with KubeApi(api.kubeconfig(), namespace=NS) as client:
        provider = KubernetesProvider(k8s_settings(key, startup_timeout_seconds=0.5), api=client)
        async with provider:
            # A gateway died after creating this Pod, before its Secret: it waits for it forever.
            await client.create(PODS, provider.build.pod("sparkgate-driver-cut", DriverSpec()))
            cm = ClusterManager(provider, pool_size=0, max_drivers=4)
            await cm.start()
            assert cm.get("sparkgate-driver-cut") is None  # (never ready: not adopted)
            await asyncio.sleep(1.1)
            await cm.expire_idle()  # the leader's round
            deadline = time.monotonic() + 5
            while api.get_object("pods", "sparkgate-driver-cut", NS) is not None:
                assert time.monotonic() < deadline, "still there"
                await asyncio.sleep(0.05)
            await cm.close()
