"""The policy that keeps a driver's service account to its own executors, evaluated with a CEL
interpreter (cel-python) on the requests Spark's scheduler makes and on those user code on a
driver could try. (The API server's own CEL has Kubernetes' extensions; the policy uses none.)"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import pytest

from tests.deploy.test_chart import FULLNAME, NAMESPACE, rendered

DRIVER_UID = "5e1c6a2e-0000-4000-8000-000000000001"
OTHER_UID = "5e1c6a2e-0000-4000-8000-000000000002"
DRIVER_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}-driver"

#: An executor Pod as Spark's Kubernetes scheduler creates it (client mode, after the API
#: server's ServiceAccount admission added the projected token volume).
EXECUTOR: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "sparkgate-driver-ab12-exec-1",
        "labels": {"spark-role": "executor", "spark-app-selector": "spark-1234", "spark-exec-id": "1"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "sparkgate-driver-ab12", "uid": DRIVER_UID}],
    },
    "spec": {
        "serviceAccountName": "default",
        "containers": [
            {
                "name": "spark-kubernetes-executor",
                "image": "ghcr.io/sparkgate/spark-driver:4.1.4",
                "env": [
                    {"name": "SPARK_EXECUTOR_ID", "value": "1"},
                    {"name": "SPARK_EXECUTOR_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                ],
                "volumeMounts": [{"name": "spark-local-dir-1", "mountPath": "/var/data/spark-1"}],
            }
        ],
        "volumes": [
            {"name": "spark-local-dir-1", "emptyDir": {}},
            {"name": "spark-conf-volume-exec", "configMap": {"name": "spark-exec-1234-conf-map"}},
            {
                "name": "kube-api-access-x1",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {"configMap": {"name": "kube-root-ca.crt"}},
                        {"downwardAPI": {"items": []}},
                    ]
                },
            },
        ],
    },
}


class Policy:
    """The rendered ValidatingAdmissionPolicy, as the API server evaluates it."""

    def __init__(self) -> None:
        (vap,) = rendered("defaults").all("ValidatingAdmissionPolicy")
        spec = vap["spec"]
        env = celpy.Environment()
        self.conditions = [env.program(env.compile(c["expression"])) for c in spec["matchConditions"]]
        self.variables = [(v["name"], env.program(env.compile(v["expression"]))) for v in spec["variables"]]
        self.validations = [(env.program(env.compile(v["expression"])), v["message"]) for v in spec["validations"]]
        self.rules = spec["matchConstraints"]["resourceRules"]
        (binding,) = rendered("defaults").all("ValidatingAdmissionPolicyBinding")
        assert binding["spec"]["policyName"] == vap["metadata"]["name"]
        assert binding["spec"]["validationActions"] == ["Deny"] and spec["failurePolicy"] == "Fail"

    def denied(
        self,
        obj: dict[str, Any] | None,
        *,
        operation: str = "CREATE",
        resource: str = "pods",
        user: str = DRIVER_ACCOUNT,
        pod_uid: str | None = DRIVER_UID,
        old: dict[str, Any] | None = None,
    ) -> list[str]:
        """Why the API server would refuse the request ([]: admitted)."""
        assert any(resource in r["resources"] and operation in r["operations"] for r in self.rules)
        extra = {"authentication.kubernetes.io/pod-uid": [pod_uid]} if pod_uid else {}
        request = {
            "operation": operation,
            "resource": {"group": "", "version": "v1", "resource": resource},
            "userInfo": {"username": user, "extra": extra},
        }
        activation: dict[str, Any] = {"request": request, "object": obj, "oldObject": old}
        if not all(c.evaluate(celpy.json_to_cel(activation)) for c in self.conditions):
            return []  # (not a driver's request: the policy does not apply)
        variables = {}
        for name, program in self.variables:
            variables[name] = program.evaluate(celpy.json_to_cel({**activation, "variables": variables}))
        cel = celpy.json_to_cel(activation)
        cel["variables"] = celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in variables.items()})
        return [message for program, message in self.validations if not program.evaluate(cel)]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy()


def changed(**paths: Any) -> dict[str, Any]:
    """The executor Pod with some fields replaced (``spec__serviceAccountName=...``)."""
    pod = copy.deepcopy(EXECUTOR)
    for path, value in paths.items():
        *parents, leaf = path.split("__")
        node = pod
        for part in parents:
            node = node[part]
        node[leaf] = value
    return pod


def test_a_driver_may_run_and_remove_its_own_executors(policy: Policy) -> None:
    assert policy.denied(EXECUTOR) == []
    assert policy.denied(None, operation="DELETE", old=EXECUTOR) == []
    conf = {
        "metadata": {"name": "spark-exec-1234-conf-map", "ownerReferences": EXECUTOR["metadata"]["ownerReferences"]}
    }
    assert policy.denied(conf, resource="configmaps") == []


@pytest.mark.parametrize(
    ("why", "request_kw"),
    [
        (
            "owned by another driver",
            {
                "obj": changed(
                    metadata__ownerReferences=[{"kind": "Pod", "name": "x", "uid": OTHER_UID, "apiVersion": "v1"}]
                )
            },
        ),
        ("owned by nothing", {"obj": changed(metadata__ownerReferences=[])}),
        ("a token not bound to a Pod", {"obj": EXECUTOR, "pod_uid": None}),
        (
            "another driver's executor deleted",
            {
                "obj": None,
                "operation": "DELETE",
                "old": changed(
                    metadata__ownerReferences=[{"kind": "Pod", "name": "x", "uid": OTHER_UID, "apiVersion": "v1"}]
                ),
            },
        ),
        (
            "a Secret mounted",
            {"obj": changed(spec__volumes=[{"name": "s", "secret": {"secretName": "sg-sparkgate-secrets"}}])},
        ),
        (
            "a Secret projected",
            {
                "obj": changed(
                    spec__volumes=[
                        {"name": "s", "projected": {"sources": [{"secret": {"name": "sparkgate-driver-zz99"}}]}}
                    ]
                )
            },
        ),
        ("a host path", {"obj": changed(spec__volumes=[{"name": "h", "hostPath": {"path": "/"}}])}),
        (
            "a Secret in the environment",
            {
                "obj": changed(
                    spec__containers=[
                        {
                            "name": "c",
                            "image": "i",
                            "env": [
                                {
                                    "name": "T",
                                    "valueFrom": {"secretKeyRef": {"name": "sparkgate-driver-zz99", "key": "token"}},
                                }
                            ],
                        }
                    ]
                )
            },
        ),
        (
            "all of a Secret in the environment",
            {
                "obj": changed(
                    spec__containers=[
                        {"name": "c", "image": "i", "envFrom": [{"secretRef": {"name": "sg-sparkgate-secrets"}}]}
                    ]
                )
            },
        ),
        (
            "privileged",
            {"obj": changed(spec__containers=[{"name": "c", "image": "i", "securityContext": {"privileged": True}}])},
        ),
        ("the node's network", {"obj": changed(spec__hostNetwork=True)}),
        ("the gateway's account", {"obj": changed(spec__serviceAccountName="sg-sparkgate-gateway")}),
        (
            "the gateway's labels",
            {
                "obj": changed(
                    metadata__labels={
                        "app.kubernetes.io/managed-by": "sparkgate",
                        "app.kubernetes.io/component": "gateway",
                    }
                )
            },
        ),
    ],
)
def test_what_user_code_on_a_driver_might_try_is_refused(policy: Policy, why: str, request_kw: dict[str, Any]) -> None:
    obj = request_kw.pop("obj")
    assert policy.denied(obj, **request_kw), why


def test_it_applies_to_the_driver_account_only(policy: Policy) -> None:
    gateway = f"system:serviceaccount:{NAMESPACE}:sg-sparkgate-gateway"
    secret_pod = changed(spec__volumes=[{"name": "s", "secret": {"secretName": "x"}}], metadata__ownerReferences=[])
    assert policy.denied(secret_pod, user=gateway) == []  # (the gateway's own Pods: its Role decides)


def test_it_can_be_left_to_an_admission_controller_of_yours() -> None:
    from tests.deploy.test_chart import render

    off = render({"driver": {"admissionPolicy": {"enabled": False}}})
    assert off.all("ValidatingAdmissionPolicy") == [] and off.all("ValidatingAdmissionPolicyBinding") == []
