"""The DCP Playground: a REST API and web UI over the Spark Runner (gRPC only; never Spark itself)."""
