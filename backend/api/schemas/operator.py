"""Shape of GET /api/operator: what the operator panel at / polls every few seconds."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OperatorMemory(BaseModel):
    """The service's memory against the budget, and the line admission keeps it under."""

    model_config = ConfigDict(extra="allow")

    used_mb: float
    budget_mb: float
    used_percent: float
    admission_limit_mb: float = Field(description="MEMORY_BUDGET_MB (or the cgroup's lower limit) - MEMORY_MARGIN_MB")
    reserved_by_other_workers_mb: float = Field(description="head-room other workers keep for their loaded models")


class OperatorCpu(BaseModel):
    """The CPU quota found at start (backend/cpu_quota.py), the threads chosen from it, the queue bounds (backend/limits.py)."""

    quota_cpus: float | None = Field(description="the cgroup's CPU quota in CPUs; null = no limit")
    affinity_cpus: int = Field(description="cores this worker may run on")
    cpus: float = Field(description="the smaller of the two: what the worker may keep busy")
    source: str = Field(description="where the quota was read")
    inference_threads: int = Field(description="threads of ONNX Runtime, torch and numpy's pools (INFERENCE_THREADS, 0 = from the quota)")
    queue_timeout_s: float = Field(description="the longest a request waits to be admitted to a busy model (QUEUE_TIMEOUT_S, unset = from the quota)")
    max_queue: int = Field(description="requests per model that may wait to be admitted (MAX_QUEUE)")
    tts_admitted: int = Field(description="TTS requests admitted at once, taking turns piece by piece (TTS_ADMITTED)")


class OperatorModel(BaseModel):
    """One model as the panel shows it (no paths, fixes or errors: those are in /ready and the admin details)."""

    name: str
    state: str
    servable: bool
    pinned: bool
    in_use: int
    measured_mb: float | None
    cost_mb: float
    cost_source: str
    request_mb: float | None = Field(None, description="the activations admission kept room for, for the last request's size")
    request_size: float | None = Field(None, description="the last request's size: TTS tokens of its longest piece, "
                                                         "analysis seconds capped by the window; null = unknown")
    request_rule: str | None = Field(None, description="where request_mb came from (backend/registry/request_cost.py)")
    use_count: int
    last_used: float | None
    provisioning: dict | None = Field(None, description="while provisioned beside the server: stage, percent, ...")


class RegistryEvent(BaseModel):
    """A load, unload, eviction, refusal, unavailable model or worker recycle, with its figures (MB, s)."""

    model_config = ConfigDict(extra="allow")

    at: float = Field(description="Unix time")
    event: str = Field(description="load | unload | evict | refuse | unavailable | recycle")
    model: str


class OperatorStatus(BaseModel):
    """Memory (the whole service), models and recent events (the answering worker, `pid`)."""

    at: float
    pid: int
    memory: OperatorMemory
    cpu: OperatorCpu
    models: list[OperatorModel]
    events: list[RegistryEvent]
