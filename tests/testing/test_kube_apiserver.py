"""The fake Kubernetes API server answers lightkube as a real one would: verbs, errors, watches,
patches, deletion, garbage collection and schema checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.operators import in_, not_equal, not_in
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import ConfigMap, Node, Pod, Secret
from lightkube.types import CascadeType, OnErrorAction, OnErrorResult, PatchType

from sparkgate.testing.kube import FakeKubeApi

NS = "drivers"
SparkApplication = create_namespaced_resource(
    "sparkoperator.k8s.io", "v1beta2", "SparkApplication", "sparkapplications"
)


def pod(name: str = "", *, labels: dict[str, str] | None = None, generate: str = "") -> Pod:
    meta = ObjectMeta(name=name or None, generateName=generate or None, labels=labels)
    return Pod(metadata=meta, spec=PodSpec(containers=[Container(name="spark", image="apache/spark:4.1.0")]))


def spark_app(name: str, **spec: Any) -> dict[str, Any]:
    base = {
        "type": "Python",
        "mode": "cluster",
        "sparkVersion": "4.1.0",
        "mainApplicationFile": "local:///opt/job.py",
        "driver": {"cores": 1, "memory": "512m"},
        "executor": {"instances": 1},
    }
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": name},
        "spec": base | spec,
    }


@pytest.fixture
async def client(api: FakeKubeApi) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(config=api.kubeconfig(NS)) as c:
        yield c


@pytest.fixture
async def raw(api: FakeKubeApi) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP, for bodies lightkube's typed models cannot express."""
    async with httpx.AsyncClient(base_url=api.url) as c:
        yield c


async def request_with_body(client: AsyncClient, method: str, res: Any, name: str, body: Any, **params: Any) -> Any:
    """A request lightkube's API has no argument for (a DeleteOptions body, watch bookmarks): built
    with lightkube's own request machinery, so it goes through the same transport."""
    generic = client._client
    br = generic.prepare_request(method, res=res, name=name, namespace=NS, params=params)
    br.data = body
    response = await generic.send(generic.build_adapter_request(br))
    return generic.handle_response(method, response, br)


# -- create, get, list ----------------------------------------------------------------------------


async def test_create_fills_server_fields_and_generate_name(client: AsyncClient) -> None:
    created = await client.create(pod(generate="driver-"))
    meta = created.metadata
    assert meta.name.startswith("driver-") and len(meta.name) == len("driver-") + 5
    assert meta.uid and meta.resourceVersion and meta.creationTimestamp and meta.namespace == NS
    assert created.status.phase == "Pending"
    assert created.spec.restartPolicy == "Always" and created.spec.terminationGracePeriodSeconds == 30
    fetched = await client.get(Pod, meta.name)
    assert fetched.metadata.uid == meta.uid


async def test_create_of_a_taken_name_is_409_already_exists(client: AsyncClient) -> None:
    await client.create(pod("a"))
    with pytest.raises(ApiError) as err:
        await client.create(pod("a"))
    assert (err.value.status.code, err.value.status.reason) == (409, "AlreadyExists")


async def test_get_of_a_missing_object_is_a_404_status(client: AsyncClient, raw: httpx.AsyncClient) -> None:
    with pytest.raises(ApiError) as err:
        await client.get(Pod, "nope")
    assert (err.value.status.code, err.value.status.reason) == (404, "NotFound")
    body = (await raw.get(f"/api/v1/namespaces/{NS}/pods/nope")).json()
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["message"] == 'pods "nope" not found'


