from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("manifest", "team", "environment", "user", "job_name", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    manifest: str
    team: str
    environment: str
    user: str
    job_name: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, manifest: _Optional[str] = ..., team: _Optional[str] = ..., environment: _Optional[str] = ..., user: _Optional[str] = ..., job_name: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("job_id", "namespace", "state", "backend")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    namespace: str
    state: str
    backend: str
    def __init__(self, job_id: _Optional[str] = ..., namespace: _Optional[str] = ..., state: _Optional[str] = ..., backend: _Optional[str] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("job_id", "include_logs", "include_results")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LOGS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    include_logs: bool
    include_results: bool
    def __init__(self, job_id: _Optional[str] = ..., include_logs: _Optional[bool] = ..., include_results: _Optional[bool] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("job_id", "state", "spark_ui_url", "logs", "error", "result_preview", "result_count", "result_schema", "output_path", "created_at", "updated_at", "attempts", "team", "environment", "user", "job_name", "namespace", "backend", "history")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPARK_UI_URL_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    RESULT_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESULT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: str
    spark_ui_url: str
    logs: str
    error: str
    result_preview: str
    result_count: int
    result_schema: str
    output_path: str
    created_at: str
    updated_at: str
    attempts: int
    team: str
    environment: str
    user: str
    job_name: str
    namespace: str
    backend: str
    history: _containers.RepeatedCompositeFieldContainer[StateChange]
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[str] = ..., spark_ui_url: _Optional[str] = ..., logs: _Optional[str] = ..., error: _Optional[str] = ..., result_preview: _Optional[str] = ..., result_count: _Optional[int] = ..., result_schema: _Optional[str] = ..., output_path: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., attempts: _Optional[int] = ..., team: _Optional[str] = ..., environment: _Optional[str] = ..., user: _Optional[str] = ..., job_name: _Optional[str] = ..., namespace: _Optional[str] = ..., backend: _Optional[str] = ..., history: _Optional[_Iterable[_Union[StateChange, _Mapping]]] = ...) -> None: ...

class StateChange(_message.Message):
    __slots__ = ("state", "at", "message")
    STATE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    state: str
    at: str
    message: str
    def __init__(self, state: _Optional[str] = ..., at: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("success", "state")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    state: str
    def __init__(self, success: _Optional[bool] = ..., state: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("team", "user", "state", "limit")
    TEAM_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    team: str
    user: str
    state: str
    limit: int
    def __init__(self, team: _Optional[str] = ..., user: _Optional[str] = ..., state: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[CheckResponse]
    def __init__(self, jobs: _Optional[_Iterable[_Union[CheckResponse, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("job_id", "log_filter")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_FILTER_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    log_filter: str
    def __init__(self, job_id: _Optional[str] = ..., log_filter: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("state", "log_lines")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOG_LINES_FIELD_NUMBER: _ClassVar[int]
    state: CheckResponse
    log_lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, state: _Optional[_Union[CheckResponse, _Mapping]] = ..., log_lines: _Optional[_Iterable[str]] = ...) -> None: ...
