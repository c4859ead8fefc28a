"""Stage I: frames + audio -> MP4 (H.264 yuv420p + AAC) with PyAV, written batch by batch.

Memory holds one batch of frames and one AAC frame of audio at a time; the file is written
under a `.part` name and renamed when complete, so no half-written video is ever visible.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

FPS = 25
AUDIO_RATE_HZ = 16_000
AUDIO_BITRATE = 64_000
VIDEO_CRF = "20"
VIDEO_PRESET = "veryfast"


def even(value: int) -> int:
    """yuv420p needs even dimensions."""
    return max(2, value - value % 2)


class Mp4Writer:
    """Context manager: write_frames(uint8 (n, H, W, 3)) as they come, audio interleaved."""

    def __init__(self, path: Path | str, width: int, height: int, audio: np.ndarray | None = None) -> None:
        import av

        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".part")
        self.width, self.height = even(width), even(height)
        self.container = av.open(str(self.partial), mode="w", format="mp4")
        self.video = self.container.add_stream("libx264", rate=FPS)
        self.video.width, self.video.height = self.width, self.height
        self.video.pix_fmt = "yuv420p"
        self.video.options = {"crf": VIDEO_CRF, "preset": VIDEO_PRESET}
        self.video.codec_context.thread_count = 1  # the renderer owns the cores; x264 at 256 px is cheap
        self.audio_samples = None if audio is None else np.asarray(audio, dtype=np.float32)
        self.audio = None
        if self.audio_samples is not None:
            self.audio = self.container.add_stream("aac", rate=AUDIO_RATE_HZ)
            self.audio.layout = "mono"
            self.audio.bit_rate = AUDIO_BITRATE
        self.audio_written = 0
        self.frames_written = 0

    def __enter__(self) -> "Mp4Writer":
        return self

    def write_frames(self, frames: np.ndarray) -> None:
        import av

        for frame in frames:
            if frame.shape[0] != self.height or frame.shape[1] != self.width:
                frame = frame[:self.height, :self.width]
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = self.frames_written
            video_frame.time_base = Fraction(1, FPS)
            self.container.mux(self.video.encode(video_frame))
            self.frames_written += 1
        self._write_audio_until(self.frames_written * AUDIO_RATE_HZ // FPS)

    def _write_audio_until(self, end: int, flush: bool = False) -> None:
        import av

        if self.audio is None:
            return
        frame_size = self.audio.codec_context.frame_size or 1024
        end = min(end, len(self.audio_samples))
        while end - self.audio_written >= frame_size or (flush and end > self.audio_written):
            chunk = self.audio_samples[self.audio_written:self.audio_written + frame_size]
            if len(chunk) < frame_size:
                chunk = np.pad(chunk, (0, frame_size - len(chunk)))
            audio_frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            audio_frame.sample_rate = AUDIO_RATE_HZ
            audio_frame.pts = self.audio_written
            audio_frame.time_base = Fraction(1, AUDIO_RATE_HZ)
            self.container.mux(self.audio.encode(audio_frame))
            self.audio_written += frame_size

    def finish(self) -> Path:
        self._write_audio_until(self.frames_written * AUDIO_RATE_HZ // FPS, flush=True)
        self.container.mux(self.video.encode(None))
        if self.audio is not None:
            self.container.mux(self.audio.encode(None))
        self.container.close()
        os.replace(self.partial, self.path)
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            try:
                self.container.close()
            finally:
                self.partial.unlink(missing_ok=True)


def probe(path: Path | str) -> dict:
    """Facts of an MP4 for tests and job records: frames, fps, size, streams, audio seconds."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        audio = container.streams.audio[0] if container.streams.audio else None
        return {"frames": frames, "fps": float(video.average_rate), "width": video.codec_context.width,
                "height": video.codec_context.height, "video_codec": video.codec_context.name,
                "audio_codec": audio.codec_context.name if audio else None,
                "audio_seconds": float(audio.duration * audio.time_base) if audio and audio.duration else None}
