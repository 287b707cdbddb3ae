"""After the call: what a call's answer changes, applied before its trailers reach the client — so the
client's next call already sees it.

* ``ReleaseSession`` drops the session's route, whatever the status: the client is done with it;
* a successful ``CloneSession`` routes the clone to the source session's driver.
"""

from __future__ import annotations

import dataclasses
import time

from sparkgate.connect import wire
from sparkgate.gateway.affinity import Route
from sparkgate.gateway.sessions import SessionBook

#: Calls whose answer changes the routing.
METHODS = frozenset({"ReleaseSession", "CloneSession"})


class AfterCall:
    def __init__(self, book: SessionBook) -> None:
        self._book = book

    @staticmethod
    def applies(method: str) -> bool:
        return method in METHODS

    @staticmethod
    def reads_response(method: str) -> bool:
        """Whether :meth:`run` needs the driver's response message."""
        return method == "CloneSession"

    async def run(self, method: str, route: Route, ids: wire.RequestIds, status: int | None, response: bytes) -> None:
        """The driver answered ``status`` (None: the call failed) with ``response``."""
        if method == "ReleaseSession":
            await self._book.released(route)
        elif method == "CloneSession" and status == 0:
            await self._cloned(route, ids.new_session_id or wire.read_string_field(response, 3))

    async def _cloned(self, source: Route, new_session_id: str) -> None:
        if not new_session_id:
            return
        now = time.time()
        await self._book.add(dataclasses.replace(source, session_id=new_session_id, created_at=now, last_used=now))
