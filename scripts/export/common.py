"""What every exporter shares: the int8 step, the parity record and its table."""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

OPSET = 17

# Classifier parity (whisper language logits, AST labels).
FP32_TOLERANCE = 1e-3  # max abs error of logits
INT8_TOP1 = 1.0  # int8 must pick the same class on every parity input
INT8_TOLERANCE = 0.5  # and stay this close in logits


@dataclass
class Parity:
    """One parity measurement: torch vs ONNX on the same inputs."""

    model: str
    variant: str  # fp32 or int8
    metric: str  # "max abs err", "max abs err / peak", "top-1 agreement"
    value: float
    tolerance: float
    higher_is_better: bool = False
    shipped: bool = False

    @property
    def ok(self) -> bool:
        return self.value >= self.tolerance if self.higher_is_better else self.value <= self.tolerance

    def as_row(self) -> str:
        bound = ">=" if self.higher_is_better else "<="
        status = "ok" if self.ok else "FAIL"
        return (f"| {self.model} | {self.variant} | {self.metric} | {self.value:.3g} | {bound} {self.tolerance:g} "
                f"| {status} | {'yes' if self.shipped else 'no'} |")


def parity_failures(rows: list[Parity]) -> list[Parity]:
    """The rows of the variant that would ship that are out of tolerance (empty: it may ship)."""
    return [row for row in rows if row.shipped and not row.ok]


def table(rows: list[Parity]) -> str:
    head = "| model | variant | metric | value | tolerance | parity | shipped |\n|---|---|---|---|---|---|---|"
    return "\n".join([head, *(row.as_row() for row in rows)])


def torch_to_onnx(module, example: tuple, path: Path, input_names: list[str], output_names: list[str],
                  dynamic_axes: dict[str, dict[int, str]]) -> None:
    """torch.onnx's TorchScript exporter (the dynamo one needs onnxscript, not installed); its tracer notes silenced."""
    import torch

    with warnings.catch_warnings():
        # Tracer and deprecation notes about the legacy exporter are expected; parity checks the result.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), dynamo=False, opset_version=OPSET, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes)


def quantize_int8(fp32_path: Path, int8_path: Path, op_types: list[str] | None = None) -> None:
    """Dynamic int8 weights (activations quantised at run time), ONNX Runtime's own quantiser."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=False,
                     op_types_to_quantize=op_types)


def run_onnx(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of one run with the server's own session factory and default settings."""
    from backend.pipelines.onnx_session import make_session
    from config import build_settings

    session = make_session(path, build_settings())
    return session.run(None, feeds)


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float((reference.argmax(-1) == candidate.argmax(-1)).mean())


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def classifier_parity(family: str, fp32: Path, input_name: str, features: np.ndarray, reference: np.ndarray,
                      int8: bool) -> tuple[Path, list[Parity]]:
    """Parity of an exported classifier (logits) in fp32 and, if asked, int8; the file to ship and all rows."""
    def rows(variant: str, got: np.ndarray, abs_tolerance: float, top1_tolerance: float) -> list[Parity]:
        return [Parity(family, variant, "max abs err", max_abs(reference, got), abs_tolerance),
                Parity(family, variant, "top-1 agreement", top1_agreement(reference, got), top1_tolerance, True)]

    rows_fp32 = rows("fp32", run_onnx(fp32, {input_name: features})[0], FP32_TOLERANCE, 1.0)
    rows_int8: list[Parity] = []
    int8_path = None
    if int8:
        int8_path = fp32.with_name("model.int8.onnx")
        quantize_int8(fp32, int8_path)
        rows_int8 = rows("int8", run_onnx(int8_path, {input_name: features})[0], INT8_TOLERANCE, INT8_TOP1)
    return choose(fp32, int8_path, rows_fp32, rows_int8), rows_fp32 + rows_int8


def choose(fp32: Path, int8: Path | None, rows_fp32: list[Parity], rows_int8: list[Parity]) -> Path:
    """The variant to ship: int8 when its parity holds, else fp32; fp32 parity must always hold."""
    if int8 is not None and rows_int8 and all(row.ok for row in rows_int8):
        for row in rows_int8:
            row.shipped = True
        fp32.unlink(missing_ok=True)
        return int8
    if int8 is not None:
        failed = [row for row in rows_int8 if not row.ok]  # names the model, not the temporary folder
        logger.warning("%s: int8 parity out of tolerance (%s), shipping fp32", (rows_int8 or rows_fp32)[0].model,
                       "; ".join(f"{row.metric} {row.value:.3g} vs {row.tolerance:g}" for row in failed))
        int8.unlink(missing_ok=True)
    for row in rows_fp32:
        row.shipped = True
    return fp32
