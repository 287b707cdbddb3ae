"""The local execution backend's process environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkgate.runner.backends.local import LocalBackend


def test_job_processes_never_get_the_gateway_credential_in_their_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other processes of the user can read an environment (/proc/PID/environ), and a job on a
    driver of its own could read it through the JVM: pool jobs get the credential on stdin."""
    monkeypatch.setenv("SPARK_CONNECT_AUTHENTICATE_TOKEN", "from-the-caller")
    backend = LocalBackend(tmp_path, gateway_url="sc://127.0.0.1:15002", gateway_token="platform-secret")
    env = backend._env()
    assert "platform-secret" not in env.values() and "SPARK_CONNECT_AUTHENTICATE_TOKEN" not in env