async def test_list_filters_by_label_and_field_selectors(client: AsyncClient) -> None:
    await client.create(pod("a", labels={"pool": "warm", "team": "fe"}))
    await client.create(pod("b", labels={"pool": "claimed", "team": "ml"}))
    await client.create(pod("c", labels={"team": "fe"}))

    async def names(**kwargs: Any) -> list[str]:
        return [p.metadata.name async for p in client.list(Pod, **kwargs)]

    assert await names(labels={"pool": "warm"}) == ["a"]
    assert await names(labels={"pool": not_equal("warm")}) == ["b", "c"]  # != matches a missing label
    assert await names(labels={"team": in_(["fe", "ml"]), "pool": None}) == ["a", "b"]
    assert await names(labels={"team": not_in(["ml"])}) == ["a", "c"]
    assert await names(labels=[("pool", None)]) == ["a", "b"]
    assert await names(fields={"metadata.name": "b"}) == ["b"]
    assert await names(fields={"status.phase": "Pending", "metadata.name": not_equal("a")}) == ["b", "c"]
    assert await names(chunk_size=1) == ["a", "b", "c"]  # limit/continue, three pages
    listing = client.list(Pod)
    assert len([p async for p in listing]) == 3
    assert int(listing.resourceVersion) >= 3


async def test_an_unknown_field_selector_is_a_400(client: AsyncClient) -> None:
    with pytest.raises(ApiError) as err:
        _ = [p async for p in client.list(Pod, fields={"spec.hostname": "x"})]
    assert err.value.status.code == 400 and "field label not supported" in err.value.status.message


async def test_list_across_namespaces_and_cluster_scoped_nodes(api: FakeKubeApi, client: AsyncClient) -> None:
    await client.create(pod("a"))
    await client.create(pod("b"), namespace="other")
    assert sorted([p.metadata.namespace async for p in client.list(Pod, namespace="*")]) == ["drivers", "other"]
    await client.create(Node(metadata=ObjectMeta(name="node-1")))
    assert [n.metadata.name async for n in client.list(Node)] == ["node-1"]
    assert api.get_object("nodes", "node-1") is not None


# -- update and patch -----------------------------------------------------------------------------


async def test_update_with_a_stale_resource_version_is_409(client: AsyncClient) -> None:
    lease = await client.create(Lease(metadata=ObjectMeta(name="fleet"), spec={"holderIdentity": "gw-1"}))
    lease.spec.holderIdentity = "gw-2"
    renewed = await client.replace(lease)
    assert renewed.spec.holderIdentity == "gw-2"
    assert int(renewed.metadata.resourceVersion) > int(lease.metadata.resourceVersion)
    lease.spec.holderIdentity = "gw-3"  # still the old resourceVersion
    with pytest.raises(ApiError) as err:
        await client.replace(lease)
    assert (err.value.status.code, err.value.status.reason) == (409, "Conflict")


async def test_a_patch_guarded_by_resource_version_has_one_winner(client: AsyncClient) -> None:
    warm = await client.create(pod("warm", labels={"state": "warm"}))
    rv = warm.metadata.resourceVersion

    async def claim(gateway: str) -> str:
        patch = {"metadata": {"resourceVersion": rv, "labels": {"state": "claimed", "claimed-by": gateway}}}
        try:
            await client.patch(Pod, "warm", patch, patch_type=PatchType.MERGE)
        except ApiError as exc:
            return str(exc.status.code)
        return "won"

    assert sorted(await asyncio.gather(claim("gw-1"), claim("gw-2"))) == ["409", "won"]


async def test_a_write_that_changes_nothing_keeps_the_resource_version(client: AsyncClient) -> None:
    created = await client.create(ConfigMap(metadata=ObjectMeta(name="c"), data={"k": "v"}))
    same = await client.patch(ConfigMap, "c", {"data": {"k": "v"}}, patch_type=PatchType.MERGE)
    assert same.metadata.resourceVersion == created.metadata.resourceVersion


async def test_strategic_merge_merges_containers_by_name(client: AsyncClient) -> None:
    created = await client.create(pod("p"))
    patch = {"spec": {"containers": [{"name": "spark", "image": "apache/spark:4.1.1"}]}}
    patched = await client.patch(Pod, "p", patch)  # lightkube's default: strategic merge
    [container] = patched.spec.containers
    assert container.image == "apache/spark:4.1.1"
    assert container.terminationMessagePath == created.spec.containers[0].terminationMessagePath


async def test_a_pod_spec_is_immutable_but_for_images(client: AsyncClient) -> None:
    await client.create(pod("p"))
    with pytest.raises(ApiError) as err:
        await client.patch(Pod, "p", {"spec": {"restartPolicy": "Never"}}, patch_type=PatchType.MERGE)
    assert err.value.status.code == 422 and "pod updates may not change fields" in err.value.status.message


