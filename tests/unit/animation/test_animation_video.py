import numpy as np
import pytest

from backend.pipelines.animation.video import Mp4Writer, probe


def test_batches_make_one_mp4_with_audio(tmp_path):
    rng = np.random.default_rng(0)
    audio = (np.sin(np.arange(16_000 * 2) / 16_000 * 2 * np.pi * 220) * 0.3).astype(np.float32)
    out = tmp_path / "clip.mp4"
    with Mp4Writer(out, 256, 254, audio=audio) as writer:
        for _ in range(5):
            writer.write_frames(rng.integers(0, 255, (10, 254, 256, 3), dtype=np.uint8))
        writer.finish()
    facts = probe(out)
    assert facts["frames"] == 50 and facts["fps"] == 25
    assert (facts["width"], facts["height"]) == (256, 254)
    assert facts["video_codec"] == "h264" and facts["audio_codec"] == "aac"
    assert facts["audio_seconds"] == pytest.approx(2.0, abs=0.1)
    assert not (tmp_path / "clip.mp4.part").exists()


def test_failure_leaves_no_file(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError):
        with Mp4Writer(out, 64, 64) as writer:
            writer.write_frames(np.zeros((2, 64, 64, 3), np.uint8))
            raise RuntimeError("renderer died")
    assert list(tmp_path.iterdir()) == []
