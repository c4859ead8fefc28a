"""What the torch backends of language and AI-voice detection share: where a transformers
checkpoint comes from (a local folder or the Hugging Face hub, with one clear 503 when it is
missing) and its precision (dynamic int8 or bfloat16, as configured).

Nothing here imports torch or transformers at module level; each function does when a load()
calls it, so the onnx backend never pays for them.
"""
from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import ModelUnavailable
from backend.pipelines.base import Availability, fetch_command, files_identity, files_mb
from config import Settings

logger = logging.getLogger(__name__)


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
_INT_BYTES = {"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def safetensors_mb(path: Path, float_bytes: int) -> float:
    """Weight bytes of a safetensors file with its floating tensors at `float_bytes` each, from its header alone."""
    with open(path, "rb") as file:
        header = json.loads(file.read(int.from_bytes(file.read(8), "little")))
    total = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        size = float_bytes if tensor["dtype"] in _FLOAT_DTYPES else _INT_BYTES.get(tensor["dtype"], 4)
        total += math.prod(tensor["shape"]) * size
    return total / 2**20


def hub_cache_folder(repo_id: str) -> Path | None:
    """The cached snapshot folder of a hub repo that holds its config.json; None when not cached (never downloads)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def looks_local(source: str) -> bool:
    """A model source meant as a local folder rather than a Hugging Face id."""
    return source.startswith((".", "/", "~")) or Path(source).exists() or source.count("/") > 1


@dataclass(frozen=True)
class Checkpoint:
    """Where one family's transformers weights come from, and what to tell an operator who has none."""

    label: str  # how messages name the weights: "whisper", "AST"
    setting: str  # the variable naming the source: WHISPER_MODEL
    default: str  # the published checkpoint, offered when a configured folder is missing
    files: str  # what a local folder must hold

    def fetch_hint(self, source: str) -> str:
        return (f"fetch it once with `huggingface-cli download {source}` (unset HF_HUB_OFFLINE while doing so), "
                f"or set {self.setting} to a local folder holding {self.files}")

    def find_files(self, source: str, model: str, settings: Settings) -> Availability:
        """Whether `source` (a folder, or a hub id in the local cache) holds config and weights, from disk alone."""
        folder = Path(source) if looks_local(source) else hub_cache_folder(source)
        weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None) if folder else None
        if folder is None or weights is None or not (folder / "config.json").is_file():
            where = f"{self.setting} folder {source}" if looks_local(source) else f"the hub cache of {source}"
            return Availability.missing(f"{where} holds no {self.label} checkpoint ({self.files})", fetch_command(model))
        # Stored weights at the dtype they will run in (MODEL_DTYPE); int8 is not counted as a saving.
        float_bytes = 2 if settings.model_dtype == "bfloat16" and not settings.use_int8_quantization else 4
        mb = safetensors_mb(weights, float_bytes) if weights.suffix == ".safetensors" else files_mb([weights])
        return Availability(servable=True, source=f"torch checkpoint {folder}", weights_mb=mb,
                            identity=files_identity([weights]))

    def load(self, model_class: Any, source: str, model: str) -> Any:
        """`model_class.from_pretrained(source)` in float32, eval mode; ModelUnavailable when not on disk or hub."""
        import torch

        if looks_local(source) and not Path(source).is_dir():
            raise ModelUnavailable(f"{self.setting} folder {source} does not exist; " + self.fetch_hint(self.default),
                                   model=model)
        try:
            return model_class.from_pretrained(source, dtype=torch.float32).eval()
        except OSError as exc:
            raise ModelUnavailable(f"{self.label} weights for {source!r} are not available ({exc}); "
                                   f"{self.fetch_hint(source)}", model=model) from exc


def bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def quantize_int8(module: Any) -> Any:
    """Dynamic int8 quantisation of every Linear, in place (no second fp32 copy during the conversion)."""
    import torch

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which this project does not ship.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\.")
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
        return torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def detach_from_checkpoint_file(model: Any) -> None:
    """Copy the tensors still backed by the mmap'd safetensors file into memory of their own.

    After quantisation most weights are new int8 copies, but the few fp32 tensors left (convs,
    norms, positions) keep the whole file mapped, and the pages quantize_dynamic read stay
    resident (~77 MB for whisper-tiny, measured): copying the small rest lets the mapping go.
    """
    import torch

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.data = tensor.data.clone()
        for module in model.modules():
            # A dynamically quantised Linear keeps the original fp32 bias (a view into the file)
            # inside its packed params, out of reach of parameters().
            if hasattr(module, "_weight_bias") and hasattr(module, "set_weight_bias"):
                weight, bias = module._weight_bias()
                module.set_weight_bias(weight, None if bias is None else bias.detach().clone())


def apply_precision(model: Any, settings: Settings, label: str, *, int8_part: str | None = None) -> tuple[Any, str, bool]:
    """USE_INT8_QUANTIZATION, else MODEL_DTYPE=bfloat16 where the CPU has it; returns (model, dtype, int8).

    int8_part names the submodule to quantise (the rest stays fp32), or None for the whole model.
    """
    if settings.use_int8_quantization:
        if int8_part is None:
            model = quantize_int8(model)
        else:
            setattr(model, int8_part, quantize_int8(getattr(model, int8_part)))
        detach_from_checkpoint_file(model)  # else the file stays mapped and its read pages resident
        if settings.model_dtype == "bfloat16":
            logger.warning("USE_INT8_QUANTIZATION wins over MODEL_DTYPE=bfloat16 for %s", label)
        return model, "float32", True
    if settings.model_dtype == "bfloat16":
        if bf16_supported():
            import torch

            return model.to(torch.bfloat16), "bfloat16", False
        logger.warning("MODEL_DTYPE=bfloat16 but this CPU has no bf16 support: %s stays float32", label)
    return model, "float32", False