async def test_json_patch_with_a_failing_test_is_422(client: AsyncClient) -> None:
    created = await client.create(pod("p", labels={"state": "warm"}))
    rv = created.metadata.resourceVersion
    ops = [
        {"op": "test", "path": "/metadata/labels/state", "value": "warm"},
        {"op": "replace", "path": "/metadata/labels/state", "value": "claimed"},
    ]
    patched = await client.patch(Pod, "p", ops, patch_type=PatchType.JSON)
    assert patched.metadata.labels["state"] == "claimed"
    with pytest.raises(ApiError) as err:
        await client.patch(Pod, "p", ops, patch_type=PatchType.JSON)
    assert (err.value.status.code, err.value.status.reason) == (422, "Invalid")
    stale = [{"op": "replace", "path": "/metadata/resourceVersion", "value": rv}]
    with pytest.raises(ApiError) as err:
        await client.patch(Pod, "p", stale, patch_type=PatchType.JSON)
    assert err.value.status.code == 409


async def test_custom_resources_refuse_strategic_merge(client: AsyncClient) -> None:
    await client.create(SparkApplication.from_dict(spark_app("job")))
    with pytest.raises(ApiError) as err:
        await client.patch(SparkApplication, "job", {"spec": {"arguments": ["1"]}})
    assert (err.value.status.code, err.value.status.reason) == (415, "UnsupportedMediaType")
    patched = await client.patch(SparkApplication, "job", {"spec": {"arguments": ["1"]}}, patch_type=PatchType.MERGE)
    assert patched.spec["arguments"] == ["1"] and patched.metadata.generation == 2


async def test_status_is_written_only_through_its_subresource(client: AsyncClient) -> None:
    await client.create(SparkApplication.from_dict(spark_app("job") | {"status": {"driverInfo": {}}}))
    app = await client.get(SparkApplication, "job")
    assert app.status is None  # status sent on create is dropped
    status = {"status": {"applicationState": {"state": "RUNNING"}, "driverInfo": {}}}
    await client.patch(SparkApplication.Status, "job", status, patch_type=PatchType.MERGE)
    app = await client.patch(
        SparkApplication, "job", {"status": {"driverInfo": {"podName": "x"}}}, patch_type=PatchType.MERGE
    )
    assert app.status == {"applicationState": {"state": "RUNNING"}, "driverInfo": {}}
    assert app.metadata.generation == 1


async def test_server_side_apply_creates_then_merges(client: AsyncClient) -> None:
    applied = await client.apply(
        ConfigMap(metadata=ObjectMeta(name="conf", labels={"a": "1"}), data={"x": "1"}), field_manager="sparkgate"
    )
    assert applied.data == {"x": "1"}
    again = await client.apply(
        ConfigMap(metadata=ObjectMeta(name="conf", labels={"b": "2"}), data={"y": "2"}), field_manager="sparkgate"
    )
    # Field ownership is not modelled: what a manager stopped applying stays.
    assert again.data == {"x": "1", "y": "2"} and again.metadata.labels == {"a": "1", "b": "2"}
    assert again.metadata.uid == applied.metadata.uid


async def test_secrets_keep_string_data_as_data(client: AsyncClient) -> None:
    created = await client.create(Secret(metadata=ObjectMeta(name="token"), stringData={"token": "s3cret"}))
    assert created.stringData is None and created.data == {"token": "czNjcmV0"} and created.type == "Opaque"


# -- schema checks --------------------------------------------------------------------------------


