"""AnimationPipeline: portrait + 16 kHz speech -> talking-head MP4 (our own SadTalker inference).

Request (a dict; the caller has already decoded the audio with backend.audio.decode, or made it
with the TTS pipeline):
    {"image": bytes (PNG/JPEG/WebP), "audio": float32 mono 16 kHz, "output_path": str | Path,
     "size": 256 | 512 = 256, "still": bool = False, "preprocess": "crop" | "resize" | "full" = "crop",
     "pose_style": 0..45 = 0, "expression_scale": 0..3 = 1.0, "seed": int >= 0 = 0}
Result (plain data): {"path", "frames", "seconds", "width", "height", "size", "preprocess",
     "seconds_per_frame" (render + encode), "dtype", "batch_size"}

Contract: preprocess() decodes and validates everything (options, audio length, checkpoint
files present, image header before pixels, face found) and raises typed errors before any
model work; the checks that need no model are also functions of their own (AnimationOptions,
check_audio, image_size, decode_image) so a caller can refuse a request before queueing it.
run() only runs models: the 3DMM, audio->coefficient and keypoint networks one after another,
each read from the checkpoint when its stage starts and dropped when it ends (holding all five
fp32 networks at once would cost 766 MB on top of the renderer's working set), and returns a
lazy stream of rendered frame batches. postprocess() drains that stream into the MP4 (written
as <path>.part, renamed when complete), so a batch is rendered, encoded and freed before the
next one: memory does not grow with the video. progress(stage, done, total) is called per
stage (STAGES) and per batch; cancelled() is checked between stages and before each batch and
raises JobCancelled (an unfinished .part file is removed).

Nothing is built at import: the module imports numpy only (torch and LiteRT on load()), so a
`multiprocessing` spawn child imports and runs it like any other process.
"""
from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import BadRequest, InvalidImage, ModelUnavailable, NoFaceDetected, PayloadTooLarge
from backend.pipelines.animation import audio as audio_features
from backend.pipelines.animation import checkpoint_files
from backend.pipelines.animation.face import (PREPROCESS_MODES, FaceLandmarker, NoFaceFound, SourceImage,
                                              prepare_source, recon_input)
from backend.pipelines.base import Availability, Pipeline, files_identity, files_mb, in_image

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
SIZES = checkpoint_files.SIZES
MIN_FRAMES = 2  # 80 ms: below this there is nothing to animate
MAX_POSE_STYLE = 45
EXPRESSION_SCALE_RANGE = (0.0, 3.0)
STAGES = ("face", "3dmm", "coefficients", "render", "encode")

Progress = Callable[[str, int, int], None]


class JobCancelled(Exception):
    """The job was cancelled between two render batches."""


@dataclass(frozen=True)
class AnimationOptions:
    """SadTalker's options, validated (BadRequest naming the option otherwise)."""

    size: int = 256
    still: bool = False
    preprocess: str = "crop"
    pose_style: int = 0
    expression_scale: float = 1.0
    seed: int = 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AnimationOptions:
        """The options in `values` (absent ones take their defaults); other keys are ignored."""
        defaults = cls()
        return cls(size=_choice(values.get("size", defaults.size), SIZES, "size"),
                   still=_flag(values.get("still", defaults.still), "still"),
                   preprocess=_choice(values.get("preprocess", defaults.preprocess), PREPROCESS_MODES, "preprocess"),
                   pose_style=_integer(values.get("pose_style", defaults.pose_style), 0, MAX_POSE_STYLE, "pose_style"),
                   expression_scale=_number(values.get("expression_scale", defaults.expression_scale),
                                            *EXPRESSION_SCALE_RANGE, "expression_scale"),
                   seed=_integer(values.get("seed", defaults.seed), 0, 2**63 - 1, "seed"))

    @property
    def full(self) -> bool:
        return self.preprocess == "full"

    def required_files(self) -> list[str]:
        """The checkpoint files a job with these options reads."""
        return checkpoint_files.required_files(self.size, full=self.full)


@dataclass
class AnimationFeatures:
    """Everything run() needs, validated."""

    source: SourceImage
    audio: np.ndarray  # 16 kHz mono, truncated to whole frames
    windows: np.ndarray  # (T, 80, 16)
    options: AnimationOptions
    output_path: Path

    @property
    def frames(self) -> int:
        return self.windows.shape[0]


