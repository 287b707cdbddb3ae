"""Where jobs run: :mod:`.local` (processes here) or :mod:`.kubernetes` (SparkApplications),
behind the protocol of :mod:`.base`; ``runner.backend`` chooses."""

from __future__ import annotations

from sparkgate.config import Settings
from sparkgate.errors import ConfigError
from sparkgate.runner.backends.base import ExecutionBackend


def kubernetes_backend(settings: Settings) -> ExecutionBackend:
    """The runner's jobs as Spark Operator SparkApplications (``runner.backend: kubernetes``)."""
    try:
        from sparkgate.runner.backends.kubernetes import KubernetesBackend
    except ImportError as exc:  # (lightkube: the kubernetes extra)
        raise ConfigError(f"runner.backend kubernetes needs pip install 'sparkgate[kubernetes]': {exc}") from None
    return KubernetesBackend(
        settings.kubernetes,
        settings.runner.kubernetes,
        settings.state_path("jobs"),
        catalogs={name: env.catalog for name, env in settings.environments.items()},
    )
