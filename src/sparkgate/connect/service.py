"""The shape of ``spark.connect.SparkConnectService`` (4.x, ``spark/connect/base.proto``).

Which RPCs exist and how each streams: the relays register exactly these, the fake backend
serves them, and anything else gets UNIMPLEMENTED.
"""

from __future__ import annotations

SERVICE = "spark.connect.SparkConnectService"
SERVICE_PATH = f"/{SERVICE}/"

#: unary → unary
UNARY_METHODS = (
    "AnalyzePlan",
    "Config",
    "ArtifactStatus",
    "Interrupt",
    "ReleaseExecute",
    "ReleaseSession",
    "FetchErrorDetails",
    "CloneSession",
)
#: unary → server stream of ExecutePlanResponse
SERVER_STREAM_METHODS = ("ExecutePlan", "ReattachExecute")
#: client stream → unary (artifacts in chunks; the whole stream goes to one driver)
CLIENT_STREAM_METHODS = ("AddArtifacts",)
ALL_METHODS = (*UNARY_METHODS, *SERVER_STREAM_METHODS, *CLIENT_STREAM_METHODS)
