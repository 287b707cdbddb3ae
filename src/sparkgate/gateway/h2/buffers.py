"""Receive buffers for the relay's connections: sockets read straight into reused memory.

With a plain :class:`asyncio.Protocol` the event loop reads into its own buffer and copies each read
into a new ``bytes`` object: one extra pass over every relayed byte, into memory that is not in
cache. Connections are :class:`asyncio.BufferedProtocol` instead and read into *slabs* lent by a
:class:`ReadArena`, one per event-loop thread (reads on one loop happen one at a time: a transport
calls ``get_buffer``, reads, and calls ``buffer_updated`` before anything else runs, so a loan is
filled, or abandoned because nothing was read, before the next one is made).

DATA payloads are forwarded as memoryviews of a slab, so a slab may be written over only once
no view of it is left (the socket wrote it, no stream queue holds it). Every view of a slab keeps
the slab's reference count up, so that count says when it is free: no bookkeeping on the hot
path, and a view kept anywhere, for however long, keeps its bytes intact. A slab nobody holds is
read into again from its start (it stays in cache); one still held is set aside and reused
once it is free, or dropped (and freed when its last view goes) if too many are held.

Slabs are anonymous memory maps of their own, so one that is dropped goes back to the operating
system at once: a burst (a client that stopped reading, say) leaves no memory behind in the
allocator's heap. Slabs set aside and free again are kept for reuse while reads go on, and only up to
:data:`KEEP_FREE` once the connections are quiet (:meth:`ReadArena.shed`).
"""

from __future__ import annotations

import contextlib
import mmap
import sys
import threading

#: Size of one slab: the most a single read can return. Large enough for several reads of
#: :data:`~.connection.RECV_LOWAT` (4 MiB slabs with 1 MiB waits against 1 MiB slabs with 256 KiB
#: waits: +2.4 % stream throughput in 18 paired runs, +0.3 % in 14 more).
SLAB_BYTES = 4 * 1024 * 1024
#: A read is offered at least this much room; with less left, the next slab is taken.
MIN_READ = 64 * 1024
#: Slabs kept for reuse while views of them are still alive; more are left to the allocator
#: (at most 36 MiB per event-loop thread).
MAX_RETIRED = 8
#: Slabs set aside that are free again, kept for reuse once the connections are quiet.
KEEP_FREE = 2


def _new_slab() -> mmap.mmap:
    # Private: shared anonymous memory would count as shared memory, and skip huge pages.
    slab = mmap.mmap(-1, SLAB_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if _HUGE is not None:
        # Huge pages where the system offers them on request (transparent_hugepage "madvise"): the
        # kernel's copies into and out of a slab then miss the TLB far less often.
        with contextlib.suppress(OSError):
            slab.madvise(_HUGE)
    return slab


_HUGE: int | None = getattr(mmap, "MADV_HUGEPAGE", None)


def _unshared(slab: mmap.mmap) -> bool:
    """No view of ``slab`` is alive: its only reference is the arena's (as attribute or list item)."""
    return sys.getrefcount(slab) <= 3  # the arena's, this function's argument, getrefcount's argument


class ReadArena:
    """Lends receive buffers (slabs of :data:`SLAB_BYTES`) to the connections of one thread."""

    __slots__ = ("_loan", "_loans_at_shed", "_off", "_retired", "_slab", "loans", "slabs_made")

    def __init__(self) -> None:
        self._slab = _new_slab()
        self._off = 0
        self._loan: memoryview | None = None
        self._retired: list[mmap.mmap] = []
        #: Counters (tests, and the relay bench's diagnostics): reads offered, slabs allocated.
        self.loans = 0
        self.slabs_made = 1
        self._loans_at_shed = -1

    def lend(self) -> memoryview:
        """Room for the next read (at least :data:`MIN_READ` bytes).

        A loan that was never :meth:`filled` (the transport read nothing: no data yet, EOF, an
        error) is replaced: reads are synchronous, so nothing was written into it.
        """
        self._loan = None  # (its reference would keep the slab looking shared)
        if _unshared(self._slab):
            self._off = 0
        elif SLAB_BYTES - self._off < MIN_READ:
            self._next_slab()
        loan = self._loan = memoryview(self._slab)[self._off :]
        self.loans += 1
        return loan

    def filled(self, nbytes: int) -> memoryview:
        """The current loan received ``nbytes``: they are the caller's (a view that pins them)."""
        loan, self._loan = self._loan, None
        if loan is None:  # pragma: no cover - a transport that reports a read it did not ask for
            raise RuntimeError("buffer_updated() without get_buffer()")
        off = self._off
        self._off = off + nbytes
        return memoryview(self._slab)[off : off + nbytes]

    def _next_slab(self) -> None:
        retired = self._retired
        retired.append(self._slab)
        self._off = 0
        for i in range(len(retired) - 1):  # the oldest free one (not the slab just set aside)
            if _unshared(retired[i]):
                self._slab = retired.pop(i)
                return
        if len(retired) > MAX_RETIRED:
            del retired[0]
        self._slab = _new_slab()
        self.slabs_made += 1

    def shed(self) -> None:
        """Once the connections are quiet (no read since the last call), keep at most KEEP_FREE of
        the set-aside slabs that are free (and every held one). Called now and then (the engine's
        once-a-second sweep); while reads go on, free slabs are kept (at most MAX_RETIRED): dropping
        one only to map a fresh one moments later costs a page fault per 4 KiB."""
        quiet = self.loans == self._loans_at_shed
        self._loans_at_shed = self.loans
        if not quiet:
            return
        retired, free, i = self._retired, 0, 0
        while i < len(retired):
            if _unshared(retired[i]):  # (no local name for it: that would count as a reference)
                free += 1
                if free > KEEP_FREE:
                    del retired[i]
                    continue
            i += 1

    @property
    def kept_bytes(self) -> int:
        """Bytes of slabs the arena keeps: the current one and those set aside."""
        return (1 + len(self._retired)) * SLAB_BYTES

    @property
    def held_slabs(self) -> int:
        """Slabs set aside because views of them were still alive (for tests and metrics)."""
        return len(self._retired)


class _Local(threading.local):
    def __init__(self) -> None:
        self.arena = ReadArena()


_local = _Local()


def arena() -> ReadArena:
    """This thread's arena (each event loop runs in one thread)."""
    return _local.arena
