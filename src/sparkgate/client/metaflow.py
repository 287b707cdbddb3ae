"""Spark from Metaflow steps.

    from sparkgate.client.metaflow import get_spark_session

    @step
    def extract_features(self):
        spark = get_spark_session("ml-platform", self.environment)
        try:
            self.features = spark.sql("SELECT ... FROM pedregal.feature_store.user_features").toPandas()
        finally:
            spark.stop()

The session's user is the run, ``metaflow-<flow>-<run id>`` (``METAFLOW_USER`` otherwise), so the
gateway's audit log and status tell pipeline runs apart; the gateway address and credentials come
as for :func:`sparkgate.client.get_spark`.
"""

from __future__ import annotations

from typing import Any

from sparkgate.client._session import get_spark


def _run_user() -> str:
    try:
        from metaflow import current  # type: ignore[attr-defined]

        if current.flow_name and current.run_id:
            return f"metaflow-{current.flow_name}-{current.run_id}".lower()
    except Exception:  # not inside a Metaflow step
        pass
    import os

    return os.environ.get("METAFLOW_USER") or "metaflow-pipeline"


def get_spark_session(team: str, environment: str, app_name: str | None = None) -> Any:
    """A Spark Connect session through the gateway for a Metaflow step (stop it in a ``finally``)."""
    user = _run_user()
    return get_spark(team, environment, app_name=app_name or f"metaflow-{user}", user=user)
