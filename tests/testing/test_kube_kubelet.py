"""The fake kubelet runs Pods as local processes on loopback IPs of their own, resolves their
environment and Secret volumes, reports their status and logs, and stops them on deletion."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node, Pod, Secret

from sparkgate.aio import pid_alive
from sparkgate.testing.kube import FakeKubeApi, FakeKubelet, PodRun, fake_connect_runner, python_runner

NS = "drivers"
TOKEN = "s3cret-token"
CONFIG = "/spark.connect.SparkConnectService/Config"

Obj = dict[str, Any]


def driver_pod(name: str = "driver", **spec: Any) -> Obj:
    """A Pod shaped like the gateway's drivers: token from a Secret, the port named, a TCP probe."""
    container = {
        "name": "spark",
        "image": "apache/spark:4.1.0",
        "ports": [{"name": "spark-connect", "containerPort": 15002}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "SPARK_CONNECT_AUTHENTICATE_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": f"{name}-token", "key": "token"}},
            },
        ],
        "readinessProbe": {"tcpSocket": {"port": "spark-connect"}, "periodSeconds": 1},
    }
    pod_spec = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5, "containers": [container]} | spec
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "spec": pod_spec}


def token_secret(name: str = "driver") -> Secret:
    return Secret.from_dict({"metadata": {"name": f"{name}-token"}, "stringData": {"token": TOKEN}})


def ready(pod: Obj | None) -> bool:
    conditions = (pod or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def phase(wanted: str) -> Callable[[Obj | None], bool]:
    return lambda pod: pod is not None and pod.get("status", {}).get("phase") == wanted


def pid_of(pod: Obj) -> int:
    return int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("fake://"))


@pytest.fixture
async def kubelet(api: FakeKubeApi) -> AsyncIterator[FakeKubelet]:
    async with FakeKubelet(api, fake_connect_runner, probe_interval=0.1, retry_interval=0.1) as node:
        yield node


@pytest.fixture
async def client(api: FakeKubeApi) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(config=api.kubeconfig(NS)) as c:
        yield c


async def test_a_driver_pod_serves_spark_connect_on_its_own_ip(
    api: FakeKubeApi, kubelet: FakeKubelet, client: AsyncClient
) -> None:
    await client.create(token_secret("a"))
    await client.create(token_secret("b"))
    await client.create(Pod.from_dict(driver_pod("a")))
    await client.create(Pod.from_dict(driver_pod("b")))
    a = await api.wait_for("pods", "a", NS, ready)
    b = await api.wait_for("pods", "b", NS, ready)
    assert a is not None and b is not None
    ips = {a["status"]["podIP"], b["status"]["podIP"]}
    assert len(ips) == 2 and all(ip.startswith("127.") and ip != "127.0.0.1" for ip in ips)
    assert a["spec"]["nodeName"] == kubelet.node_name == (await client.get(Node, kubelet.node_name)).metadata.name
    [status] = a["status"]["containerStatuses"]
    assert status["ready"] and "running" in status["state"] and status["restartCount"] == 0
    for ip in ips:  # both on port 15002, as in a cluster
        async with grpc.aio.insecure_channel(f"{ip}:15002") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary(CONFIG)(b"")
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            await channel.unary_unary(CONFIG)(b"", metadata=(("authorization", f"Bearer {TOKEN}"),))
    log = [line async for line in client.log("a", tail_lines=1)]
    assert log == [f"READY {a['status']['podIP']}:15002\n"]


async def test_deleting_a_pod_stops_its_process_then_removes_it(
    api: FakeKubeApi, kubelet: FakeKubelet, client: AsyncClient
) -> None:
    await client.create(token_secret())
    await client.create(Pod.from_dict(driver_pod()))
    pod = await api.wait_for("pods", "driver", NS, ready)
    assert pod is not None
    pid = pid_of(pod)
    assert pid_alive(pid)
    deleting = await client.delete(Pod, "driver") or await client.get(Pod, "driver")
    assert deleting.metadata.deletionTimestamp is not None and deleting.metadata.deletionGracePeriodSeconds == 5
    await api.wait_for("pods", "driver", NS, lambda p: p is None)
    assert not pid_alive(pid)


async def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
    api: FakeKubeApi, client: AsyncClient
) -> None:
    stubborn = python_runner(
        "import os, signal, socket, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "server = socket.create_server((os.environ['POD_IP'], 15002))  # Ready from here on\n"
        "time.sleep(60)\n"
    )
    async with FakeKubelet(api, stubborn, probe_interval=0.1):
        pod = driver_pod(terminationGracePeriodSeconds=1)
        pod["spec"]["containers"][0]["env"] = [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
        ]
        await client.create(Pod.from_dict(pod))
        await api.wait_for("pods", "driver", NS, ready)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.delete(Pod, "driver")
        await api.wait_for("pods", "driver", NS, lambda p: p is None, timeout=5)
        assert 0.9 <= loop.time() - started < 3