@dataclass
class RenderedVideo:
    """run()'s output: frame batches still to be rendered, pulled by postprocess()."""

    features: AnimationFeatures
    batches: Iterator[np.ndarray]  # uint8 (n, H, W, 3), in frame order
    width: int
    height: int


def check_audio(samples: Any, max_seconds: int) -> np.ndarray:
    """16 kHz mono float samples long enough to animate and within MAX_ANIMATION_SECONDS."""
    if not isinstance(samples, np.ndarray) or samples.ndim != 1:
        raise BadRequest("audio must be decoded mono 16 kHz samples")
    seconds = samples.size / audio_features.SAMPLE_RATE_HZ
    if seconds > max_seconds:
        raise PayloadTooLarge(f"audio is {seconds:.1f} s long; the limit is {max_seconds} s (MAX_ANIMATION_SECONDS)",
                              max_seconds=max_seconds)
    if audio_features.frame_count(samples.size) < MIN_FRAMES:
        raise BadRequest(f"audio is {seconds * 1000:.0f} ms long: at least {MIN_FRAMES * 40} ms is needed")
    if not np.isfinite(samples).all():
        raise BadRequest("audio has NaN or infinite samples")
    return samples.astype(np.float32, copy=False)


def image_size(data: Any, max_pixels: int) -> tuple[int, int]:
    """(width, height) of an accepted portrait, read from its header alone (no pixel decoded)."""
    with _opened_image(data, max_pixels) as image:
        return image.size


def decode_image(data: Any, max_pixels: int) -> np.ndarray:
    """The portrait as RGB uint8 (H, W, 3), EXIF orientation applied; the header is checked first."""
    from PIL import ImageOps

    with _opened_image(data, max_pixels) as image:
        try:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt pixel data
            raise InvalidImage("not a readable image: its pixel data is truncated or corrupt; send PNG, JPEG or "
                               "WebP") from exc


