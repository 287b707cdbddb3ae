"""The Playground's API contract: request and response bodies (what OpenAPI shows)."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, Field

from sparkgate.runner.manifest import Problem


class RunRequest(BaseModel):
    manifest: str = Field(description="the SparkJob manifest (YAML)", min_length=1)
    environment: str = Field(default="local", description="local, test, staging or prod")
    team: str | None = Field(default=None, description="defaults to the manifest's metadata.team")
    sandbox: bool = Field(default=False, description="writes only under the job's output; sampled sources")
    options: dict[str, str] = Field(default={}, description="raw Submit options (ttl_seconds, driver, param.<name>)")


class RunResponse(BaseModel):
    job_id: str
    namespace: str
    state: str
    backend: str


class StateChange(BaseModel):
    state: str
    at: str
    message: str = ""


class JobStatus(BaseModel):
    job_id: str
    state: str
    team: str = ""
    environment: str = ""
    user: str = ""
    job_name: str = ""
    namespace: str = ""
    backend: str = ""
    spark_ui_url: str = ""
    error: str = ""
    output_path: str = ""
    created_at: str = ""
    updated_at: str = ""
    attempts: int = 0
    history: list[StateChange] = []
    logs: str | None = None


class Results(BaseModel):
    job_id: str
    count: int
    columns: list[dict[str, Any]]
    preview: list[dict[str, Any]]
    output_path: str = ""


class ProblemOut(BaseModel):
    path: str
    message: str
    line: int | None = None


class Validation(BaseModel):
    valid: bool
    problems: list[ProblemOut] = []
    job_name: str | None = None
    team: str | None = None


class Sample(BaseModel):
    name: str
    title: str
    manifest: str


class ErrorOut(BaseModel):
    error: str
    problems: list[ProblemOut] = []


class CancelResponse(BaseModel):
    job_id: str
    state: str


def job_status(resp: Any, logs: bool = False) -> JobStatus:
    """A runner's ``CheckResponse`` (or listed job) as the API shows it."""
    data = MessageToDict(resp, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    data.pop("result_preview", None)
    data.pop("result_count", None)
    data.pop("result_schema", None)
    if not logs:
        data.pop("logs", None)
    return JobStatus.model_validate(data)


def problems_out(problems: list[Problem]) -> list[ProblemOut]:
    return [ProblemOut(path=p.path, message=p.message, line=p.line) for p in problems]
