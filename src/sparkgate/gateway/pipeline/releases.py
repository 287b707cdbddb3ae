"""Stage 5, for a placed session: releases already on their way to its driver.

pyspark's ``stop()`` sends ReleaseSession while ReleaseExecutes of finished queries are still on
their way from a thread pool; those reaching the driver after it closed the session fail
(``INVALID_HANDLE.SESSION_CLOSED``), which the client ignores but the audit log would record as
errors. Closing the session releases its executions anyway, so while a ReleaseSession is with the
driver, the gateway answers the session's ReleaseExecutes itself. A second ReleaseSession still goes
to the driver: a retry after a failed one must reach it.
"""

from __future__ import annotations

from sparkgate.gateway.affinity import Route
from sparkgate.gateway.pipeline.call import Call
from sparkgate.gateway.pipeline.intents import Answer
from sparkgate.gateway.sessions import SessionBook


class Releases:
    def __init__(self, book: SessionBook) -> None:
        self._book = book

    def check(self, call: Call, route: Route) -> Answer | None:
        """An answer for a release the driver need not see (None: forward the call)."""
        method = call.method
        if method == "ReleaseSession":
            self._book.releasing(route.key)
        elif method == "ReleaseExecute" and self._book.is_releasing(route.key):
            return Answer(method, route.session_id)
        return None
