"""The permissions sparkgate asks for (``sparkgate.kube.rbac``, which the Helm chart's Roles are
checked against) are exactly those its code uses: driver Pods started, claimed, read, stopped and
watched, a failed start's log, the fleet Lease, Nodes, and a batch job as a SparkApplication run and
cancelled — every request counted by the fake API server."""

from __future__ import annotations

from pathlib import Path

from sparkgate.clusters.base import Driver
from sparkgate.clusters.kubernetes import KubernetesProvider
from sparkgate.clusters.manager import ClusterManager
from sparkgate.kube import rbac
from sparkgate.kube.api import KubeApi
from sparkgate.kube.lease import KubeLease
from sparkgate.runner.proto import spark_runner_pb2 as pb
from sparkgate.testing.kube import FakeKubelet, fake_connect_runner
from tests.clusters.test_kubernetes import k8s_settings, token_key
from tests.runner.backends.test_kubernetes import NAMESPACE, cluster, runner_on, submit, wait_for


async def test_the_rules_are_exactly_what_the_gateway_and_the_runner_use(tmp_path: Path) -> None:
    key = token_key(tmp_path)
    async with cluster(tmp_path) as c, FakeKubelet(c.fake, fake_connect_runner, namespace=NAMESPACE):
        async with KubeApi(c.fake.kubeconfig(), namespace=NAMESPACE) as client:
            # The gateway: a warm Pod started, claimed, read, stopped.
            async with KubernetesProvider(k8s_settings(key, namespace=NAMESPACE), api=client) as provider:
                cm = ClusterManager(provider, pool_size=1, max_drivers=4)
                await cm.start()
                await cm.wait_pool_ready(timeout=30)
                (warm,) = cm.warm()
                assert await provider.claim(warm, "sjns-fe-prod") == "sjns-fe-prod"
                gone = Driver(id="sparkgate-driver-gone", address="", provider="kubernetes")
                assert await provider.claim(gone, "sjns-fe-prod") == ""  # (read from the API: not there)
                await cm.close()
            # The fleet Lease: created, renewed.
            lease = KubeLease(lambda: client, "sparkgate-fleet", "a", lease_seconds=5)
            await lease.campaign()
            await lease.campaign()
            assert lease.is_leader()
        # The runner: a batch job applied, watched, its driver's log read; another cancelled.
        async with runner_on(c) as s:
            done = await submit(s.stub)
            await wait_for(s.stub, done, lambda r: r.state == "COMPLETED")
            job = await submit(s.stub, seconds="30")
            await wait_for(s.stub, job, lambda r: r.state == "RUNNING")
            await s.stub.Cancel(pb.CancelRequest(job_id=job))
            await wait_for(s.stub, job, lambda r: r.state == "CANCELLED")
    used = c.fake.seen
    allowed = rbac.pairs(rbac.GATEWAY_RULES + rbac.GATEWAY_CLUSTER_RULES)
    assert used == allowed, {"asked for, never used": allowed - used, "used, not allowed": used - allowed}
