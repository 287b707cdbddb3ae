"""The haproxy the tests put in front of gateway replicas is the one the README's example runs."""

from __future__ import annotations

from pathlib import Path

from sparkgate.testing.haproxy import haproxy_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_configuration_is_the_one_the_tests_run() -> None:
    replicas = [f"127.0.0.1:{port}" for port in (15011, 15012, 15013)]
    assert (ROOT / "examples" / "ha" / "haproxy.cfg").read_text() == haproxy_config("*:15010", replicas)
