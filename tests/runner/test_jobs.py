from __future__ import annotations

import re

from sparkgate.runner.jobs import job_id, namespace_for_job


def test_job_ids_are_kubernetes_names() -> None:
    assert job_id("feature-engineering", "daily-orders", 123) == "feature-engineering-daily-orders-123"
    long = job_id("Feature_Engineering", "x" * 80)
    assert len(long) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", long)


def test_job_namespaces_per_user_locally_shared_in_test_per_team_elsewhere() -> None:
    assert namespace_for_job("fe", "local", "a@x").startswith("sjns-playground-local-")
    assert namespace_for_job("fe", "local", "a@x") != namespace_for_job("fe", "local", "b@x")
    assert namespace_for_job("fe", "test", "a@x") == "sjns-playground-test"
    assert namespace_for_job("fe", "prod", "a@x") == "sjns-fe-prod"
