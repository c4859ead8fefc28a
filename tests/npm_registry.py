"""A file:// npm registry holding kokoro-js's tarball in the npm layout, built from the real packaged voices."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np

from backend.pipelines.tts import kokoro_onnx
from backend.provision import voices as provision

NAMES = {"af_heart": "jf_alpha", "am_onyx": "jm_kumo", "af_alloy": "jf_nezumi", "ef_dora": "jf_tebukuro",
         "jf_alpha": "jf_alpha"}


def make_registry(root: Path, names: dict[str, str] = NAMES) -> tuple[str, str]:
    """A file:// npm registry holding kokoro-js's tarball (real packs, renamed); (registry URL, tarball sha256)."""
    buffer = io.BytesIO()
    with np.load(kokoro_onnx.packaged_data() / "voices_ja.npz") as packs, \
            tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, source in names.items():
            data = packs[source].astype("<f4").reshape(510, 256).tobytes()
            info = tarfile.TarInfo(f"package/voices/{name}.bin")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        readme = b"not a voice"
        info = tarfile.TarInfo("package/README.md")
        info.size = len(readme)
        archive.addfile(info, io.BytesIO(readme))
    folder = root / provision.PACKAGE / "-"
    folder.mkdir(parents=True)
    (folder / provision.tarball_name()).write_bytes(buffer.getvalue())
    return root.as_uri(), hashlib.sha256(buffer.getvalue()).hexdigest()