async def test_an_unknown_field_is_refused_naming_it(raw: httpx.AsyncClient) -> None:
    body = pod("p").to_dict() | {"apiVersion": "v1", "kind": "Pod"}
    body["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    response = await raw.post(f"/api/v1/namespaces/{NS}/pods", json=body)
    status = response.json()
    assert (response.status_code, status["reason"]) == (400, "BadRequest")
    assert 'unknown field "spec.containers[0].imagePullPolcy"' in status["message"]


async def test_an_invalid_pod_is_422_naming_the_field(client: AsyncClient) -> None:
    bad = Pod(metadata=ObjectMeta(name="Bad_Name"), spec=PodSpec(containers=[Container(name="spark")]))
    with pytest.raises(ApiError) as err:
        await client.create(bad)
    status = err.value.status
    assert (status.code, status.reason) == (422, "Invalid")
    assert {c.field for c in status.details.causes} == {"metadata.name", "spec.containers[0].image"}


async def test_a_spark_application_of_the_wrong_type_is_422(client: AsyncClient) -> None:
    with pytest.raises(ApiError) as err:
        await client.create(SparkApplication.from_dict(spark_app("job", timeToLiveSeconds="60")))
    assert err.value.status.code == 422 and "spec.timeToLiveSeconds" in err.value.status.message
    with pytest.raises(ApiError) as err:
        await client.create(SparkApplication.from_dict(spark_app("job", mode="local")))
    assert err.value.status.code == 422 and "Unsupported value: 'local'" in err.value.status.message
    with pytest.raises(ApiError) as err:
        await client.create(SparkApplication.from_dict(spark_app("job", driver={"cors": 1})))
    assert err.value.status.code == 400 and 'unknown field "spec.driver.cors"' in err.value.status.message


# -- delete, finalizers, garbage collection -------------------------------------------------------


async def test_delete_preconditions(client: AsyncClient, api: FakeKubeApi) -> None:
    created = await client.create(pod("p"))
    for preconditions in ({"uid": "not-its-uid"}, {"resourceVersion": "1" + created.metadata.resourceVersion}):
        with pytest.raises(ApiError) as err:
            await request_with_body(client, "delete", Pod, "p", {"preconditions": preconditions})
        assert (err.value.status.code, err.value.status.reason) == (409, "Conflict")
        assert "Precondition failed" in err.value.status.message
    await request_with_body(client, "delete", Pod, "p", {"preconditions": {"uid": created.metadata.uid}})
    assert api.get_object("pods", "p", NS) is None  # no kubelet: a Pod goes at once


async def test_finalizers_keep_an_object_until_emptied(client: AsyncClient) -> None:
    await client.create(ConfigMap(metadata=ObjectMeta(name="c", finalizers=["sparkgate.io/cleanup"])))
    await client.delete(ConfigMap, "c")
    pending = await client.get(ConfigMap, "c")
    assert pending.metadata.deletionTimestamp is not None
    with pytest.raises(ApiError):  # no new finalizer on an object being deleted
        await client.patch(ConfigMap, "c", {"metadata": {"finalizers": ["a", "b"]}}, patch_type=PatchType.MERGE)
    await client.patch(ConfigMap, "c", {"metadata": {"finalizers": None}}, patch_type=PatchType.MERGE)
    with pytest.raises(ApiError):
        await client.get(ConfigMap, "c")


async def test_owned_objects_are_garbage_collected(client: AsyncClient, api: FakeKubeApi) -> None:
    driver = await client.create(pod("driver"))
    other = await client.create(pod("other"))
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "driver", "uid": driver.metadata.uid}
    other_ref = {"apiVersion": "v1", "kind": "Pod", "name": "other", "uid": other.metadata.uid}
    await client.create(Secret(metadata=ObjectMeta(name="driver-conf", ownerReferences=[ref]), stringData={"k": "v"}))
    await client.create(Secret(metadata=ObjectMeta(name="shared", ownerReferences=[ref, other_ref])))
    await request_with_body(client, "delete", Pod, "driver", {"propagationPolicy": "Background"})
    assert await api.wait_for("secrets", "driver-conf", NS, lambda s: s is None) is None
    # An object with another owner left only loses its reference to the deleted one.
    shared = await api.wait_for(
        "secrets", "shared", NS, lambda s: s is not None and len(s["metadata"]["ownerReferences"]) == 1
    )
    assert shared is not None and shared["metadata"]["ownerReferences"] == [other_ref]


