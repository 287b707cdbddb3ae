"""The committed generated code matches spark_runner.proto (regenerate: scripts/gen-proto)."""

from __future__ import annotations

from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src"
PROTO = "sparkgate/runner/proto/spark_runner.proto"


def test_generated_code_is_current(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    args = ["protoc", f"-I{SRC}", f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", str(SRC / PROTO)]
    assert protoc.main(args) == 0
    for name in ("spark_runner_pb2.py", "spark_runner_pb2_grpc.py"):
        fresh = (tmp_path / "sparkgate/runner/proto" / name).read_text()
        committed = (SRC / "sparkgate/runner/proto" / name).read_text()
        assert fresh == committed, f"{name} is stale: run scripts/gen-proto"


def test_wire_contract_keeps_its_package_field_numbers_and_rpcs() -> None:
    from sparkgate.runner.proto import spark_runner_pb2 as pb

    assert pb.DESCRIPTOR.package == "sparkrunner"
    fields = {f.name: f.number for f in pb.CheckResponse.DESCRIPTOR.fields}
    assert {k: fields[k] for k in ("job_id", "state", "spark_ui_url", "logs", "error", "result_preview")} == {
        "job_id": 1,
        "state": 2,
        "spark_ui_url": 3,
        "logs": 4,
        "error": 5,
        "result_preview": 6,
    }
    assert [f.number for f in pb.SubmitRequest.DESCRIPTOR.fields] == [1, 2, 3, 4, 5, 6]
    assert set(pb.DESCRIPTOR.services_by_name["SparkRunnerService"].methods_by_name) >= {"Submit", "Check", "Cancel"}
