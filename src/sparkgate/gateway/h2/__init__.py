"""The gateway's relay: Spark Connect relayed as HTTP/2 frames, on asyncio Protocols.

A gRPC server and client in between would parse and re-serialize every message, on both legs.
This relay never leaves HTTP/2: it decodes
a client's request headers, holds the first gRPC message just long enough for the call pipeline
(:mod:`sparkgate.gateway.pipeline`) to decide where it goes, then forwards DATA frames between the
client's connection and one shared connection per driver without copying them, under both peers'
flow-control windows.

The protocol is kept apart from I/O (as python-hyper/h2 does): frames, header blocks, flow-control
windows and streams are plain state machines driven by bytes, and only :mod:`.connection` and the
modules above it touch sockets and the event loop. Modules, from the wire up:

* :mod:`.frames` — frame constants and encoding; :mod:`.hpack` — header blocks;
* :mod:`.stream` — a relayed stream and its flow control; :mod:`.protocol` — a connection's frames
  and windows, without I/O; :mod:`.connection` — the protocol on an asyncio transport;
* :mod:`.downstream` — the client-facing leg; :mod:`.upstream` — driver connections and their pool;
* :mod:`.relay` — carrying out the pipeline's intent: held options, failover, after-answer actions;
* :mod:`.engine` — listener and graceful stop.
"""

from sparkgate.gateway.h2.engine import H2Engine

__all__ = ["H2Engine"]