async def test_orphan_propagation_keeps_dependents(client: AsyncClient, api: FakeKubeApi) -> None:
    owner = await client.create(pod("driver"))
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "driver", "uid": owner.metadata.uid}
    await client.create(Secret(metadata=ObjectMeta(name="conf", ownerReferences=[ref])))
    await client.delete(Pod, "driver", cascade=CascadeType.ORPHAN)
    await asyncio.sleep(0.05)
    orphan = await client.get(Secret, "conf")
    assert orphan.metadata.ownerReferences is None


# -- watch ----------------------------------------------------------------------------------------


async def test_watch_sees_objects_enter_and_leave_a_selector(client: AsyncClient) -> None:
    start = await client.create(pod("p", labels={"pool": "warm"}))
    events: list[tuple[str, str]] = []

    async def follow() -> None:
        stream = client.watch(Pod, labels={"pool": "warm"}, resource_version=start.metadata.resourceVersion)
        async for kind, obj in stream:
            events.append((kind, obj.metadata.name))
            if kind == "DELETED":
                return

    watcher = asyncio.create_task(follow())
    await client.create(pod("q", labels={"pool": "cold"}))  # never matches: no event
    await client.patch(Pod, "q", {"metadata": {"labels": {"pool": "warm"}}}, patch_type=PatchType.MERGE)
    await client.patch(Pod, "p", {"metadata": {"labels": {"pool": "claimed"}}}, patch_type=PatchType.MERGE)
    await asyncio.wait_for(watcher, 5)
    assert events == [("ADDED", "q"), ("DELETED", "p")]


async def test_watch_bookmarks_carry_the_current_resource_version(client: AsyncClient) -> None:
    created = await client.create(pod("p"))
    generic = client._client
    br = generic.prepare_request(
        "list", res=Pod, namespace=NS, watch=True, params={"allowWatchBookmarks": "true", "resourceVersion": "0"}
    )
    seen: list[tuple[str, str]] = []
    async for kind, obj in generic.watch(br):
        seen.append((kind, obj.metadata.resourceVersion))
        if kind == "BOOKMARK":
            break
    assert seen == [("ADDED", created.metadata.resourceVersion), ("BOOKMARK", created.metadata.resourceVersion)]


async def test_a_watch_from_an_expired_resource_version_gets_410(client: AsyncClient, api: FakeKubeApi) -> None:
    first = await client.create(pod("a"))
    await client.create(pod("b"))
    api.expire_history()
    with pytest.raises(ApiError) as err:
        async for _ in client.watch(Pod, resource_version=first.metadata.resourceVersion):
            pass
    assert (err.value.status.code, err.value.status.reason) == (410, "Expired")
    assert "too old resource version" in err.value.status.message


async def test_a_bounded_history_expires_on_its_own() -> None:
    async with FakeKubeApi(history_size=2) as api, AsyncClient(config=api.kubeconfig(NS)) as client:
        first = await client.create(pod("a"))
        for name in "bcd":
            await client.create(pod(name))
        with pytest.raises(ApiError) as err:
            async for _ in client.watch(Pod, resource_version=first.metadata.resourceVersion):
                pass
        assert err.value.status.code == 410


async def test_a_broken_watch_resumes_from_its_last_resource_version(client: AsyncClient, api: FakeKubeApi) -> None:
    await client.create(pod("a"))
    retries: list[int] = []

    def retry(exc: Exception, count: int) -> OnErrorResult:
        retries.append(count)
        return OnErrorResult(OnErrorAction.RETRY)

    names: list[str] = []

    async def follow() -> None:
        async for kind, obj in client.watch(Pod, on_error=retry):
            names.append(f"{kind} {obj.metadata.name}")
            if obj.metadata.name == "c":
                return

    watcher = asyncio.create_task(follow())
    while api.open_watches == 0 or names != ["ADDED a"]:
        await asyncio.sleep(0.01)
    await client.create(pod("b"))
    while len(names) < 2:
        await asyncio.sleep(0.01)
    assert api.break_watches() == 1
    await client.create(pod("c"))
    await asyncio.wait_for(watcher, 5)
    assert names == ["ADDED a", "ADDED b", "ADDED c"]  # nothing lost, nothing twice
    assert retries == [1]