async def test_a_pod_waits_for_its_secret(api: FakeKubeApi, kubelet: FakeKubelet, client: AsyncClient) -> None:
    await client.create(Pod.from_dict(driver_pod()))

    def waiting(pod: Obj | None) -> bool:
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError"

    pod = await api.wait_for("pods", "driver", NS, waiting)
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert 'secret "driver-token" not found' in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    await client.create(token_secret())
    assert await api.wait_for("pods", "driver", NS, ready)


async def test_the_runner_sees_the_env_args_and_mounts_a_kubelet_would_give(
    api: FakeKubeApi, client: AsyncClient, tmp_path: Path
) -> None:
    seen: list[tuple[PodRun, dict[str, Any]]] = []

    def record(run: PodRun) -> None:  # runs in a thread: it may read the files
        files = {}
        for path in run.mounts["/etc/sparkgate"].iterdir():
            files[path.name] = (path.read_text(), stat.S_IMODE(path.stat().st_mode))
        seen.append((run, files))

    properties = "spark.sql.shuffle.partitions=4\n"
    secret = {
        "metadata": {"name": "conf"},
        "data": {"spark.properties": base64.b64encode(properties.encode()).decode()},
    }
    await client.create(Secret.from_dict(secret | {"stringData": {"token": TOKEN}}))
    spec = driver_pod("d")
    container = spec["spec"]["containers"][0]
    container["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "conf", "key": "token"}}},
        {"name": "GREETING", "value": "hello $(POD_NAME)"},
    ]
    container["command"] = ["/opt/spark/bin/spark-submit"]
    container["args"] = ["--conf", "spark.driver.host=$(POD_IP)", "--name", "$(POD_NAME)", "$$(POD_NAME)", "$(NOPE)"]
    container["volumeMounts"] = [{"name": "conf", "mountPath": "/etc/sparkgate", "readOnly": True}]
    spec["spec"]["volumes"] = [{"name": "conf", "secret": {"secretName": "conf"}}]
    async with FakeKubelet(api, record):
        await client.create(Pod.from_dict(spec))
        pod = await api.wait_for("pods", "d", NS, ready)
    assert pod is not None
    [(run, files)] = seen
    ip = pod["status"]["podIP"]
    assert run.ip == ip and run.env["POD_IP"] == ip and run.env["TOKEN"] == TOKEN
    assert run.env["GREETING"] == "hello d"
    assert run.args == ("--conf", f"spark.driver.host={ip}", "--name", "d", "$(POD_NAME)", "$(NOPE)")
    assert files == {"spark.properties": (properties, 0o600), "token": (TOKEN, 0o600)}
    assert run.host_path("/etc/sparkgate/spark.properties") == str(run.mounts["/etc/sparkgate"] / "spark.properties")
    assert run.port("spark-connect", 1) == 15002
    assert not run.mounts["/etc/sparkgate"].exists()  # removed with the kubelet


