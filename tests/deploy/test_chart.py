"""The Helm chart (deploy/helm/sparkgate), rendered offline as `helm install` would render it.

helm-python-sdk renders the chart with Helm's own engine (no helm binary, no cluster), for the
chart's defaults and each example values file. Every object is checked against Kubernetes' own
schemas, then the properties operators rely on: the rollout and drain timings, probes, security,
the Services, RBAC equal to ``sparkgate.kube.rbac``, the network policies, the disruption budgets,
the autoscaler, and a sparkgate.yaml that sparkgate itself loads, with no secret in it.
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from sparkgate.clusters import driver_pod
from sparkgate.config import Settings, load_settings
from sparkgate.kube import rbac
from tests.kube.test_security import restricted_problems

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "sparkgate"
EXAMPLES = ROOT / "deploy" / "helm" / "values"
RELEASE, NAMESPACE = "sg", "spark"
#: The oldest Kubernetes the chart claims (Chart.yaml kubeVersion) and the one it is pinned to.
KUBE_VERSIONS = ("1.30", "1.33")
#: The chart's defaults, and each example values file.
VALUE_SETS = ("defaults", "single", "ha")
#: Every optional part of the chart at once (checked as Kubernetes objects, not for behaviour).
EVERY_OPTION: dict[str, Any] = {
    "image": {"digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "state": {"backend": "redis", "redis": {"existingSecret": "ops-redis"}},
    "gateway": {
        "workers": 2,
        "service": {"type": "LoadBalancer", "annotations": {"example.com/lb": "internal"}},
        "autoscaling": {"enabled": True},
        "serviceAccount": {"annotations": {"example.com/role": "gateway"}},
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "system", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "podAnnotations": {"example.com/scrape": "true"},
        "podLabels": {"team": "platform"},
    },
    "driver": {"tokenKey": {"existingSecret": "ops-drivers"}, "image": {"digest": "sha256:" + "b" * 64}},
    "runner": {"database": {"url": "postgresql+psycopg://u:p@pg/jobs"}, "persistence": {"enabled": False}},
    "playground": {"replicas": 2, "service": {"type": "NodePort"}},
    "auth": {"tokensSecret": "gw-tokens"},
    "tls": {"secretName": "gw-tls", "clientCA": True},
    "extraEnv": [{"name": "SPARKGATE__LOG_LEVEL", "value": "DEBUG"}],
    "networkPolicy": {"grpcFrom": [{"namespaceSelector": {"matchLabels": {"team": "data"}}}]},
    "config": {"auth": {"mode": "static"}},
}
#: What the chart's objects are called for RELEASE.
FULLNAME = f"{RELEASE}-sparkgate"

Obj = dict[str, Any]


def _values(name: str) -> dict[str, Any]:
    if name == "every-option":
        return EVERY_OPTION
    return {} if name == "defaults" else yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


@dataclass(frozen=True)
class Rendered:
    objects: list[Obj]
    notes: str

    def all(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
        return found[0]

    def find(self, kind: str, name: str) -> Obj | None:
        return next((o for o in self.all(kind) if o["metadata"]["name"] == name), None)

    def secret_value(self, name: str, key: str) -> str | None:
        secret = self.find("Secret", name)
        if secret is None or key not in secret.get("data", {}):
            return None
        return base64.b64decode(secret["data"][key]).decode()

    def config_text(self) -> str:
        return str(self.get("ConfigMap", f"{FULLNAME}-config")["data"]["sparkgate.yaml"])


def render(values: dict[str, Any] | None = None) -> Rendered:
    """The chart as `helm install sg deploy/helm/sparkgate -n spark` renders it (values are
    checked against values.schema.json first, as Helm does)."""
    with helm_python.Chart.load(CHART) as chart:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = [
        doc
        for path, text in sorted(out.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    notes = next((text for path, text in out.items() if path.endswith("NOTES.txt")), "")
    return Rendered(objects, notes)


@functools.cache
def rendered(name: str) -> Rendered:
    return render(_values(name))


def refusal(values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmError) as caught:
        render(values)
    return str(caught.value)


def pod_spec(deployment: Obj) -> Obj:
    return deployment["spec"]["template"]["spec"]


def container(deployment: Obj, name: str | None = None) -> Obj:
    containers = pod_spec(deployment)["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "these tests read matchLabels only"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def pod_labels(deployment: Obj) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def gateway(r: Rendered) -> Obj:
    return r.get("Deployment", f"{FULLNAME}-gateway")


def container_env(r: Rendered, c: Obj) -> dict[str, str]:
    """The container's environment as its process sees it: Secret references resolved from the
    rendered Secrets (a Secret of the user's own stands in as a placeholder URL)."""
    env: dict[str, str] = {}
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        value = r.secret_value(ref["name"], ref["key"])
        env[var["name"]] = value if value is not None else "redis://:placeholder@redis.example:6379/0"
    return env


def load_rendered_settings(r: Rendered, tmp_path: Path, component: str = "gateway") -> Settings:
    """sparkgate's own loader on the rendered file, with the container's environment."""
    deployment = r.get("Deployment", f"{FULLNAME}-{component}")
    c = container(deployment)
    config_file = c["args"][c["args"].index("--config") + 1]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    (config_volume,) = [name for name, v in volumes.items() if "configMap" in v]
    assert volumes[config_volume]["configMap"]["name"] == f"{FULLNAME}-config"
    assert config_file == f"{mounts[config_volume]}/sparkgate.yaml", "--config names the ConfigMap's file"
    path = tmp_path / "sparkgate.yaml"
    path.write_text(r.config_text())
    return load_settings(path, environ=container_env(r, c))


# -- values and schema ---------------------------------------------------------------------------


SCHEMA = json.loads((CHART / "values.schema.json").read_text())


@pytest.mark.parametrize("name", ["values.yaml", "single.yaml", "ha.yaml"])
def test_each_values_file_matches_the_schema(name: str) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    path = CHART / name if name == "values.yaml" else EXAMPLES / name
    jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize(
    "values",
    [
        {"gatewy": {"replicas": 2}},
        {"gateway": {"replica": 2}},
        {"gateway": {"autoscaling": {"enabled": True, "minReplica": 3}}},
        {"runner": {"database": {"password": "x"}}},
    ],
    ids=["top level", "gateway", "autoscaling", "runner.database"],
)
def test_an_unknown_key_is_refused(values: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        jsonschema.validate(values, SCHEMA, cls=jsonschema.Draft7Validator)
    assert "additional properties" in refusal(values), "Helm refuses it too, before rendering"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_finds_nothing(name: str) -> None:
    report = helm_python.lint(CHART, _values(name), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    # Severity 1 is advice (e.g. "icon is recommended"); 2 and above are warnings and errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# -- every object --------------------------------------------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", [*VALUE_SETS, "every-option"])
def test_every_object_is_valid_kubernetes(name: str, kube_version: str) -> None:
    r = rendered(name)
    assert r.objects
    for obj in r.objects:
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} (Kubernetes {kube_version}): {exc.message}")
        namespaced = obj["kind"] not in ("ClusterRole", "ClusterRoleBinding")
        assert "namespace" not in obj["metadata"] or not namespaced, "helm install -n sets the namespace"


@pytest.mark.parametrize("name", [*VALUE_SETS, "every-option"])
def test_pods_mount_only_what_exists(name: str) -> None:
    r = rendered(name)
    configmaps = {o["metadata"]["name"] for o in r.all("ConfigMap")}
    claims = {o["metadata"]["name"] for o in r.all("PersistentVolumeClaim")}
    accounts = {o["metadata"]["name"] for o in r.all("ServiceAccount")}
    for d in r.all("Deployment"):
        spec = pod_spec(d)
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            assert {m["name"] for m in c.get("volumeMounts", [])} <= set(volumes)
        for v in volumes.values():
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims
        assert spec.get("serviceAccountName", "default") in accounts | {"default"}


# -- the gateway Deployment ----------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_a_new_gateway_is_ready_before_an_old_one_stops(name: str) -> None:
    strategy = gateway(rendered(name))["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_grace_period_covers_the_drain(name: str, tmp_path: Path) -> None:
    r = rendered(name)
    spec = pod_spec(gateway(r))
    drain = load_rendered_settings(r, tmp_path).gateway.drain_seconds
    pre_stop = container(gateway(r))["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # SIGTERM comes after the preStop wait; then the drain, then the margin for what follows it.
    assert spec["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + drain + 30


def test_the_grace_period_follows_the_drain_setting(tmp_path: Path) -> None:
    r = render({"gateway": {"drainSeconds": 120.5, "preStopSleepSeconds": 0, "terminationMarginSeconds": 30}})
    assert load_rendered_settings(r, tmp_path).gateway.drain_seconds == 120.5
    assert pod_spec(gateway(r))["terminationGracePeriodSeconds"] == 121 + 30
    assert "lifecycle" not in container(gateway(r))


@pytest.mark.parametrize("name", VALUE_SETS)
def test_probes_ask_the_admin_endpoints(name: str, tmp_path: Path) -> None:
    r = rendered(name)
    c = container(gateway(r))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    settings = load_rendered_settings(r, tmp_path)
    assert ports == {"grpc": settings.gateway.port, "admin": settings.admin.port} == {"grpc": 15002, "admin": 9090}
    # The admin endpoints bind 127.0.0.1 unless told otherwise: the kubelet could not reach them.
    assert settings.admin.host == "0.0.0.0" and settings.admin.enabled
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}


@pytest.mark.parametrize("name", [*VALUE_SETS, "every-option"])
def test_every_pod_runs_locked_down(name: str) -> None:
    r = rendered(name)
    for d in r.all("Deployment"):
        spec = pod_spec(d)
        what = d["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, what
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, what
        assert restricted_problems(spec) == [], what  # admitted where `restricted` is enforced
        writable = {v["name"] for v in spec["volumes"] if "emptyDir" in v or "persistentVolumeClaim" in v}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, what
            assert sc["readOnlyRootFilesystem"] is True, what
            assert sc["capabilities"]["drop"] == ["ALL"], what
            assert "add" not in sc["capabilities"], what
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], what
            # With a read-only root, whatever the process writes is on a volume of its own.
            mounted = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            if c["command"] == ["sparkgate"]:
                assert mounted["/tmp"] in writable and mounted["/var/lib/sparkgate"] in writable, what
        # Only the gateway and the runner call the Kubernetes API.
        if d["metadata"]["labels"]["app.kubernetes.io/component"] not in ("gateway", "runner"):
            assert spec["automountServiceAccountToken"] is False, what


@pytest.mark.parametrize("name", VALUE_SETS)
def test_state_dir_is_the_mounted_volume(name: str, tmp_path: Path) -> None:
    r = rendered(name)
    settings = load_rendered_settings(r, tmp_path)
    mounts = {m["mountPath"] for m in container(gateway(r))["volumeMounts"]}
    assert str(settings.state_dir) in mounts


def test_without_shared_state_a_leaving_gateway_keeps_the_drivers() -> None:
    # The Pod replacing it has adopted them already (maxSurge): stopping them would end its sessions.
    assert "--keep-drivers" in container(gateway(rendered("single")))["args"]
    assert "--keep-drivers" not in container(gateway(rendered("ha")))["args"]


# -- Services ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_gateway_service_speaks_h2c(name: str) -> None:
    r = rendered(name)
    service = r.get("Service", f"{FULLNAME}-gateway")
    (grpc,) = service["spec"]["ports"]
    assert grpc["port"] == 15002 and grpc["targetPort"] == "grpc"
    assert grpc["appProtocol"] == "kubernetes.io/h2c"
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(gateway(r)))
    admin = r.get("Service", f"{FULLNAME}-gateway-admin")
    assert admin["spec"]["type"] == "ClusterIP", "never exposed with the clients' LoadBalancer"
    assert [(p["port"], p["targetPort"]) for p in admin["spec"]["ports"]] == [(9090, "admin")]


def test_with_tls_the_gateway_service_speaks_https(tmp_path: Path) -> None:
    r = render({"tls": {"secretName": "gw-tls", "clientCA": True}, "auth": {"tokensSecret": "gw-tokens"}})
    (grpc,) = r.get("Service", f"{FULLNAME}-gateway")["spec"]["ports"]
    assert grpc["appProtocol"] == "https"
    settings = load_rendered_settings(r, tmp_path)
    mounts = {m["name"]: m["mountPath"] for m in container(gateway(r))["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(gateway(r))["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "gw-tls"
    assert volumes["auth"]["secret"]["secretName"] == "gw-tokens"
    assert settings.tls.cert_file == f"{mounts['tls']}/tls.crt" and settings.tls.key_file == f"{mounts['tls']}/tls.key"
    assert settings.tls.client_ca_file == f"{mounts['tls']}/ca.crt"
    assert settings.auth.tokens_file == f"{mounts['auth']}/tokens.yaml"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_runner_and_the_playground_find_each_other(name: str, tmp_path: Path) -> None:
    r = rendered(name)
    settings = load_rendered_settings(r, tmp_path, "runner")
    runner_service = r.get("Service", f"{FULLNAME}-runner")
    assert settings.runner.host == "0.0.0.0"
    assert settings.playground.runner_target == f"{FULLNAME}-runner:{runner_service['spec']['ports'][0]['port']}"
    gateway_service = r.get("Service", f"{FULLNAME}-gateway")
    assert settings.runner.gateway_url == f"sc://{FULLNAME}-gateway:{gateway_service['spec']['ports'][0]['port']}"
    runner = r.get("Deployment", f"{FULLNAME}-runner")
    assert runner["spec"]["replicas"] == 1 and runner["spec"]["strategy"] == {"type": "Recreate"}
    assert container(runner)["args"][0] == "runner"
    playground = r.get("Deployment", f"{FULLNAME}-playground")
    assert container(playground)["args"][0] == "playground"
    assert settings.playground.host == "0.0.0.0"


def test_the_runner_and_the_playground_are_optional() -> None:
    r = render({"runner": {"enabled": False}, "playground": {"enabled": False}})
    components = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in r.all("Deployment")}
    assert components == {"gateway"}
    assert "playground.enabled needs runner.enabled" in refusal({"runner": {"enabled": False}})


# -- RBAC ----------------------------------------------------------------------------------------


def rule_pairs(role: Obj) -> set[tuple[str, str, str]]:
    pairs = set()
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"a wildcard in {role['metadata']['name']}"
                    pairs.add((group, resource, verb))
    return pairs


def bound_accounts(r: Rendered, kind: str, role: Obj) -> set[str]:
    """The service accounts (of the release namespace) bound to ``role``."""
    accounts = set()
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role["kind"], "name": role["metadata"]["name"]}
    for binding in r.all(kind):
        if binding["roleRef"] == ref:
            for subject in binding["subjects"]:
                assert subject["kind"] == "ServiceAccount" and subject["namespace"] == NAMESPACE
                accounts.add(subject["name"])
    return accounts


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rbac_is_exactly_what_sparkgate_uses(name: str, tmp_path: Path) -> None:
    r = rendered(name)
    roles = {role["metadata"]["name"].removeprefix(f"{FULLNAME}-"): role for role in r.all("Role")}
    assert set(roles) == {"gateway", "runner", "driver"}
    gateway_role, runner_role = rule_pairs(roles["gateway"]), rule_pairs(roles["runner"])
    # The gateway and the runner act in the drivers' namespace; split between them, nothing more.
    assert gateway_role | runner_role == rbac.pairs(rbac.GATEWAY_RULES)
    assert ("sparkoperator.k8s.io", "sparkapplications", "create") not in gateway_role
    assert ("", "pods", "create") not in runner_role
    (cluster_role,) = r.all("ClusterRole")
    assert rule_pairs(cluster_role) == rbac.pairs(rbac.GATEWAY_CLUSTER_RULES)
    assert rule_pairs(roles["driver"]) == rbac.pairs(rbac.DRIVER_RULES)

    gateway_sa = pod_spec(gateway(r))["serviceAccountName"]
    runner_sa = pod_spec(r.get("Deployment", f"{FULLNAME}-runner"))["serviceAccountName"]
    assert bound_accounts(r, "RoleBinding", roles["gateway"]) == {gateway_sa}
    assert bound_accounts(r, "ClusterRoleBinding", cluster_role) == {gateway_sa}
    assert bound_accounts(r, "RoleBinding", roles["runner"]) == {runner_sa}
    # Driver Pods and SparkApplication drivers run as the account the driver Role is bound to.
    settings = load_rendered_settings(r, tmp_path)
    driver_accounts = bound_accounts(r, "RoleBinding", roles["driver"])
    assert driver_accounts == {settings.kubernetes.pod.service_account} == {settings.runner.kubernetes.service_account}
    assert driver_accounts <= {sa["metadata"]["name"] for sa in r.all("ServiceAccount")}
    # Drivers run where the Roles are.
    assert settings.kubernetes.namespace == NAMESPACE


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    r = render({"rbac": {"create": False}})
    assert not [o for o in r.objects if o["apiVersion"].startswith("rbac.authorization.k8s.io/")]


# -- network policies ----------------------------------------------------------------------------

#: How the gateway labels its driver Pods (sparkgate.clusters.driver_pod).
DRIVER_LABELS = dict(label.split("=") for label in driver_pod.selector(RELEASE).split(","))
EXECUTOR_LABELS = {"spark-role": "executor", "spark-app-selector": "spark-1234"}


def allowed(policy: Obj, source_labels: dict[str, str] | None, port: int) -> bool:
    """Whether ``policy`` lets a Pod of the namespace with these labels (None: anything anywhere)
    connect to ``port`` of the Pods it selects."""
    for rule in policy["spec"].get("ingress", []):
        if rule.get("ports") and port not in {p["port"] for p in rule["ports"]}:
            continue
        peers = rule.get("from")
        if not peers:
            return True
        for peer in peers:
            if source_labels is None:
                continue
            if set(peer) == {"podSelector"} and selects(peer["podSelector"], source_labels):
                return True
    return False


def policy_for(r: Rendered, labels: dict[str, str]) -> Obj:
    (policy,) = [p for p in r.all("NetworkPolicy") if selects(p["spec"]["podSelector"], labels)]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    return policy


@pytest.mark.parametrize("name", VALUE_SETS)
def test_drivers_take_spark_connect_only_from_gateways(name: str) -> None:
    r = rendered(name)
    drivers = policy_for(r, DRIVER_LABELS)
    gateway_pod = pod_labels(gateway(r))
    runner_pod = pod_labels(r.get("Deployment", f"{FULLNAME}-runner"))
    connect = driver_pod.CONNECT_PORT
    assert allowed(drivers, gateway_pod, connect)
    for other in (None, runner_pod, EXECUTOR_LABELS, {"app": "notebook"}):
        assert not allowed(drivers, other, connect), other
    # Executors call their driver back: the driver RPC and block manager ports driver Pods fix.
    for port in (driver_pod.DRIVER_PORT, driver_pod.BLOCK_MANAGER_PORT):
        assert allowed(drivers, EXECUTOR_LABELS, port)
        assert not allowed(drivers, {"app": "notebook"}, port)
    assert not allowed(drivers, EXECUTOR_LABELS, driver_pod.UI_PORT)
    # The gateway's own Pods are not drivers.
    assert not selects(drivers["spec"]["podSelector"], gateway_pod)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_gateway_takes_spark_connect_from_anywhere_and_admin_from_the_namespace(name: str) -> None:
    r = rendered(name)
    policy = policy_for(r, pod_labels(gateway(r)))
    assert allowed(policy, None, 15002)
    assert allowed(policy, {"app": "prometheus"}, 9090)
    assert not allowed(policy, None, 9090)


def test_who_reaches_the_gateway_is_configurable() -> None:
    notebooks = {"podSelector": {"matchLabels": {"app": "jupyter"}}}
    r = render({"networkPolicy": {"grpcFrom": [notebooks], "adminFrom": [notebooks]}})
    policy = policy_for(r, pod_labels(gateway(r)))
    assert allowed(policy, {"app": "jupyter"}, 15002) and allowed(policy, {"app": "jupyter"}, 9090)
    assert not allowed(policy, {"app": "other"}, 15002) and not allowed(policy, None, 15002)
    # The runner's jobs go through the gateway whatever the list says.
    assert allowed(policy, pod_labels(r.get("Deployment", f"{FULLNAME}-runner")), 15002)
    assert not render({"networkPolicy": {"enabled": False}}).all("NetworkPolicy")


def test_only_gateways_reach_the_dev_redis() -> None:
    r = rendered("ha")
    redis = r.get("Deployment", f"{FULLNAME}-redis")
    policy = policy_for(r, pod_labels(redis))
    assert allowed(policy, pod_labels(gateway(r)), 6379)
    assert not allowed(policy, pod_labels(r.get("Deployment", f"{FULLNAME}-runner")), 6379)


# -- disruption budgets, autoscaling -------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_node_drains_take_one_gateway_at_a_time(name: str) -> None:
    r = rendered(name)
    pdb = r.get("PodDisruptionBudget", f"{FULLNAME}-gateway")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(pdb["spec"]["selector"], pod_labels(gateway(r)))


@pytest.mark.parametrize("name", VALUE_SETS)
def test_node_drains_wait_for_busy_drivers(name: str) -> None:
    r = rendered(name)
    pdb = r.get("PodDisruptionBudget", f"{FULLNAME}-busy-drivers")
    assert pdb["spec"]["selector"] == {"matchLabels": {**DRIVER_LABELS, driver_pod.BUSY: "true"}}
    # Driver Pods have no controller: an integer minAvailable is the budget Kubernetes defines
    # for them, and none larger can be reached, so no busy driver is evicted.
    assert "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["minAvailable"] == 2**31 - 1
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert not selects(pdb["spec"]["selector"], DRIVER_LABELS), "idle drivers may go"
    assert not selects(pdb["spec"]["selector"], pod_labels(gateway(r)))


def test_busy_drivers_are_let_go_after_the_grace(tmp_path: Path) -> None:
    r = render({"driver": {"drainGraceSeconds": 900}})
    assert load_rendered_settings(r, tmp_path).kubernetes.drain_grace_seconds == 900


def test_ha_scales_gateways_up_fast_and_down_slowly() -> None:
    r = rendered("ha")
    (hpa,) = r.all("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", gateway(r)["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 3
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 600
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]
    # The autoscaler owns the count: an upgrade must not reset it.
    assert "replicas" not in gateway(r)["spec"]


def test_without_autoscaling_the_replicas_are_fixed() -> None:
    assert not rendered("single").all("HorizontalPodAutoscaler")
    assert gateway(rendered("single"))["spec"]["replicas"] == 1
    shared = {"backend": "redis", "redis": {"url": "redis://r:6379/0"}}
    assert gateway(render({"state": shared, "gateway": {"replicas": 4}}))["spec"]["replicas"] == 4


# -- sparkgate.yaml ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*VALUE_SETS, "every-option"])
def test_sparkgate_loads_the_rendered_config(name: str, tmp_path: Path) -> None:
    r = rendered(name)
    settings = load_rendered_settings(r, tmp_path)
    assert settings.environments and all(env.provider == "kubernetes" for env in settings.environments.values())
    assert settings.kubernetes.namespace == NAMESPACE
    assert settings.kubernetes.kubeconfig is None, "in the cluster: the Pod's service account"
    assert settings.gateway.host == "0.0.0.0"
    # Never sparkgate's own default, which counts the node's cores rather than the Pod's.
    assert settings.gateway.workers == _values(name).get("gateway", {}).get("workers", 1)
    assert settings.state.backend == _values(name).get("state", {}).get("backend", "local")
    assert settings.runner.backend == "kubernetes", "batch jobs as SparkApplications"
    assert settings.log_level == ("DEBUG" if name == "every-option" else "INFO"), "extraEnv is applied"
    driver_image = settings.kubernetes.pod.image
    assert driver_image.startswith(("ghcr.io/sparkgate/spark-driver:", "ghcr.io/sparkgate/spark-driver@sha256:"))
    assert settings.runner.kubernetes.images["default"] == driver_image
    # The runner and the Playground load the same file with their own environment.
    load_rendered_settings(r, tmp_path, "runner")
    load_rendered_settings(r, tmp_path, "playground")


def test_ha_gateways_share_state_in_the_dev_redis(tmp_path: Path) -> None:
    r = rendered("ha")
    settings = load_rendered_settings(r, tmp_path)
    assert settings.state.backend == "redis"
    secret = f"{FULLNAME}-secrets"
    password = r.secret_value(secret, "redis-password")
    assert password and settings.state.redis_url == f"redis://:{password}@{FULLNAME}-redis:6379/0"
    redis = container(r.get("Deployment", f"{FULLNAME}-redis"))
    from_secret = {"secretKeyRef": {"name": secret, "key": "redis-password"}}
    assert {"name": "REDIS_PASSWORD", "valueFrom": from_secret} in redis["env"]
    assert "$(REDIS_PASSWORD)" in redis["args"]
    assert r.get("Service", f"{FULLNAME}-redis")["spec"]["ports"][0]["port"] == 6379


SECRETS = {
    "state": {"backend": "redis", "redis": {"url": "redis://:redis-pw-1729@redis.example:6379/0"}},
    "runner": {"database": {"url": "postgresql+psycopg://jobs:db-pw-1729@pg.example/jobs"}},
}


def test_secrets_stay_out_of_the_configmap(tmp_path: Path) -> None:
    r = render(SECRETS)
    for cm in r.all("ConfigMap"):
        assert "pw-1729" not in json.dumps(cm), cm["metadata"]["name"]
    for d in r.all("Deployment"):
        assert "pw-1729" not in json.dumps(d), "secrets reach containers by reference only"
    assert r.secret_value(f"{FULLNAME}-secrets", "redis-url") == SECRETS["state"]["redis"]["url"]
    assert load_rendered_settings(r, tmp_path).state.redis_url == SECRETS["state"]["redis"]["url"]
    runner = load_rendered_settings(r, tmp_path, "runner")
    assert runner.runner.database_url == SECRETS["runner"]["database"]["url"]
    playground_env = container(r.get("Deployment", f"{FULLNAME}-playground"))["env"]
    assert not [e for e in playground_env if "valueFrom" in e], "the Playground needs neither secret"


def test_secrets_of_your_own_are_used_as_they_are() -> None:
    r = render(
        {
            "state": {"backend": "redis", "redis": {"existingSecret": "ops-redis", "existingSecretKey": "url"}},
            "runner": {"database": {"existingSecret": "ops-db"}},
            "driver": {"tokenKey": {"existingSecret": "ops-drivers"}},
        }
    )
    assert not r.all("Secret")
    volumes = {v["name"]: v for v in pod_spec(gateway(r))["volumes"]}
    assert volumes["driver-token-key"]["secret"] == {
        "secretName": "ops-drivers",
        "items": [{"key": "token-key", "path": "key"}],
    }
    gw_env = {e["name"]: e for e in container(gateway(r))["env"]}
    assert gw_env["SPARKGATE__STATE__REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "ops-redis", "key": "url"}
    runner_env = {e["name"]: e for e in container(r.get("Deployment", f"{FULLNAME}-runner"))["env"]}
    assert runner_env["SPARKGATE__RUNNER__DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "ops-db",
        "key": "database-url",
    }


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_gateway_reads_one_driver_token_key(name: str, tmp_path: Path) -> None:
    # Derived from it, each driver's token: any replica, or a gateway Pod that replaced another,
    # reaches the drivers the others started.
    r = rendered(name)
    settings = load_rendered_settings(r, tmp_path)
    c = container(gateway(r))
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "driver-token-key"]
    assert settings.kubernetes.token_key_file == f"{mount['mountPath']}/key" and mount["readOnly"]
    (volume,) = [v for v in pod_spec(gateway(r))["volumes"] if v["name"] == "driver-token-key"]
    ref = volume["secret"]
    assert ref["items"] == [{"key": "driver-token-key", "path": "key"}]
    key = r.secret_value(ref["secretName"], "driver-token-key")
    assert key is not None and len(key) >= 32
    for other in ("runner", "playground"):
        mounts = {m["name"] for m in container(r.get("Deployment", f"{FULLNAME}-{other}"))["volumeMounts"]}
        assert "driver-token-key" not in mounts, other


def test_extra_env_reaches_every_sparkgate_container(tmp_path: Path) -> None:
    token = {"name": "SPARKGATE__AUTH__OIDC__AUDIENCE", "value": "api://sparkgate"}
    r = render({"extraEnv": [token], "config": {"auth": {"mode": "oidc", "oidc": {"issuer": "https://idp.example"}}}})
    for component in ("gateway", "runner", "playground"):
        settings = load_rendered_settings(r, tmp_path, component)
        assert settings.auth.oidc.audience == "api://sparkgate", component


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"gateway": {"port": 15003}}}, "config.gateway.port is set by the chart"),
        ({"config": {"admin": {"host": "127.0.0.1"}}}, "config.admin.host is set by the chart"),
        ({"config": {"state": {"redis_url": "redis://:pw@r/0"}}}, "config.state.redis_url is set by the chart"),
        ({"config": {"runner": {"database_url": "sqlite://"}}}, "runner.database.url"),
        ({"config": {"kubernetes": {"namespace": "other"}}}, "release namespace"),
        ({"config": {"kubernetes": {"pod": {"service_account": "x"}}}}, "driver.serviceAccount.name"),
        ({"config": {"kubernetes": {"token_key_file": "/k"}}}, "driver.tokenKey.existingSecret"),
        ({"config": {"environments": {"prod": {"provider": "local"}}}}, "environments.prod.provider"),
    ],
)
def test_settings_the_chart_owns_are_refused_with_what_to_use(values: dict[str, Any], message: str) -> None:
    assert message in refusal(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gateway": {"replicas": 3}}, "need state.backend: redis"),
        ({"gateway": {"workers": 4}}, "need state.backend: redis"),
        ({"gateway": {"autoscaling": {"enabled": True}}}, "need state.backend: redis"),
        ({"state": {"backend": "redis"}}, "state.backend redis needs a Redis"),
        ({"devRedis": {"enabled": True}}, "devRedis.enabled is for state.backend: redis"),
    ],
)
def test_combinations_that_cannot_work_are_refused(values: dict[str, Any], message: str) -> None:
    assert message in refusal(values)


