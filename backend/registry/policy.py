"""Policy: the registry's tunable figures, one mutable record its objects share (tests and the app set them live)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Policy:
    budget_mb: float  # the memory budget, before the cgroup's limit lowers it
    margin_mb: float = 48  # kept free below the budget: admission's line is budget - margin
    ttl_s: int = 300  # idle seconds before a model is unloaded (0: after each request; < 0: never)
    retry_after_s: int = 30  # Retry-After of a refusal that waiting can cure
    queue_timeout_s: float = 30  # the longest a request waits for a slot or a build for models in use
    max_queue: int = 64  # requests per model that may wait for a slot; more are refused at once
    workers: int = 1  # how many workers share the budget (each holds its own models)


class Setting:
    """An attribute of the owner that reads and writes the same-named field of its `policy`."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj.policy, self.name)  # type: ignore[attr-defined]

    def __set__(self, obj: object, value: Any) -> None:
        setattr(obj.policy, self.name, value)  # type: ignore[attr-defined]
