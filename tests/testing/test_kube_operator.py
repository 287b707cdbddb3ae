"""The fake Spark Operator moves SparkApplications through the operator's states, with a driver Pod
each, deletes them at their TTL, and stops the driver of a deleted application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod

from sparkgate.aio import pid_alive
from sparkgate.testing.kube import FakeKubeApi, FakeSparkOperator, Runner, python_runner

NS = "jobs"
SparkApplication = create_namespaced_resource(
    "sparkoperator.k8s.io", "v1beta2", "SparkApplication", "sparkapplications"
)

Obj = dict[str, Any]


def application(name: str, **spec: Any) -> Any:
    base = {
        "type": "Python",
        "mode": "cluster",
        "sparkVersion": "4.1.0",
        "image": "apache/spark:4.1.0",
        "mainApplicationFile": "local:///opt/jobs/etl.py",
        "arguments": ["--day", "2024-06-01"],
        "restartPolicy": {"type": "Never"},
        "driver": {"cores": 1, "memory": "512m", "labels": {"team": "fe"}},
        "executor": {"instances": 1},
    }
    body = {"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication", "metadata": {"name": name}}
    return SparkApplication.from_dict(body | {"spec": base | spec})


def state(app: Obj | None) -> str | None:
    if app is None:
        return None
    return str(((app.get("status") or {}).get("applicationState") or {}).get("state", ""))


def in_state(*wanted: str) -> Callable[[Obj | None], bool]:
    return lambda app: state(app) in wanted


@pytest.fixture
async def client(api: FakeKubeApi) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(config=api.kubeconfig(NS)) as c:
        yield c


async def states_of(api: FakeKubeApi, name: str, until: str) -> list[str | None]:
    """Every state the application passes through (None: it does not exist), from now until ``until``."""
    seen: list[str | None] = []

    def record(app: Obj | None) -> bool:
        current = state(app)
        if not seen or seen[-1] != current:
            seen.append(current)
        return current == until or (app is None and len(seen) > 1)

    await api.wait_for("sparkapplications", name, NS, record, timeout=15)
    return seen


async def test_an_application_runs_to_completion_then_goes_at_its_ttl(api: FakeKubeApi, client: AsyncClient) -> None:
    async with FakeSparkOperator(api):
        watching = asyncio.create_task(states_of(api, "etl", until="COMPLETED"))
        await asyncio.sleep(0)  # (the watch starts before the application exists)
        await client.create(application("etl", timeToLiveSeconds=1))
        assert await watching == [None, "", "SUBMITTED", "RUNNING", "SUCCEEDING", "COMPLETED"]

        app = await client.get(SparkApplication, "etl")
        status = app.status
        assert status["driverInfo"]["podName"] == "etl-driver"
        assert status["submissionAttempts"] == 1 and status["executionAttempts"] == 1
        assert status["lastSubmissionAttemptTime"] and status["terminationTime"] and status["submissionID"]
        driver = await client.get(Pod, "etl-driver")
        assert status["sparkApplicationId"] == driver.metadata.labels["spark-app-selector"]
        assert driver.metadata.labels["spark-role"] == "driver"
        assert driver.metadata.labels["sparkoperator.k8s.io/app-name"] == "etl"
        assert driver.metadata.labels["team"] == "fe"
        [owner] = driver.metadata.ownerReferences
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            "SparkApplication",
            "etl",
            app.metadata.uid,
            True,
        )
        assert driver.status.phase == "Succeeded"
        assert driver.spec.containers[0].args[-3:] == ["local:///opt/jobs/etl.py", "--day", "2024-06-01"]
        log = [line async for line in client.log("etl-driver")]
        assert log[-1] == "fake driver: done\n"

        assert await api.wait_for("sparkapplications", "etl", NS, lambda a: a is None, timeout=5) is None
        assert await api.wait_for("pods", "etl-driver", NS, lambda p: p is None) is None  # garbage collected


async def test_a_failing_driver_fails_the_application(api: FakeKubeApi, client: AsyncClient) -> None:
    failing: Runner = python_runner("import sys\nprint('boom', flush=True)\nsys.exit(3)")
    async with FakeSparkOperator(api, failing):
        await client.create(application("etl"))
        app = await api.wait_for("sparkapplications", "etl", NS, in_state("FAILED"))
    assert app is not None
    assert (
        app["status"]["applicationState"]["errorMessage"] == "driver container failed with ExitCode: 3, Reason: Error"
    )
    assert app["status"]["terminationTime"]


async def test_deleting_a_running_application_stops_its_driver(api: FakeKubeApi, client: AsyncClient) -> None:
    async with FakeSparkOperator(api, python_runner("import time\ntime.sleep(60)")):
        await client.create(application("etl"))
        await api.wait_for("sparkapplications", "etl", NS, in_state("RUNNING"))
        driver = api.get_object("pods", "etl-driver", NS)
        assert driver is not None
        pid = int(driver["status"]["containerStatuses"][0]["containerID"].removeprefix("fake://"))
        assert pid_alive(pid)
        await client.delete(SparkApplication, "etl")
        assert await api.wait_for("pods", "etl-driver", NS, lambda p: p is None) is None
        assert not pid_alive(pid)


async def test_a_failed_submission(api: FakeKubeApi, client: AsyncClient) -> None:
    async with FakeSparkOperator(api) as operator:
        operator.fail_next_submission("spark-submit: cannot reach the API server")
        await client.create(application("etl"))
        assert await states_of(api, "etl", until="FAILED") in (
            [None, "SUBMISSION_FAILED", "FAILED"],
            ["SUBMISSION_FAILED", "FAILED"],
            ["FAILED"],
        )
        app = await client.get(SparkApplication, "etl")
    assert app.status["applicationState"]["errorMessage"] == "spark-submit: cannot reach the API server"
    assert api.get_object("pods", "etl-driver", NS) is None


async def test_a_driver_pod_deleted_under_the_application_fails_it(api: FakeKubeApi, client: AsyncClient) -> None:
    async with FakeSparkOperator(api, python_runner("import time\ntime.sleep(60)")):
        await client.create(application("etl", driver={"podName": "custom-driver"}))
        await api.wait_for("sparkapplications", "etl", NS, in_state("RUNNING"))
        await client.delete(Pod, "custom-driver", grace_period=0)
        app = await api.wait_for("sparkapplications", "etl", NS, in_state("FAILED"))
    assert app is not None and app["status"]["applicationState"]["errorMessage"] == "driver pod not found"