async def test_exit_codes_make_the_phase(api: FakeKubeApi, client: AsyncClient) -> None:
    runner = python_runner("import os, sys\nprint('bye', flush=True)\nsys.exit(int(os.environ['CODE']))")
    async with FakeKubelet(api, runner):
        for name, code in (("ok", "0"), ("bad", "3")):
            spec = driver_pod(name)
            container = spec["spec"]["containers"][0]
            container["env"] = [{"name": "CODE", "value": code}]
            container.pop("readinessProbe")
            await client.create(Pod.from_dict(spec))
        ok = await api.wait_for("pods", "ok", NS, phase("Succeeded"))
        bad = await api.wait_for("pods", "bad", NS, phase("Failed"))
        assert ok is not None and bad is not None
        assert bad["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
        assert [line async for line in client.log("bad")] == ["bye\n"]  # a finished container keeps its log


async def test_restart_policy_always_restarts(api: FakeKubeApi, client: AsyncClient) -> None:
    async with FakeKubelet(api, python_runner("print('run', flush=True)")):
        spec = driver_pod(restartPolicy="Always")
        spec["spec"]["containers"][0].pop("env")
        spec["spec"]["containers"][0].pop("readinessProbe")
        await client.create(Pod.from_dict(spec))

        def restarted(pod: Obj | None) -> bool:
            statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
            return int(statuses[0].get("restartCount", 0)) >= 1

        pod = await api.wait_for("pods", "driver", NS, restarted)
        assert pod is not None and pod["status"]["phase"] == "Running"
        assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 0


async def test_kill_is_a_crash(api: FakeKubeApi, kubelet: FakeKubelet, client: AsyncClient) -> None:
    await client.create(token_secret())
    await client.create(Pod.from_dict(driver_pod()))
    await api.wait_for("pods", "driver", NS, ready)
    kubelet.kill("driver", NS)
    pod = await api.wait_for("pods", "driver", NS, phase("Failed"))
    assert pod is not None
    [status] = pod["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 137 and not status["ready"]
    assert not ready(pod)


async def test_readiness_waits_for_the_port(api: FakeKubeApi, client: AsyncClient) -> None:
    late = python_runner(
        "import os, socket, time\n"
        "time.sleep(0.6)\n"
        "s = socket.create_server((os.environ['POD_IP'], 15002))\n"
        "time.sleep(60)\n"
    )
    async with FakeKubelet(api, late, probe_interval=0.1):
        spec = driver_pod()
        spec["spec"]["containers"][0]["env"] = [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
        ]
        await client.create(Pod.from_dict(spec))
        running = await api.wait_for("pods", "driver", NS, phase("Running"))
        assert running is not None and not ready(running)
        assert await api.wait_for("pods", "driver", NS, ready)


async def test_cordon_marks_the_node_unschedulable(api: FakeKubeApi, kubelet: FakeKubelet, client: AsyncClient) -> None:
    node = await client.get(Node, kubelet.node_name)
    assert not node.spec.unschedulable
    kubelet.cordon()
    assert (await client.get(Node, kubelet.node_name)).spec.unschedulable is True
    spec = driver_pod()
    spec["spec"]["containers"][0].pop("env")
    await client.create(Pod.from_dict(spec))
    await asyncio.sleep(0.3)
    assert (await client.get(Pod, "driver")).spec.nodeName is None  # a cordoned node takes no new Pod
    kubelet.uncordon()
    assert await api.wait_for("pods", "driver", NS, ready)


async def test_a_kubelet_takes_only_the_pods_its_selector_matches(api: FakeKubeApi, client: AsyncClient) -> None:
    async with FakeKubelet(api, python_runner("import time; time.sleep(60)"), selector="role=driver"):
        for name, labels in (("mine", {"role": "driver"}), ("other", {"role": "job"})):
            spec = driver_pod(name)
            spec["metadata"]["labels"] = labels
            spec["spec"]["containers"][0].pop("env")
            spec["spec"]["containers"][0].pop("readinessProbe")
            await client.create(Pod.from_dict(spec))
        assert await api.wait_for("pods", "mine", NS, phase("Running"))
        other = await client.get(Pod, "other")
        assert other.status.phase == "Pending" and other.spec.nodeName is None


async def test_closing_the_kubelet_kills_its_processes(api: FakeKubeApi, client: AsyncClient) -> None:
    async with FakeKubelet(api, python_runner("import time; time.sleep(60)")) as kubelet:
        spec = driver_pod()
        spec["spec"]["containers"][0].pop("env")
        spec["spec"]["containers"][0].pop("readinessProbe")
        await client.create(Pod.from_dict(spec))
        pod = await api.wait_for("pods", "driver", NS, phase("Running"))
        assert pod is not None
        pid = pid_of(pod)
        assert kubelet.ip_of("driver", NS) == pod["status"]["podIP"]
    assert not pid_alive(pid)
    leftover = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("kubelet")]
    assert leftover == []


async def test_followed_logs_stream_until_the_container_ends(api: FakeKubeApi, client: AsyncClient) -> None:
    script = "import time\nfor i in range(3):\n    print(f'line {i}', flush=True)\n    time.sleep(0.2)\n"
    async with FakeKubelet(api, python_runner(script)):
        spec = driver_pod()
        spec["spec"]["containers"][0].pop("env")
        spec["spec"]["containers"][0].pop("readinessProbe")
        await client.create(Pod.from_dict(spec))
        await api.wait_for("pods", "driver", NS, phase("Running"))
        lines = [line async for line in client.log("driver", follow=True)]
    assert lines == ["line 0\n", "line 1\n", "line 2\n"]


# -- a real Spark Connect server in a Pod ---------------------------------------------------------

SPARK_SUBMIT_ARGS = [
    "--master",
    "k8s://https://kubernetes.default.svc",
    "--deploy-mode",
    "client",
    "--name",
    "sparkgate-$(POD_NAME)",
    "--properties-file",
    "/etc/sparkgate/spark.properties",
    "--load-spark-defaults",
    "--conf",
    "spark.kubernetes.driver.pod.name=$(POD_NAME)",
    "--conf",
    "spark.driver.host=$(POD_IP)",
    "--conf",
    "spark.connect.grpc.binding.port=15002",
    "--class",
    "org.apache.spark.sql.connect.service.SparkConnectServer",
    "spark-internal",
]


def _count_with_pyspark(ip: str) -> int:
    from pyspark.sql import SparkSession

    # pyspark sends a `token=` only over TLS (or to "localhost"): on plaintext, the header itself.
    spark = SparkSession.builder.remote(f"sc://{ip}:15002/;authorization=Bearer%20{TOKEN}").create()
    try:
        return int(spark.range(3).count())
    finally:
        spark.stop()


@pytest.mark.spark
async def test_a_real_spark_connect_server_runs_in_a_pod(api: FakeKubeApi, client: AsyncClient) -> None:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("needs a Java runtime")
    from sparkgate.testing.kube import spark_connect_runner

    properties = "spark.kubernetes.container.image=apache/spark:4.1.0\nspark.sql.shuffle.partitions=2\n"
    await client.create(
        Secret.from_dict(
            {"metadata": {"name": "driver-conf"}, "stringData": {"spark.properties": properties, "token": TOKEN}}
        )
    )
    spec = driver_pod()
    container = spec["spec"]["containers"][0]
    container["command"] = ["/opt/spark/bin/spark-submit"]
    container["args"] = SPARK_SUBMIT_ARGS
    container["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {
            "name": "SPARK_CONNECT_AUTHENTICATE_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "driver-conf", "key": "token"}},
        },
    ]
    container["volumeMounts"] = [{"name": "conf", "mountPath": "/etc/sparkgate", "readOnly": True}]
    spec["spec"]["volumes"] = [{"name": "conf", "secret": {"secretName": "driver-conf"}}]
    async with FakeKubelet(api, spark_connect_runner, probe_interval=0.25):
        await client.create(Pod.from_dict(spec))
        pod = await api.wait_for("pods", "driver", NS, ready, timeout=90)
        assert pod is not None
        ip = pod["status"]["podIP"]
        async with grpc.aio.insecure_channel(f"{ip}:15002") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary(CONFIG)(b"")
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert await asyncio.to_thread(_count_with_pyspark, ip) == 3
        pid = pid_of(pod)
        await client.delete(Pod, "driver")
        await api.wait_for("pods", "driver", NS, lambda p: p is None, timeout=30)
        assert not pid_alive(pid)


