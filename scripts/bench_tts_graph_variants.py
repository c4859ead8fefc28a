"""Graph variants of the packaged Kokoro int8 ONNX, interleaved in one process: CPU-s per piece.

- `plain`: the published graph.
- `timed`: with its token durations as a second output (backend.pipelines.tts.timed_graph): what the
  server now loads; must cost nothing more.
- `lead_cap`: the durations also capped for the leading pad token (an extra graph input and a Min;
  benchmark-only, built with the `onnx` package): Kokoro spends 12 frames (0.3 s) of decoder work on
  lead-in silence that joins.trim then cuts; does capping it buy speed, and what does it do to the audio?
Also G2P's share: misaki/espeak phonemisation time for the same texts (could it overlap synthesis?).

    python -m scripts.bench_tts_graph_variants --repeats 3 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from backend.pipelines.tts import joins
from backend.pipelines.tts.g2p import Phonemizer
from backend.pipelines.tts.kokoro_onnx import assemble_packaged_model, packaged_data
from backend.pipelines.tts.timed_graph import DURATIONS_NAME, timed_model
from config import build_settings

TEXTS = {"clause (17 tokens)": "The kettle is on,",
         "sentence (37)": "The kettle is on, come and sit down.",
         "long sentence (~120)": "We can talk about the weather while the water boils, and then we will walk down "
                                 "to the harbour and watch the boats come in."}
LEAD_CAP_FRAMES = 3


def lead_capped(timed: Path, out: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(timed))
    for node in model.graph.node:
        if DURATIONS_NAME in node.output:
            node.output[list(node.output).index(DURATIONS_NAME)] = "/encoder/Clip_raw"
    model.graph.node.append(helper.make_node("Min", ["/encoder/Clip_raw", "frame_cap"], [DURATIONS_NAME]))
    model.graph.input.append(helper.make_tensor_value_info("frame_cap", TensorProto.FLOAT, [1, "tokens"]))
    onnx.save(model, str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("reports/graph-variants"))
    args = parser.parse_args(argv)
    settings = build_settings(prometheus_multiproc_dir=None)
    plain_path = assemble_packaged_model(settings.model_dir / "kokoro-packaged")
    timed_path, _ = timed_model(plain_path, settings.model_dir / "kokoro-timed")
    args.work.mkdir(parents=True, exist_ok=True)
    capped_path = lead_capped(timed_path, args.work / "lead-capped.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for name, path in (("plain", plain_path), ("timed", timed_path), ("lead_cap", capped_path))}
    data = packaged_data()
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with np.load(data / "voices_ja.npz") as packs:
        voice = packs["jf_alpha"]
    phonemize = Phonemizer(settings)
    rows = []
    for label, text in TEXTS.items():
        g2p = []
        for _ in range(args.repeats):
            started = time.process_time()
            phonemes = phonemize(text)
            g2p.append(time.process_time() - started)
        ids = [vocab[ch] for ch in phonemes if ch in vocab]
        feeds = {"tokens": np.array([[0, *ids, 0]], dtype=np.int64), "style": voice[len(ids) - 1],
                 "speed": np.array([1.0], dtype=np.float32)}
        cap = np.full((1, len(ids) + 2), 1e4, dtype=np.float32)
        cap[0, 0] = LEAD_CAP_FRAMES
        cpu: dict[str, list[float]] = {name: [] for name in sessions}
        audio: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for name, session in sessions.items():  # interleaved
                run_feeds = {**feeds, "frame_cap": cap} if name == "lead_cap" else feeds
                started = time.process_time()
                audio[name] = session.run(None, run_feeds)[0].reshape(-1)
                cpu[name].append(time.process_time() - started)
        base = statistics.median(cpu["plain"])
        for name in sessions:
            kept = joins.trim(audio[name], 24000)
            rows.append({"text": label, "tokens": len(ids), "variant": name,
                         "cpu_s": round(statistics.median(cpu[name]), 3),
                         "vs_plain": round(statistics.median(cpu[name]) / base, 3),
                         "audio_s": round(audio[name].size / 24000, 2), "trimmed_s": round(kept.size / 24000, 3),
                         "same_audio": bool(np.array_equal(audio[name], audio["plain"])),
                         "g2p_cpu_s": round(statistics.median(g2p), 4)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    json.dump({"rows": rows, "threads": args.threads, "repeats": args.repeats,
               "load_avg": [round(v, 2) for v in os.getloadavg()],
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
