"""Kokoro-82M on torch (the `kokoro` package's KModel), loaded for memory.

Loading never holds two copies of the weights: KModel is built with its parameters on the meta
device (no random initialisation), the checkpoint is memory-mapped (`torch.load(mmap=True)`)
and its tensors become the parameters (`load_state_dict(assign=True)`). Kokoro's 89 weight-
normalised convolutions are then folded (`remove_weight_norm`): the hook otherwise keeps a
recomputed weight beside weight_g/weight_v, ~220 MB of duplicated fp32. The folded weights are
new heap tensors, so the mapped pages of weight_v are dropped from this process (madvise);
everything else stays file-backed, shared by every worker through the page cache.
"""
from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import mmap
import sys
import tempfile
import types
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import ModelUnavailable
from backend.pipelines.base import Availability, fetch_command, files_identity, files_mb
from backend.pipelines.tts.g2p import g2p_missing
from backend.pipelines.tts.pipeline import KokoroPipeline
from backend.pipelines.tts.voices import VoiceBank
from config import Settings

logger = logging.getLogger(__name__)

WEIGHT_FILES = {"hexgrad/Kokoro-82M": "kokoro-v1_0.pth", "hexgrad/Kokoro-82M-v1.1-zh": "kokoro-v1_1-zh.pth"}
_MADV_DONTNEED = 4


def _fetch_hint(settings: Settings) -> str:
    weights = WEIGHT_FILES.get(settings.kokoro_repo_id, "kokoro-v1_0.pth")
    return (f"fetch them with `huggingface-cli download {settings.kokoro_repo_id} config.json {weights} "
            f"'voices/*.pt' --local-dir models/kokoro` on a machine with network access, then set "
            f"KOKORO_MODEL_DIR=models/kokoro")


def _missing_files(folder: Path) -> list[str]:
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any(folder.glob("*.pth")):
        missing.append("*.pth (weights)")
    if not any((folder / "voices").glob("*.pt")):
        missing.append("voices/*.pt")
    return missing


