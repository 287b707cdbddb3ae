from __future__ import annotations

import json
from pathlib import Path

from sparkgate.security.audit import AuditLog


def test_json_lines(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a" / "audit.log")
    log.start()
    log.emit("session.create", who="alice@x", team="fe", driver="local-1", empty="", none=None)
    log.emit("auth.failure", reason="expired")
    log.close()
    lines = [json.loads(x) for x in (tmp_path / "a" / "audit.log").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["session.create", "auth.failure"]
    assert lines[0]["who"] == "alice@x" and "empty" not in lines[0] and "none" not in lines[0]
    assert lines[0]["ts"].endswith("+00:00")