def test_environments_are_the_users_and_all_served_by_driver_pods(tmp_path: Path) -> None:
    r = render({"config": {"environments": {"local": None, "test": None, "ml": {"allowed_groups": ["ml"]}}}})
    settings = load_rendered_settings(r, tmp_path)
    assert sorted(settings.environments) == ["ml", "prod", "staging"]
    assert settings.environments["ml"].allowed_groups == ["ml"]
    assert {env.provider for env in settings.environments.values()} == {"kubernetes"}


def test_a_config_change_rolls_the_pods() -> None:
    before = gateway(render({}))["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    after = gateway(render({"config": {"pool": {"size": 3}}}))["spec"]["template"]["metadata"]["annotations"]
    assert after["checksum/config"] != before


# -- NOTES.txt -----------------------------------------------------------------------------------


def test_the_notes_say_how_to_connect_and_what_batch_jobs_need() -> None:
    notes = rendered("single").notes
    assert f"sc://{FULLNAME}-gateway.{NAMESPACE}.svc:15002" in notes
    assert f"port-forward svc/{FULLNAME}-gateway 15002:15002" in notes
    assert "sparkgate status" in notes
    assert "Spark Operator" in notes
    assert "state.backend: redis" in notes, "one gateway: say what is lost when its Pod goes"
    assert "state.backend: redis" not in rendered("ha").notes