def cached_folder(settings: Settings) -> Path | None:
    """The Kokoro folder already on disk (KOKORO_MODEL_DIR, else the hub cache); never downloads."""
    if settings.kokoro_model_dir is not None:
        return settings.kokoro_model_dir if settings.kokoro_model_dir.is_dir() else None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(settings.kokoro_repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def model_folder(settings: Settings) -> Path:
    """A complete Kokoro folder: KOKORO_MODEL_DIR, else a hub snapshot; 503 naming what is missing."""
    if settings.kokoro_model_dir is not None:
        folder = settings.kokoro_model_dir
        missing = _missing_files(folder) if folder.is_dir() else ["the folder itself"]
        if missing:
            raise ModelUnavailable(f"KOKORO_MODEL_DIR={folder} is missing {', '.join(missing)}; {_fetch_hint(settings)}",
                                   model="tts", missing=missing)
        return folder
    from huggingface_hub import snapshot_download

    weights = WEIGHT_FILES.get(settings.kokoro_repo_id, "*.pth")
    try:
        folder = Path(snapshot_download(settings.kokoro_repo_id,
                                        allow_patterns=["config.json", weights, "voices/*.pt"]))
    except Exception as exc:  # offline, no network, auth: all mean "not here"
        missing = ["config.json", weights, "voices/*.pt"]
        raise ModelUnavailable(
            f"Kokoro weights are not available: KOKORO_MODEL_DIR is unset and {settings.kokoro_repo_id} could not be "
            f"fetched from the Hugging Face hub or its cache ({type(exc).__name__}); missing {', '.join(missing)}; "
            f"{_fetch_hint(settings)}", model="tts", missing=missing) from exc
    missing = _missing_files(folder)
    if missing:
        raise ModelUnavailable(f"{folder} is missing {', '.join(missing)}; {_fetch_hint(settings)}",
                               model="tts", missing=missing)
    return folder


def find_files(settings: Settings) -> Availability:
    """A complete Kokoro folder on disk (KOKORO_MODEL_DIR, else the hub cache); never downloads."""
    problem = g2p_missing(settings)
    if problem is not None:
        return problem
    folder = cached_folder(settings)
    missing = _missing_files(folder) if folder is not None else ["config.json", "*.pth (weights)", "voices/*.pt"]
    if missing:
        where = f"KOKORO_MODEL_DIR={settings.kokoro_model_dir}" if settings.kokoro_model_dir else \
            f"the hub cache of {settings.kokoro_repo_id}"
        return Availability.missing(f"{where} is missing {', '.join(missing)}", fetch_command("tts"))
    assert folder is not None
    try:
        weights = weights_file(folder, settings)
    except ModelUnavailable as exc:
        return Availability.missing(exc.message, fetch_command("tts"))
    # Stored and run in float32 (bf16/fp16 fail in Kokoro's LSTMs): the file size is the weights.
    return Availability(servable=True, source=f"torch checkpoint {folder}", weights_mb=files_mb([weights]),
                        identity=files_identity([weights]))


def voice_names(settings: Settings) -> list[str]:
    """Names of voices/*.pt in the folder on disk; [] when there is none yet."""
    folder = cached_folder(settings)
    return sorted(p.stem for p in (folder / "voices").glob("*.pt")) if folder else []


def weights_file(folder: Path, settings: Settings) -> Path:
    """The folder's weights: the repo's published file name, else its only *.pth."""
    preferred = folder / WEIGHT_FILES.get(settings.kokoro_repo_id, "kokoro-v1_0.pth")
    if preferred.is_file():
        return preferred
    candidates = sorted(folder.glob("*.pth"))
    if len(candidates) != 1:
        raise ModelUnavailable(f"{folder}: expected one *.pth weights file, found {len(candidates)}", model="tts")
    return candidates[0]


@contextmanager
def _parameters_on_meta():
    """Modules built inside get their parameters on the meta device: no memory, no random init.

    Buffers and plain tensors (STFT windows, position ids) stay real, which a plain
    `torch.device("meta")` context would not allow.
    """
    import torch

    register = torch.nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=False)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def _drop_mapped_pages(tensors: list[Any]) -> int:
    """Tell the kernel this process no longer needs the mapped file pages of these tensors; bytes dropped."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE
    dropped = 0
    for tensor in tensors:
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        first, last = -(-start // page) * page, end // page * page  # whole pages inside the tensor only
        if last > first and libc.madvise(first, last - first, _MADV_DONTNEED) == 0:
            dropped += last - first
    return dropped


def import_kmodel():
    """kokoro.model.KModel without running kokoro/__init__.py.

    The package's __init__ imports KPipeline, hence misaki.en and spaCy (~75 MB RSS and seconds
    of import) for a G2P this service does not use; the model module needs none of it.
    """
    if "kokoro" not in sys.modules:
        spec = importlib.util.find_spec("kokoro")
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailable("the kokoro package is not installed (pip install kokoro==0.9.4)", model="tts")
        package = types.ModuleType("kokoro")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["kokoro"] = package
    from kokoro.model import KModel
    from loguru import logger as loguru_logger

    loguru_logger.disable("kokoro")  # what kokoro/__init__ would have done: no per-call debug output
    return KModel


def new_kmodel(config: dict[str, Any], *, disable_complex: bool = False):
    """A KModel of this config with no checkpoint read: randomly initialised (or on meta, inside
    _parameters_on_meta). disable_complex swaps the complex STFT for the real one ONNX can export."""
    import torch

    KModel = import_kmodel()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # Kokoro's own construction notes: a 1-layer LSTM given dropout, the legacy weight_norm API.
        warnings.filterwarnings("ignore", message="dropout option adds dropout", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*weight_norm.* is deprecated", category=FutureWarning)
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)  # KModel loads this instead of downloading: weights come next
        return KModel(repo_id="hexgrad/Kokoro-82M", config=config, model=str(empty), disable_complex=disable_complex)


def build_model(folder: Path, weights: Path, *, fold_weight_norm: bool = True, int8: bool = False,
                disable_complex: bool = False):
    """KModel from a checkpoint without a second copy of its weights; see the module docstring."""
    import torch
    from torch.nn.utils.weight_norm import WeightNorm

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    with torch.inference_mode():
        with _parameters_on_meta():
            model = new_kmodel(config, disable_complex=disable_complex)
        state = torch.load(weights, map_location="cpu", mmap=True, weights_only=True)
        for key, component_state in state.items():
            if not hasattr(model, key):
                raise ModelUnavailable(f"{weights.name}: unknown component {key!r}", model="tts")
            component_state = {k.removeprefix("module."): v for k, v in component_state.items()}
            result = getattr(model, key).load_state_dict(component_state, strict=False, assign=True)
            if result.unexpected_keys:
                logger.debug("ignored %d unexpected keys in %s", len(result.unexpected_keys), key)
        unloaded = [name for name, p in model.named_parameters() if p.device.type == "meta"]
        if unloaded:
            raise ModelUnavailable(f"{weights.name} does not match config.json: {len(unloaded)} parameters "
                                   f"missing, e.g. {unloaded[0]}", model="tts")
        dropped = 0
        if fold_weight_norm:
            for module in model.modules():
                for hook in list(module._forward_pre_hooks.values()):
                    if isinstance(hook, WeightNorm):
                        replaced = [getattr(module, f"{hook.name}_g"), getattr(module, f"{hook.name}_v")]
                        torch.nn.utils.remove_weight_norm(module, hook.name)
                        # At once, layer by layer: the peak stays one layer above the steady size.
                        dropped += _drop_mapped_pages(replaced)
        if int8:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        del state
    logger.info("kokoro weights %s loaded (fold_weight_norm=%s int8=%s, %.0f MB of mapped pages dropped)",
                weights.name, fold_weight_norm, int8, dropped / 2**20)
    return model.eval(), config


class KokoroTorchPipeline(KokoroPipeline):
    """Kokoro-82M with the `kokoro` package on torch: the reference backend."""

    backend = "torch"
    runtime = ("torch", "transformers.modeling_utils", "kokoro.model")  # kokoro's ALBERT is a transformers model
    voice_names = staticmethod(voice_names)

    find_files = staticmethod(find_files)

    @classmethod
    def import_runtime(cls, settings: Settings) -> None:
        for module in cls.runtime_modules(settings):
            if module == "kokoro.model":
                import_kmodel()  # without kokoro/__init__ (it imports spaCy)
            else:
                importlib.import_module(module)

    def __init__(self, settings: Settings, *, fold_weight_norm: bool = True) -> None:
        super().__init__(settings)
        self.fold_weight_norm = fold_weight_norm
        self.model: Any = None

    def load(self) -> None:
        import torch

        self._load_phonemizer()  # a missing G2P dependency fails before the weights are read
        threads = self.settings.inference_threads
        if threads and threads < torch.get_num_threads():
            # Only ever lowered: after a fork with torch imported, raising it is what hangs.
            torch.set_num_threads(threads)
        folder = model_folder(self.settings)
        weights = weights_file(folder, self.settings)
        self.model, config = build_model(folder, weights, fold_weight_norm=self.fold_weight_norm,
                                         int8=self.settings.use_int8_quantization)
        self.vocab = config["vocab"]
        voice_dir = folder / "voices"

        def read(name: str) -> np.ndarray:
            return torch.load(voice_dir / f"{name}.pt", map_location="cpu", weights_only=True).float().numpy()

        self.voices = VoiceBank([p.stem for p in voice_dir.glob("*.pt")], read)
        self.source = str(weights)

    def _synthesize(self, token_ids: list[int], style: np.ndarray, speed: float, last: bool = True) -> np.ndarray:
        return self._synthesize_timed(token_ids, style, speed, last)[0]

    timed = True  # kokoro's forward_with_tokens returns its pred_dur

    def _synthesize_timed(self, token_ids: list[int], style: np.ndarray, speed: float,
                          last: bool = True) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            input_ids = torch.tensor([[0, *token_ids, 0]], dtype=torch.long)
            audio, durations = self.model.forward_with_tokens(input_ids, torch.from_numpy(style), speed)
        return audio.numpy(), durations.float().numpy().reshape(-1)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fold_weight_norm": self.fold_weight_norm,
                "int8": self.settings.use_int8_quantization}
