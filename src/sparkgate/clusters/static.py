"""Static provider: drivers that already run somewhere, listed by address.

For Spark Connect servers managed outside sparkgate (a standalone cluster's long-running driver, a
fake backend in tests and benchmarks). It cannot start or stop anything: ``start_driver`` raises
Unavailable, ``stop_driver`` only forgets the driver.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparkgate.clusters.base import POOL_NAMESPACE, Driver, DriverSpec, DriverState, ProviderBase
from sparkgate.errors import Unavailable


class StaticProvider(ProviderBase):
    name = "static"

    def __init__(self, addresses: Sequence[str], namespace: str = POOL_NAMESPACE) -> None:
        self._drivers = [
            Driver(
                id=f"static-{i}",
                address=a,
                provider=self.name,
                namespace=namespace,
                state=DriverState.READY,
            )
            for i, a in enumerate(addresses)
        ]

    async def __aenter__(self) -> StaticProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def start_driver(self, spec: DriverSpec) -> Driver:
        raise Unavailable(
            f"no driver available for {spec.namespace or 'the pool'}: the static provider "
            "cannot start drivers (add addresses or use the local provider)"
        )

    async def stop_driver(self, driver: Driver) -> None:
        driver.state = DriverState.DEAD

    async def list_drivers(self) -> list[Driver]:
        return [d for d in self._drivers if d.state is not DriverState.DEAD]
