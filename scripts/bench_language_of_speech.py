"""How surely whisper-base names the language of our Kokoro's speech: a TTS change's check by an independent listener.

    .venv/bin/python scripts/bench_language_of_speech.py --clips /tmp/clips-a --onnx-dir ONNX_DIR --out a.json

Run it once per checkout (cwd: the checkout; --clips: a fresh folder per checkout, the 30 clips of
scripts/speech_clips.kokoro_plan spoken by that checkout's Kokoro) with the same exported whisper-base
(ONNX_DIR holding whisper/, as provisioning writes it). Prints, per clip, Whisper's top language and the
probability of the right one (0 when it is not in the top 3), then the count right and the sum of probabilities.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, ".")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True, help="the clip cache of this checkout's Kokoro")
    parser.add_argument("--onnx-dir", required=True, help="ONNX_DIR with the exported whisper-base")
    parser.add_argument("--out", type=Path, help="JSON: clip id -> [top language, probability of the right one]")
    args = parser.parse_args()
    from backend.pipelines.language.whisper_onnx import WhisperOnnxPipeline
    from config import build_settings
    from scripts.speech_clips import kokoro_clips

    clips = kokoro_clips(args.clips)
    pipe = WhisperOnnxPipeline(build_settings(onnx_dir=args.onnx_dir, backend="onnx"))
    pipe.load()
    out = {}
    for clip, audio in clips:
        answer = pipe({"audio": audio, "top_k": 3})
        probability = {r["language"]: r["probability"] for r in answer["languages"]}.get(clip.language, 0.0)
        out[clip.id] = (answer["language"], round(probability, 3))
        print(clip.id, clip.language, answer["language"], out[clip.id][1], flush=True)
    right = sum(top == clip.language for clip, _ in clips for top in [out[clip.id][0]])
    print(f"right {right}/{len(clips)}, sum of probabilities {sum(p for _, p in out.values()):.2f}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
