"""The Pipeline interface every model family implements, whatever its backend.

`load()` is called by the registry only. A request reaches a pipeline already checked for all
that needs no model (backend/api/schemas/); `preprocess(request)` checks the rest (what needs the
model) and raises typed errors before any work or streaming starts; `run(features)` only calls
the model (under torch.inference_mode() on torch; no I/O, no validation); `postprocess(raw)`
returns plain data, or encoded bytes or chunks (TTS). `close()` drops the model so the registry
can hand its memory back.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Pipeline(ABC):
    """A model family behind one interface; the registry owns its lifetime."""

    #: registry name: tts, language, ai_voice
    name: str = ""
    #: backend that runs it: torch or onnx
    backend: str = ""

    @abstractmethod
    def load(self) -> None:
        """Build the model; called once, by the registry, inside its memory measurement."""

    @abstractmethod
    def preprocess(self, request: Any) -> Any:
        """Validate and prepare inputs; raise ApiError subclasses on bad input."""

    @abstractmethod
    def run(self, features: Any) -> Any:
        """Call the model; nothing else."""

    @abstractmethod
    def postprocess(self, raw: Any) -> Any:
        """Turn model outputs into plain data, or encoded bytes or chunks."""

    def __call__(self, request: Any) -> Any:
        return self.postprocess(self.run(self.preprocess(request)))

    def describe(self) -> dict[str, Any]:
        """Facts shown by GET /api/models (model id, dtype, ...)."""
        return {"backend": self.backend}

    def close(self) -> None:
        """Drop every reference to model weights."""
        for attribute in list(vars(self)):
            setattr(self, attribute, None)
