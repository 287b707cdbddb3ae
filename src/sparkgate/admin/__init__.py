"""The operator's side door: a small HTTP server with status and health endpoints."""
