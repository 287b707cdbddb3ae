"""A Kubernetes cluster in a test: a fake API server, kubelets that run Pods as local processes, and a
fake Spark Operator.

    async with (
        FakeKubeApi() as api,
        FakeKubelet(api, fake_connect_runner) as kubelet,
        FakeSparkOperator(api) as operator,
        lightkube.AsyncClient(config=api.kubeconfig()) as client,
    ):
        ...

* :class:`FakeKubeApi` (:mod:`.apiserver`) — a real HTTP server on loopback speaking the Kubernetes
  REST API for the resources sparkgate uses: Pods (with ``status`` and ``log``), Secrets,
  ConfigMaps, Services, PodDisruptionBudgets, Leases, Nodes and SparkApplications. Verbs, errors,
  watches, patches, deletion and garbage collection follow the real server (:mod:`.store`); every
  write is schema-checked (:mod:`.validation`).
* :class:`FakeKubelet` (:mod:`.kubelet`, :mod:`.pods`) — runs each Pod as a local process on a
  loopback IP of its own, resolving its environment and Secret volumes like a kubelet
  (:mod:`.containers`); what runs is a :data:`Runner` (:mod:`.runners`).
* :class:`FakeSparkOperator` (:mod:`.operator`) — drives SparkApplications through the Kubeflow
  Spark Operator's states, with a driver Pod each.

What none of it proves is listed in each module's docstring; in short: authentication and
authorization, admission, scheduling, networking beyond loopback, field ownership in server-side
apply, container isolation, and real timing.
"""

from sparkgate.testing.kube.apiserver import FakeKubeApi
from sparkgate.testing.kube.kubelet import FakeKubelet, allocate_pod_ip
from sparkgate.testing.kube.operator import FakeSparkOperator, default_driver_runner
from sparkgate.testing.kube.resources import RESOURCES, ResourceType
from sparkgate.testing.kube.runners import (
    ImageRunner,
    PodRun,
    Runner,
    SparkSubmitRunner,
    fake_connect_runner,
    python_runner,
    spark_connect_runner,
)
from sparkgate.testing.kube.status import ApiStatusError
from sparkgate.testing.kube.streams import NodeAgent
from sparkgate.testing.kube.watch import Watch, WatchEvent

__all__ = [
    "RESOURCES",
    "ApiStatusError",
    "FakeKubeApi",
    "FakeKubelet",
    "FakeSparkOperator",
    "ImageRunner",
    "NodeAgent",
    "PodRun",
    "ResourceType",
    "Runner",
    "SparkSubmitRunner",
    "Watch",
    "WatchEvent",
    "allocate_pod_ip",
    "default_driver_runner",
    "fake_connect_runner",
    "python_runner",
    "spark_connect_runner",
]
