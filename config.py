"""Settings: the only reader of the environment.

Every field is documented with its unit and what 0 / -1 mean. `load_settings()` reads the
environment once; a bad value stops the process with one line naming the variable and the
accepted range (no traceback), because an operator reading Render's log needs exactly that.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MODEL_NAMES = ("tts", "language", "ai_voice", "animation")  # one family each in backend/catalog.py
CommaList = Annotated[list[str], NoDecode]
VoiceTable = Annotated[dict[str, str], NoDecode]
# OpenAI's voices -> the nearest Kokoro-82M v1.0 English voice by gender and accent (the table
# VOICE_ALIASES replaces; GET /v1/audio/voices shows it with what each one speaks here).
OPENAI_VOICE_ALIASES = {
    "alloy": "af_alloy", "ash": "am_adam", "ballad": "bm_george", "coral": "af_heart", "echo": "am_echo",
    "fable": "bm_fable", "nova": "af_nova", "onyx": "am_onyx", "sage": "af_sarah", "shimmer": "af_bella",
    "verse": "am_michael",
}


#: settings that name a Hugging Face id or a local folder: made absolute when written as a path
LOCAL_OR_HUB_FIELDS = ("whisper_model", "ai_voice_model")
LOCAL_PREFIXES = ("/", "./", "../", "~")


def absolute(path: Path) -> Path:
    """`path` from the working directory (with ~ expanded), normalised; the one place a relative path is resolved."""
    return Path(os.path.abspath(path.expanduser()))


class ConfigError(Exception):
    """A setting has a value outside its accepted range; the message is one line for the operator."""


class Settings(BaseSettings):
    """Typed settings read from the environment (and nothing else)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", validate_default=True)

    # --- Gunicorn -------------------------------------------------------------------------
    workers: int = Field(1, ge=1, le=32, description="Gunicorn worker processes (1..32). Each worker holds its own models.")
    threads: int = Field(8, ge=1, le=64, description="Threads per gthread worker (1..64): connections served at once per worker. More than a model's MODEL_CONCURRENCY + MAX_QUEUE, so /health and other models answer while one is busy (model runs, not threads, hold the memory); not sized to the CPU quota: a thread waiting for a model or a client uses no CPU, and model runs are bounded by MODEL_CONCURRENCY.")
    preload: bool = Field(False, description="Import the app in the Gunicorn master before forking (shares imported code pages). Models still load in workers.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port to bind on 0.0.0.0 (Render sets PORT).")
    timeout: int = Field(120, ge=0, le=3600, description="Seconds a worker may stay silent before Gunicorn kills it; 0 disables the check.")
    graceful_timeout: int = Field(25, ge=1, le=3600, description="Seconds a worker gets to finish requests after a restart or stop signal (SIGTERM); below Render's 30 s before SIGKILL, so a stop is a clean exit.")
    max_requests: int = Field(1000, ge=0, le=10_000_000, description="Requests before a worker is recycled (bounds slow leaks); 0 = never recycle.")
    max_requests_jitter: int = Field(100, ge=0, le=1_000_000, description="Random extra requests added to MAX_REQUESTS so workers do not recycle together; 0 = none.")

    # --- Memory budget ----------------------------------------------------------------------
    memory_budget_mb: int = Field(512, ge=64, le=1_048_576, description="Memory the whole service may use, MB (64..1048576): the instance size.")
    memory_margin_mb: int = Field(48, ge=0, le=65_536, description="Head-room kept free below the budget for request transients, MB; 0 = none.")
    model_ttl_s: int = Field(300, ge=-1, le=604_800, description="Seconds an idle model stays loaded; 0 = unload after each use, -1 = never unload.")
    model_concurrency: int = Field(1, ge=1, le=64, description="Requests one worker runs through the same model at once (1..64); more queue. Each holds its own activations (a Kokoro piece: ~150 MB).")
    queue_timeout_s: int | None = Field(None, ge=0, le=3600, description="Seconds a request waits for a busy model (then 503 model_busy), and a build for the models in use it must evict to fit (then 503 memory_budget_exceeded); 0 = refuse at once; unset = sized to the CPU quota: max(TTS_ADMITTED, MODEL_CONCURRENCY) + MAX_QUEUE short sentences of 2.6 CPU-s at the quota's speed, at least 30 (0.1 CPU: 182 s, 0.5 CPU: 37 s, 1 CPU or more: 30 s).")
    retry_after_s: int = Field(30, ge=1, le=3600, description="Seconds sent in Retry-After when a model cannot fit the budget now.")

    # --- Models -------------------------------------------------------------------------------
    enabled_models: CommaList = Field(list(MODEL_NAMES), description="Comma list of pipelines to serve; the others answer 'disabled'.")
    enable_tts: bool = Field(True, description="Serve text-to-speech (false turns the pipeline off cleanly).")
    enable_language_detection: bool = Field(True, description="Serve spoken-language detection.")
    enable_ai_voice_detection: bool = Field(True, description="Serve AI-generated-voice detection.")
    enable_animation: bool | None = Field(None, description="Serve talking-head animation; unset = on when SADTALKER_CHECKPOINT_DIR is set or JOBS_BACKEND=rq (a worker has the files), so a service without checkpoints is not held unready by it.")
    warm_models: CommaList = Field(["tts"], description="Comma list of pipelines each worker builds in the background right after boot when the budget allows (not pinned: TTL and eviction apply); /health answers meanwhile and a request for another model is not held; empty = build on first use.")
    preload_models: CommaList = Field([], description="Comma list of pipelines built in each worker at start and never evicted (pinned).")
    backend: Literal["torch", "onnx"] = Field("onnx", description="Inference backend for every pipeline: onnx (lean, fits 512 MB) or torch (the reference and exporter; needs several GB).")
    tts_backend: Literal["", "torch", "onnx"] = Field("", description="Backend for tts only; empty = BACKEND.")
    language_backend: Literal["", "torch", "onnx"] = Field("", description="Backend for language only; empty = BACKEND.")
    ai_voice_backend: Literal["", "torch", "onnx"] = Field("", description="Backend for ai_voice only; empty = BACKEND.")
    use_int8_quantization: bool = Field(False, description="Dynamic int8 quantisation of Linear layers where it helps (torch backend).")
    model_dtype: Literal["float32", "bfloat16"] = Field("float32", description="Weight dtype on the torch backend; bfloat16 needs a CPU with bf16 support.")
    inference_threads: int = Field(0, ge=0, le=64, description="Threads per worker for ONNX Runtime, torch and numpy's BLAS/OpenMP pools; 0 = the CPU quota's whole CPUs, at least 1 (cgroup cpu.max / cpu.cfs_quota_us and the CPU affinity; never the host's core count).")
    model_dir: Path = Field(Path("models"), description="Folder holding local model folders and exported ONNX models (scripts/fetch_models.py writes it); like every path setting, a relative path is taken from the working directory at start (serve.sh: the project root) and made absolute once.")
    state_dir: Path | None = Field(None, description="Folder the workers share and keep across restarts (measured model costs); unset = MODEL_DIR/state.")
    onnx_cpu_arena: bool = Field(True, description="ONNX Runtime CPU memory arena: 2.3x faster Kokoro synthesis than malloc per activation; with ONNX_ARENA_SHRINK its memory is returned after each run.")
    onnx_arena_shrink: Literal["run", "request", "off"] = Field("run", description="When the ONNX Runtime arena gives its free memory back (run option memory.enable_memory_arena_shrinkage=cpu:0): run = after every model run (TTS: every piece); request = after a request's last run only (~2 % less CPU, 20 MB higher TTS peak: growing pieces fragment the held arena); off = the arena keeps its peak reserved between requests.")
    onnx_intra_op_spinning: bool = Field(False, description="Let ONNX Runtime's idle intra-op threads spin waiting for work: lower latency on an idle machine, wasted CPU on a shared one; false = they sleep.")
    onnx_mem_pattern: bool = Field(False, description="ONNX Runtime memory-pattern planning, for graphs with fixed input shapes only (Whisper's 30 s window, AST's 1024 frames); never used for TTS, whose shapes vary. Off until measured on real exports.")
    onnx_dir: Path | None = Field(None, description="Folder of exported ONNX models (kokoro/, whisper/, ast/ from scripts/export_onnx.py); unset = MODEL_DIR/onnx.")
    malloc_mmap_threshold_kb: int = Field(1024, ge=0, le=32_768, description="glibc mmap threshold set when an ONNX session is made or an animation job starts, KB (0..32768): larger activations are mmap'd and returned to the OS when freed (Kokoro synthesis peak 1.5 GB -> 0.35 GB); 0 = glibc's sliding default.")

    provision_background: bool = Field(True, description="serve.sh starts `python -m backend.provision background` beside Gunicorn: models that cannot be served yet and have a provisioning step (whisper-base from PyPI) are converted in that separate process, under a file lock, and served once done, without a restart; false = serve what is installed.")
    provision_memory_mb: int = Field(2300, ge=0, le=1_048_576, description="Memory a background conversion needs free on this box, MB (whisper-base's conversion peaks at ~2.3 GB); with less it is skipped with that reason (the image build converts instead); 0 = never skip.")

    # --- Text to speech -------------------------------------------------------------------------
    kokoro_model_dir: Path | None = Field(None, description="Local Kokoro folder (config.json, *.pth, voices/*.pt); unset = KOKORO_REPO_ID from the hub cache.")
    kokoro_repo_id: str = Field("hexgrad/Kokoro-82M", description="Hugging Face repo of Kokoro weights, used when KOKORO_MODEL_DIR is unset.")
    kokoro_g2p: Literal["espeak", "misaki"] = Field("espeak", description="English phonemiser: espeak (offline, no spaCy) or misaki (dictionary + spaCy en_core_web_sm, better heteronyms).")
    npm_registry: str = Field("", description="URL of the npm registry the 54 Kokoro voices (package kokoro-js) are fetched from over HTTPS at install time (`python -m backend.provision voices`); empty = `npm pack` with the machine's npm config.")
    default_voice: str = Field("af_heart", description="Voice used when a request names none; when it is not installed, the first installed voice.")
    voice_aliases: VoiceTable = Field(dict(OPENAI_VOICE_ALIASES), description="OpenAI voice names -> Kokoro voices, as name=voice,...; a mapped voice that is not installed gets the default voice (X-Voice says which spoke).")
    max_text_chars: int = Field(5000, ge=1, le=1_000_000, description="Longest text accepted by TTS, characters.")
    max_speech_seconds: float = Field(90.0, ge=0.0, le=86_400.0, description="Most speech one TTS request may make, seconds, estimated from its phoneme tokens after normalisation (15 tokens/s at speed 1, divided by the speed); more is a 400 before synthesis. About 1,300 characters of prose; 0 = no bound.")
    tts_piece_tokens: int = Field(100, ge=16, le=510, description="Longest piece of phonemes TTS synthesises at once (16..510 tokens; Kokoro's limit is 510). Peak memory grows with it, in steps (ONNX int8 with the arena, 60 s text: 385 MB RSS at 100, 468 at 120, 486 at 150); longer sentences are cut at clauses, then words.")
    tts_admitted: int = Field(4, ge=0, le=64, description="TTS requests admitted to the model at once, taking its MODEL_CONCURRENCY running slots in turn, one piece at a time (0..64; TTS_TURN_RULE); more wait to be admitted (MAX_QUEUE, QUEUE_TIMEOUT_S). Keep THREADS above TTS_ADMITTED + MAX_QUEUE so /health answers under full load. 0 = MODEL_CONCURRENCY: each request holds a slot from its first piece to its last.")
    tts_contended_piece_tokens: int = Field(24, ge=0, le=510, description="Longest piece (tokens) a TTS request synthesises while a request with less left to say than that piece waits for the model (or ran since its last piece): a longer piece is cut at a sentence, clause or word there, so a short request waits for a short piece; alone or among long requests a request keeps TTS_PIECE_TOKENS pieces. 0 = never cut.")
    tts_turn_rule: Literal["round_robin", "shortest"] = Field("shortest", description="Which admitted TTS request synthesises its next piece when the model frees a slot: round_robin (in order of asking) or shortest (requests with at most 2 pieces left first).")
    tts_first_piece_tokens: int = Field(16, ge=0, le=510, description="Longest first piece of a text, tokens (0..510): the first audio leaves after this much synthesis when a clause ends within half as much again (else at the first sentence's next clause mark, else after the whole first sentence: a cut between words is heard; a text of at most twice this is one piece); each later piece may be twice the one before, up to TTS_PIECE_TOKENS. 0 = the first piece is as long as the others.")
    tts_tail_frames: int = Field(1, ge=0, le=100, description="ONNX Kokoro: the final punctuation and end pad of each piece synthesise at most this many 25 ms frames each (0..100), silence that the joins trim anyway (with TTS_TRIM_SILENCE; docs/BENCHMARKS.md, issue 23); 0 = as the model predicts them.")
    tts_trim_silence: bool = Field(True, description="Trim each piece's own leading/trailing silence (energy-based, with a short fade) and put a pause by boundary at the joins instead; false = Kokoro's ~1 s padding at every join.")
    tts_pause_clause_s: float = Field(0.2, ge=0.0, le=5.0, description="Silence where a sentence was cut at a comma, semicolon, colon or dash to fit a piece, seconds (0..5).")
    tts_pause_sentence_s: float = Field(0.45, ge=0.0, le=5.0, description="Silence between sentences that end one piece and start the next, seconds (0..5).")
    tts_pause_paragraph_s: float = Field(0.9, ge=0.0, le=10.0, description="Silence at a paragraph break (a blank line), seconds (0..10).")

    # --- Voice analysis -------------------------------------------------------------------------
    whisper_model: str = Field("openai/whisper-tiny", description="Whisper for language detection: Hugging Face id or local folder.")
    ai_voice_model: str = Field("MattyB95/AST-ASVspoof2019-Synthetic-Voice-Detection", description="AST audio classifier: Hugging Face id or local folder.")
    ai_voice_labels: CommaList = Field([], description="Comma list of labels meaning 'synthetic'; empty = read from the model's id2label.")
    ai_voice_threshold: float = Field(0.5, ge=0.0, le=1.0, description="Score at or above which a voice is called AI-generated (0..1).")
    max_upload_mb: int = Field(25, ge=1, le=2048, description="Largest request body accepted, MB; bigger gets 413.")
    max_audio_seconds: int = Field(600, ge=1, le=86_400, description="Longest audio accepted for analysis, seconds.")

    # --- Animation (SadTalker) --------------------------------------------------------------------
    animation_backend: Literal["torch"] = Field("torch", description="Backend for animation: torch only (SadTalker has no ONNX export here).")
    sadtalker_checkpoint_dir: Path | None = Field(None, description="Folder of the official SadTalker v0.0.2-rc files (SadTalker_V0.0.2_256/512.safetensors, mapping_00229/00109-model.pth.tar); setting it turns animation on (ENABLE_ANIMATION); a folder missing files answers 503 naming them.")
    face_model_dir: Path | None = Field(None, description="Folder of the face detector and mesh (.tflite, from `python -m scripts.fetch_face_assets models`); unset = MODEL_DIR/face.")
    max_image_pixels: int = Field(16_000_000, ge=1, le=1_000_000_000, description="Largest portrait accepted for animation, pixels (width x height); larger is refused from the image header, before decoding (413).")
    max_animation_seconds: int = Field(60, ge=1, le=3600, description="Longest speech accepted for animation, seconds (413 above it); the job's time grows with it (25 frames per second).")
    animation_batch_size: int = Field(1, ge=1, le=16, description="Frames rendered per batch (1..16): peak memory grows ~140 MB per extra frame at 256 px, speed barely changes (docs/BENCHMARKS.md); cancel takes effect between batches.")

    # --- Operations -------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level of the app and Gunicorn.")
    api_keys: CommaList = Field([], description="Comma list of accepted API keys for inference; empty = inference open.")
    admin_api_keys: CommaList = Field([], description="Comma list of admin keys (load/unload, the detailed model view; accepted for inference too); empty = admin endpoints refused.")
    ready_requires: CommaList = Field([], description="Comma list of models GET /ready requires servable (tts,language): one that is not, or still provisioning, makes it 503; empty = /ready is 200 once everything this box can serve is servable (the others are listed with their reason and fix).")
    strict_readiness: bool = Field(False, description="GET /ready requires every enabled model servable, as Triton's --strict-readiness (READY_REQUIRES = every enabled model).")
    protect_metrics: bool = Field(False, description="Require an API or admin key for /ready and /metrics (open by default so health checks and scrapers need no secret).")

    # --- Limits (hostile clients) ----------------------------------------------------------------
    rate_limit: str = Field("120/minute;20/second", description="Requests per API key (else per client IP) to inference and admin routes, as flask-limiter limits ('N/second|minute|hour', ';' between); empty = no limit.")
    redis_url: str = Field("", description="Redis URL (redis://host:6379/0) for shared rate-limit counters and, with JOBS_BACKEND=rq, the jobs queue; empty = in-memory counters per worker.")
    trusted_proxies: int = Field(0, ge=0, le=8, description="Proxies in front that append to X-Forwarded-For (Render: 1); the client IP is taken that many hops from the right. 0 = ignore the header.")
    max_queue: int = Field(3, ge=0, le=1024, description="Requests per worker that may wait for a busy model (0..1024); more get 503 model_busy at once. 0 = never wait.")
    max_json_kb: int = Field(256, ge=1, le=65_536, description="Largest JSON body without audio, KB (bodies carrying base64 audio follow MAX_UPLOAD_MB).")
    max_json_depth: int = Field(32, ge=2, le=512, description="Deepest nesting of arrays/objects accepted in a JSON body.")
    max_form_parts: int = Field(16, ge=1, le=1000, description="Most parts accepted in a multipart body.")
    max_audio_channels: int = Field(8, ge=1, le=256, description="Most channels accepted in uploaded audio (read from its header before decoding).")
    max_audio_sample_rate: int = Field(192_000, ge=8_000, le=1_000_000, description="Highest sample rate accepted in uploaded audio, Hz (read from its header before decoding).")
    prometheus_multiproc_dir: Path | None = Field(None, description="Folder for prometheus_client's multiprocess files; Gunicorn sets one when unset.")

    # --- Jobs (talking-head animation runs as jobs) ---------------------------------------------------
    jobs_backend: Literal["local", "rq"] = Field("local", description="Where animation jobs run: local (a child process of a web worker, records in JOBS_DIR) or rq (an RQ queue named 'animation' on REDIS_URL, run by scripts/worker.sh).")
    jobs_dir: Path | None = Field(None, description="Folder of local job records (SQLite) and results; unset = STATE_DIR/jobs.")
    job_ttl_s: int = Field(86_400, ge=0, le=31_536_000, description="Seconds a finished job and its result are kept; 0 = keep forever.")
    max_queued_jobs: int = Field(8, ge=1, le=1000, description="Jobs that may wait for the one running at a time (1..1000); more get 503 job_queue_full.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("enabled_models", "preload_models", "warm_models", "api_keys", "admin_api_keys", "ai_voice_labels",
                     "ready_requires", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("voice_aliases", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        table = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            alias, sep, voice = (part.strip().lower() for part in item.partition("="))
            if not sep or not alias or not voice:
                raise ValueError(f"expected name=voice pairs, got {item!r}")
            table[alias] = voice
        return table

    @field_validator("enabled_models", "preload_models", "warm_models", "ready_requires")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown model {unknown[0]!r}; accepted: {', '.join(MODEL_NAMES)}")
        return value

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        # Once, here: a relative path is taken from the working directory the process started in (serve.sh and
        # the image start in the project root), so nothing downstream resolves it again against another base
        # (Flask's send_file would take the app's root_path, backend/). Hub ids stay as they are.
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Path):
                object.__setattr__(self, name, absolute(value))
            elif name in LOCAL_OR_HUB_FIELDS and isinstance(value, str) and value.startswith(LOCAL_PREFIXES):
                object.__setattr__(self, name, str(absolute(Path(value))))
        return self

    def model_enabled(self, name: str) -> bool:
        """A pipeline is served when it is in ENABLED_MODELS and its own switch is on."""
        switch = {"tts": self.enable_tts, "language": self.enable_language_detection,
                  "ai_voice": self.enable_ai_voice_detection, "animation": self.animation_switch}
        return name in self.enabled_models and switch.get(name, True)

    @property
    def onnx_root(self) -> Path:
        """Where the onnx backend looks for exported models."""
        return self.onnx_dir or self.model_dir / "onnx"

    @property
    def animation_switch(self) -> bool:
        """ENABLE_ANIMATION, or when unset: on once there are checkpoints here or a worker elsewhere."""
        if self.enable_animation is not None:
            return self.enable_animation
        return self.sadtalker_checkpoint_dir is not None or self.jobs_backend == "rq"

    @property
    def face_model_root(self) -> Path:
        """Where the animation pipeline finds the face detector and mesh."""
        return self.face_model_dir or self.model_dir / "face"

    @property
    def state_root(self) -> Path:
        """Where workers keep what they share (measured model costs)."""
        return self.state_dir or self.model_dir / "state"

    @property
    def jobs_root(self) -> Path:
        """Where the local jobs backend keeps records and results."""
        return self.jobs_dir or self.state_root / "jobs"

    def backend_for(self, name: str) -> str:
        """The backend of one pipeline: its own override, else BACKEND."""
        return getattr(self, f"{name}_backend", "") or self.backend


def _describe(error: dict, settings_cls: type[BaseSettings]) -> str:
    """One line naming the variable, the value and what is accepted."""
    field = str(error["loc"][0]) if error.get("loc") else "?"
    info = settings_cls.model_fields.get(field)
    accepted = ""
    if info is not None:
        bounds = {type(m).__name__: m for m in info.metadata}
        low = getattr(bounds.get("Ge"), "ge", None)
        high = getattr(bounds.get("Le"), "le", None)
        if low is not None and high is not None:
            accepted = f"; accepted: {low}..{high}"
        elif info.description:
            accepted = f"; expected: {info.description}"
    value = error.get("input")
    shown = value if isinstance(value, str | int | float) else "(missing)"
    return f"{field.upper()}={shown!r} is invalid: {error['msg']}{accepted}"


def build_settings(**overrides: object) -> Settings:
    """Settings from the environment plus overrides; raises ConfigError with one line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0], Settings)) from None


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """The process-wide settings, read once; a bad value ends the process with one clear line."""
    try:
        return build_settings()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