@contextmanager
def _opened_image(data: Any, max_pixels: int) -> Iterator[Any]:
    """PIL's lazy image (header parsed, pixels not decoded), refused by format or pixel count."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, bytes | bytearray) or not data:
        raise InvalidImage("image is required: a PNG, JPEG or WebP file")
    # PIL's own bomb check would refuse with its limit, not ours, and without the size: off, as the
    # header's size is checked against MAX_IMAGE_PIXELS below, before any pixel is decoded.
    Image.MAX_IMAGE_PIXELS = None
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # PIL's text names its stream object (a repr), not what was sent.
        raise InvalidImage(f"not a readable image: {len(data)} bytes that are not a PNG, JPEG or WebP file") from exc
    with image:
        if image.format not in IMAGE_FORMATS:
            raise InvalidImage(f"image format {image.format} is not accepted; send PNG, JPEG or WebP")
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLarge(f"image is {width}x{height} pixels, above the {max_pixels} pixel limit "
                                  "(MAX_IMAGE_PIXELS); refused before decoding", max_pixels=max_pixels)
        yield image


def bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def output_size(source: SourceImage, size: int) -> tuple[int, int]:
    """(width, height): the reference's aspect restore (S, int(S h / w)); full mode: the upload's size."""
    if source.mode == "full":
        height, width = source.working.shape[:2]
        return width, height
    w, h = source.aspect_size
    return size, max(2, int(size * h / w))


def face_models_missing(settings: Any) -> Availability | None:
    """Availability naming the missing face model files (None when both are there)."""
    folder = settings.face_model_root
    missing = FaceLandmarker.missing_files(folder)
    if not missing:
        return None
    fix = ("the full image has them (`scripts/build_image.sh full`), or mount a folder holding them at "
           "FACE_MODEL_DIR" if in_image() else "`.venv/bin/python -m scripts.fetch_face_assets models` "
           "(or set FACE_MODEL_DIR)")
    return Availability.missing(f"face model files missing in {folder}: {', '.join(missing)}", fix)


class AnimationPipeline(Pipeline):
    """SadTalker on torch, from the official checkpoint files in SADTALKER_CHECKPOINT_DIR."""

    name = "animation"
    backend = "torch"
    runtime = ("torch", "ai_edge_litert.interpreter")

    def __init__(self, settings: Any, *, progress: Progress | None = None,
                 cancelled: Callable[[], bool] | None = None, fast_renderer: bool = True) -> None:
        self.settings = settings
        self.progress = progress or (lambda stage, done, total: None)
        self.cancelled = cancelled or (lambda: False)
        self.fast_renderer = fast_renderer
        self.checkpoint_dir: Path | None = None
        self.landmarker: FaceLandmarker | None = None
        self.dtype = "float32"

    @classmethod
    def find_files(cls, settings: Any) -> Availability:
        """Servable when the face models and the default job's files (256 px, crop) are present.

        weights_mb is what a job holds at its peak, the generator and the mapping net (the other
        networks are freed before the generator loads), read from the safetensors header.
        """
        face = face_models_missing(settings)
        if face is not None:
            return face
        folder = settings.sadtalker_checkpoint_dir
        names = AnimationOptions().required_files()
        missing = checkpoint_files.missing_files(folder, names)
        if missing:
            return Availability.missing(checkpoint_files.missing_message(folder, missing), checkpoint_files.fetch_hint())
        renderer, mapping = (Path(folder) / name for name in names)
        return Availability(servable=True, source=f"SadTalker checkpoints in {folder}",
                            weights_mb=checkpoint_files.tensors_mb(renderer, "generator.") + files_mb([mapping]),
                            identity=files_identity([renderer, mapping]))

    # --- lifetime ----------------------------------------------------------------------------
    def load(self) -> None:
        """Face models (small, needed to validate a request); the networks are read per stage in run()."""
        import torch

        from backend.memory.malloc import set_malloc_mmap_threshold

        # each stage frees hundreds of MB of weights and activations: they must go back to the OS
        set_malloc_mmap_threshold(self.settings.malloc_mmap_threshold_kb)
        face = face_models_missing(self.settings)
        if face is not None:
            raise ModelUnavailable(f"{face.reason}; {face.fix}", model=self.name,
                                   missing_files=FaceLandmarker.missing_files(self.settings.face_model_root))
        self.landmarker = FaceLandmarker(self.settings.face_model_root)
        self.checkpoint_dir = self.settings.sadtalker_checkpoint_dir
        if self.settings.inference_threads:
            torch.set_num_threads(self.settings.inference_threads)
        if self.settings.model_dtype == "bfloat16":
            if bf16_supported():
                self.dtype = "bfloat16"
            else:
                logger.warning("MODEL_DTYPE=bfloat16 but this CPU has no native bf16: animation stays float32")

    # --- contract ------------------------------------------------------------------------------
    def preprocess(self, request: dict[str, Any]) -> AnimationFeatures:
        options = AnimationOptions.from_mapping(request)
        if not request.get("output_path"):
            raise BadRequest("output_path is required")
        samples = check_audio(request.get("audio"), self.settings.max_animation_seconds)
        checkpoint_files.require_files(self.checkpoint_dir, options.required_files())
        image = decode_image(request.get("image"), self.settings.max_image_pixels)
        self.progress("face", 0, 1)
        assert self.landmarker is not None, "load() first"
        try:
            face = self.landmarker.landmarks(image)
        except NoFaceFound as exc:
            raise NoFaceDetected(f"detected no face in the image: {exc}; send a portrait with one visible, "
                                 "roughly frontal human face") from exc
        source = prepare_source(image, face, options.size, options.preprocess)
        self.progress("face", 1, 1)
        frames = audio_features.frame_count(samples.size)
        samples = samples[:frames * audio_features.SAMPLES_PER_FRAME]
        return AnimationFeatures(source=source, audio=samples, windows=audio_features.mel_windows(samples),
                                 options=options, output_path=Path(request["output_path"]))

    def run(self, features: AnimationFeatures) -> RenderedVideo:
        import torch

        from backend.pipelines.animation import checkpoints
        from backend.pipelines.animation.coeffs import predict_coefficients, source_coefficients
        from backend.pipelines.animation.render import CoefficientWindows, Renderer, canonical_keypoints, to_uint8

        options = features.options
        heavy_dtype = torch.bfloat16 if self.dtype == "bfloat16" else torch.float32
        # each network call below runs under torch.inference_mode() (coeffs.py, render.py)
        self.progress("3dmm", 0, 1)
        image224, trans_params = recon_input(features.source)
        recon = self._network("face_3drecon", options.size)
        source = source_coefficients(recon, image224, trans_params)
        del recon
        self.progress("3dmm", 1, 1)
        self._stop_if_cancelled("after the 3DMM stage")

        self.progress("coefficients", 0, 2)
        expnet = self._network("audio2exp", options.size)
        posevae = self._network("audio2pose", options.size)
        self.progress("coefficients", 1, 2)
        coeffs = predict_coefficients(expnet, posevae, features.windows, source, options.pose_style, options.seed)
        del expnet, posevae
        self.progress("coefficients", 2, 2)
        self._stop_if_cancelled("after the coefficients stage")

        windows = CoefficientWindows(coeffs, source, full=options.full, still=options.still,
                                     expression_scale=options.expression_scale)
        image = torch.from_numpy(features.source.pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        self.progress("render", 0, features.frames)
        # one heavy network at a time: the detector (168 MB fp32) is gone before the generator loads
        kp_detector = self._network("kp_extractor", options.size, heavy_dtype)
        canonical = canonical_keypoints(kp_detector, image)
        del kp_detector
        generator = self._network("generator", options.size, heavy_dtype)
        if self.fast_renderer:
            from backend.pipelines.animation.fast_generator import optimise_generator

            generator = optimise_generator(generator)
        mapping = checkpoints.load_mapping(self.checkpoint_dir, full=options.full)
        renderer = Renderer(generator, mapping, dtype=heavy_dtype)
        renderer.prepare(canonical, image, windows.source())
        width, height = output_size(features.source, options.size)
        batch_size = self.settings.animation_batch_size

        def batches() -> Iterator[np.ndarray]:
            for start in range(0, features.frames, batch_size):
                self._stop_if_cancelled(f"after {start} of {features.frames} frames")
                frames = to_uint8(renderer.render(windows.batch(start, batch_size)))
                self.progress("render", min(start + batch_size, features.frames), features.frames)
                yield _fit(frames, features.source, width, height)

        return RenderedVideo(features=features, batches=batches(), width=width, height=height)

    def postprocess(self, raw: RenderedVideo) -> dict[str, Any]:
        from backend.pipelines.animation.video import Mp4Writer, even

        features = raw.features
        started = time.perf_counter()
        done = 0
        with Mp4Writer(features.output_path, raw.width, raw.height, audio=features.audio) as writer:
            for frames in raw.batches:
                writer.write_frames(frames)
                done += len(frames)
                self.progress("encode", done, features.frames)
            path = writer.finish()
        elapsed = time.perf_counter() - started
        return {"path": str(path), "frames": done, "seconds": done / audio_features.FPS,
                "width": even(raw.width), "height": even(raw.height), "size": features.options.size,
                "preprocess": features.options.preprocess, "seconds_per_frame": round(elapsed / max(done, 1), 3),
                "dtype": self.dtype, "batch_size": self.settings.animation_batch_size}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dtype": self.dtype,
                "checkpoint_dir": str(self.checkpoint_dir) if self.checkpoint_dir else None}

    # --- helpers -------------------------------------------------------------------------------
    def _stop_if_cancelled(self, where: str) -> None:
        if self.cancelled():
            raise JobCancelled(f"cancelled {where}")

    def _network(self, name: str, size: int, dtype=None):
        import torch

        from backend.pipelines.animation import checkpoints

        return checkpoints.load_network(self.checkpoint_dir, size, name, dtype or torch.float32)


def _fit(frames: np.ndarray, source: SourceImage, width: int, height: int) -> np.ndarray:
    """Resize rendered squares to the output size; full mode pastes them back into the upload."""
    from backend.pipelines.animation.face import paste_back, resize_linear

    if source.mode == "full":
        return np.stack([paste_back(frame, source) for frame in frames])
    if frames.shape[1] == height and frames.shape[2] == width:
        return frames
    return np.stack([np.clip(np.rint(resize_linear(frame, width, height)), 0, 255).astype(np.uint8)
                     for frame in frames])


def _choice(value: Any, accepted: tuple, name: str):
    if value not in accepted or isinstance(value, bool):
        raise BadRequest(f"{name} must be one of {', '.join(map(str, accepted))}; got {value!r}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false; got {value!r}")
    return value


def _integer(value: Any, low: int, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer in {low}..{high}; got {value!r}")
    return value


def _number(value: Any, low: float, high: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
        raise BadRequest(f"{name} must be a number in {low}..{high}; got {value!r}")
    return float(value)
