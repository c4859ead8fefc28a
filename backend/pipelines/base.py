"""The Pipeline interface every model family implements, whatever its backend.

Before anything is built, `availability(settings)` says from the files alone (cheap: no
model, no runtime import) whether the pipeline can be served now, what its weights weigh at
the dtype it runs in, and if not, the one command that makes it so; `import_runtime()` imports
what its load needs (`runtime_modules(settings)`), so the registry can measure that import apart from the
model. `load()` is called by the registry only. A request reaches a pipeline already checked for all
that needs no model (backend/api/schemas/); `preprocess(request)` checks the rest (what needs the
model) and raises typed errors before any work or streaming starts; `run(features)` only calls
the model (under torch.inference_mode() on torch; no I/O, no validation); `postprocess(raw)`
returns plain data, or encoded bytes or chunks (TTS). `close()` drops the model so the registry
can hand its memory back.
"""
from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MB = 1024 * 1024


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def in_image() -> bool:
    """Inside the Docker image: it holds the server only (no scripts/, no .venv), so a fix cannot name them."""
    return not (PROJECT_ROOT / "scripts" / "fetch_models.py").is_file()


def fetch_command(model: str) -> str:
    """The one command that provisions a model on a machine that reaches the Hugging Face hub.

    Inside an image the fix is a rebuild where the model can be had, or a provisioned models folder
    mounted at MODEL_DIR.
    """
    if in_image():
        return (f"rebuild the image where {model} can be fetched (`scripts/build_image.sh lean` in a checkout; "
                f"`--build-arg STRICT_MODELS=1` makes a missing model fail the build), or mount a volume holding a "
                f"provisioned models folder (`scripts/fetch_models.py --models {model}` run in a checkout) at MODEL_DIR")
    return f"`.venv/bin/python scripts/fetch_models.py --models {model}` (or `make models`)"


def public_model_name(model_id: str) -> str:
    """How public answers (/api/models) name the model that answered: a hub id or a converted checkpoint's own
    name as it is, a local folder by its last part only (server paths stay private)."""
    if model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1:
        return f"local folder {Path(model_id).name}"
    return model_id


@dataclass(frozen=True)
class Availability:
    """Whether a pipeline's files are present, read from disk only (no model built, no runtime imported)."""

    servable: bool
    #: where the model comes from ("export models/onnx/kokoro", "packaged Kokoro-82M int8 ONNX")
    source: str = ""
    #: weight bytes at the dtype the model runs in, MB (the file sizes for int8/fp32 ONNX)
    weights_mb: float = 0.0
    #: names the model files: measured costs are shared under it, and a new export gets new ones
    identity: str = ""
    #: why it cannot be served (empty when it can)
    reason: str = ""
    #: the one command (or setting) that makes it servable
    fix: str = ""

    @classmethod
    def missing(cls, reason: str, fix: str) -> Availability:
        return cls(servable=False, reason=reason, fix=fix)


def runtime_missing(modules: Iterable[str]) -> Availability | None:
    """Which of a runtime's packages are not installed (found without importing them); None when all are."""
    absent = sorted({m.partition(".")[0] for m in modules if importlib.util.find_spec(m.partition(".")[0]) is None})
    if not absent:
        return None
    if in_image():
        fix = ("the full image: `scripts/build_image.sh full` in a checkout (render.yaml's worker builds it with "
               "IMAGE=full)") if "torch" in absent else "rebuild the image (`scripts/build_image.sh` in a checkout)"
    else:
        fix = "`./scripts/setup.sh full` (the torch install)" if "torch" in absent else "`./scripts/setup.sh lean`"
    return Availability.missing(f"{', '.join(absent)} not installed", fix)


def files_identity(paths: Iterable[Path]) -> str:
    """A name for a set of model files that changes when any of them is replaced (path, size, mtime)."""
    parts = []
    for path in paths:
        stat = path.stat()
        parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns // 1_000_000_000}")
    return "+".join(parts)


def files_mb(paths: Iterable[Path]) -> float:
    return sum(path.stat().st_size for path in paths) / _MB


class Pipeline(ABC):
    """A model family behind one interface; the registry owns its lifetime."""

    #: registry name: tts, language, ai_voice
    name: str = ""
    #: backend that runs it: torch or onnx
    backend: str = ""
    #: modules its load imports (its runtime), in import order: their cost is admitted apart
    runtime: tuple[str, ...] = ()

    @classmethod
    def availability(cls, settings: Any) -> Availability:
        """Whether this pipeline can be served now: its runtime installed and its files present."""
        return runtime_missing(cls.runtime_modules(settings)) or cls.find_files(settings)

    @classmethod
    def find_files(cls, settings: Any) -> Availability:
        """Whether its model files are present, from disk alone; pipelines that load files say so."""
        return Availability(servable=True, source=cls.backend)

    @classmethod
    def runtime_modules(cls, settings: Any) -> tuple[str, ...]:
        """The runtime this configuration's load imports; subclasses add what settings choose."""
        return cls.runtime

    @classmethod
    def import_runtime(cls, settings: Any) -> None:
        """Import the runtime its load needs, so the registry measures that import on its own."""
        for module in cls.runtime_modules(settings):
            importlib.import_module(module)

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
