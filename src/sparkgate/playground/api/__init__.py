"""The Playground's REST routes under ``/api/v1/playground``: jobs, and what the UI starts from."""

from sparkgate.playground.api import catalog, jobs

PREFIX = "/api/v1/playground"
ROUTERS = (jobs.router, catalog.router)

__all__ = ["PREFIX", "ROUTERS"]
