"""What the torch backends of language and AI-voice detection share: where a transformers
checkpoint comes from (a local folder or the Hugging Face hub, with one clear 503 when it is
missing) and its precision (dynamic int8 or bfloat16, as configured).

Nothing here imports torch or transformers at module level; each function does when a load()
calls it, so the onnx backend never pays for them.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import ModelUnavailable
from config import Settings

logger = logging.getLogger(__name__)


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