async def test_a_watch_ends_at_its_timeout(raw: httpx.AsyncClient) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with raw.stream("GET", f"/api/v1/namespaces/{NS}/pods", params={"watch": "1", "timeoutSeconds": "1"}) as r:
        lines = [line async for line in r.aiter_lines()]
    assert lines == [] and 0.9 <= loop.time() - started < 3


async def test_direct_writes_make_watch_events(client: AsyncClient, api: FakeKubeApi) -> None:
    start = (await client.create(pod("p"))).metadata.resourceVersion  # ("0" would mean "from any point")
    api.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": NS}})
    api.delete_object("configmaps", "c", NS)
    kinds = []
    async for kind, _ in client.watch(ConfigMap, resource_version=start):
        kinds.append(kind)
        if kind == "DELETED":
            break
    assert kinds == ["ADDED", "DELETED"]


# -- for tests ------------------------------------------------------------------------------------


async def test_seen_records_rbac_verbs_per_resource(client: AsyncClient, api: FakeKubeApi) -> None:
    await client.create(pod("p"))
    await client.get(Pod, "p")
    _ = [p async for p in client.list(Pod)]
    await client.patch(Pod.Status, "p", {"status": {"phase": "Pending"}}, patch_type=PatchType.MERGE)
    with pytest.raises(ApiError):  # answered with an error, but asked for: RBAC must allow it
        _ = [line async for line in client.log("p")]
    await client.delete(Pod, "p")
    assert api.seen == {
        ("", "pods", "create"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods/status", "patch"),
        ("", "pods/log", "get"),
        ("", "pods", "delete"),
    }


async def test_fail_next_injects_an_error_once(client: AsyncClient, api: FakeKubeApi) -> None:
    api.fail_next("create", "pods", 503)
    with pytest.raises(ApiError) as err:
        await client.create(pod("p"))
    assert (err.value.status.code, err.value.status.reason) == (503, "ServiceUnavailable")
    await client.create(pod("p"))


async def test_a_kubeconfig_file_works(api: FakeKubeApi, tmp_path: Path) -> None:
    path = api.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    async with AsyncClient(config=KubeConfig.from_file(path)) as c:
        created = await c.create(pod("p"))
    assert created.metadata.namespace == NS


async def test_wait_for_and_objects(api: FakeKubeApi, client: AsyncClient) -> None:
    labelled = asyncio.create_task(
        api.wait_for("pods", "p", NS, lambda o: o is not None and o["metadata"].get("labels") == {"x": "1"})
    )
    await client.create(pod("p"))
    await client.patch(Pod, "p", {"metadata": {"labels": {"x": "1"}}}, patch_type=PatchType.MERGE)
    found = await asyncio.wait_for(labelled, 5)
    assert found is not None and found["metadata"]["name"] == "p"
    [obj] = api.objects("Pod", NS)
    obj["metadata"]["name"] = "changed"  # a copy
    assert api.objects("pods")[0]["metadata"]["name"] == "p"
    assert json.loads(json.dumps(obj))  # plain JSON


async def test_closing_ends_open_watches_and_leaves_no_task() -> None:
    async with FakeKubeApi() as api:
        client = AsyncClient(config=api.kubeconfig(NS))

        async def follow() -> None:
            async for _ in client.watch(Pod):
                pass

        watcher = asyncio.create_task(follow())
        while api.open_watches == 0:
            await asyncio.sleep(0.01)
    with pytest.raises(httpx2.HTTPError):
        await asyncio.wait_for(watcher, 5)
    await client.close()
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("fake-kube-api")] == []


async def test_unknown_urls_and_version(raw: httpx.AsyncClient) -> None:
    for path in ("/api/v1/namespaces/x/deployments", "/apis/apps/v1/deployments", "/api/v1/namespaces/x/secrets/s/log"):
        response = await raw.get(path)
        assert (response.status_code, response.json()["reason"]) == (404, "NotFound")
    assert (await raw.get("/version")).json()["minor"] == "30"