def test_an_image_runner_runs_the_pods_command_in_its_image(tmp_path: Path) -> None:
    """What buildah is asked to run (tests/deploy/test_images.py runs it): the Pod's mounts, made
    readable as a kubelet's default mode makes them, its environment, its name as host name, and
    the spark-submit of the image with paths as the container sees them."""
    from sparkgate.testing.kube import ImageRunner, PodRun, SparkSubmitRunner

    conf = tmp_path / "conf"
    conf.mkdir(mode=0o700)
    (conf / "spark.properties").write_text("spark.kubernetes.x=1\n")
    (conf / "spark.properties").chmod(0o600)
    container = {"name": "driver", "image": "registry/spark:1"}
    pod = {"metadata": {"name": "drv-1", "namespace": "ns"}, "spec": {"containers": [container]}}
    run = PodRun(
        pod=pod,
        container=container,
        ip="127.0.0.7",
        env={"TOKEN": "t"},
        command=("/opt/entrypoint.sh", "/opt/spark/bin/spark-submit"),
        args=("--master", "k8s://x", "--properties-file", "/etc/conf/spark.properties", "--class", "Main", "x.jar"),
        mounts={"/etc/conf": conf},
        workdir=tmp_path / "work",
    )
    local = SparkSubmitRunner(spark_submit="/opt/spark/bin/spark-submit")
    argv = ImageRunner({"registry/spark:1": "ctr-1"}, command=local, buildah=("buildah", "--root", "/r"))(run)
    head, _, inner = " ".join(argv).partition(" ctr-1 -- ")
    assert head.startswith("unshare --pid --fork --kill-child buildah --root /r run --isolation chroot --network host")
    assert "--hostname drv-1 --no-hosts" in head
    assert f"--volume {conf}:/etc/conf" in head and "--env TOKEN=t" in head
    assert (tmp_path / "work" / "hosts").read_text() == "127.0.0.1\tlocalhost\n127.0.0.7\tdrv-1\n"
    assert (conf.stat().st_mode & 0o777, (conf / "spark.properties").stat().st_mode & 0o777) == (0o755, 0o644)
    # Through the image's entrypoint, with paths as the container sees them.
    spark_submit = "/opt/entrypoint.sh /opt/spark/bin/spark-submit --properties-file /etc/conf/spark.properties"
    assert inner.startswith(f"{spark_submit} --master local[1]") and inner.endswith("--class Main x.jar")
    with pytest.raises(ValueError, match="no working container"):
        ImageRunner({}, command=local)(run)
