"""Graph variants of the packaged Kokoro int8 ONNX, interleaved in one process: CPU-s per piece, the audio they keep.

- `plain`: the published graph.
- `timed`: with its token durations as a second output and the `frame_cap` input (backend.pipelines.tts.
  timed_graph), nothing fed to it: what the server loads; must cost nothing more, bit-identical audio.
- cap rules, the same timed graph with `frame_cap` fed (lead pad, last sounded token, the tokens after it:
  frames, 0 = uncapped): Kokoro spends ~12 frames (0.3 s) of decoder work on lead-in and 0.5 s on the tail that
  joins.trim then cuts; what does capping them buy, and what does it do to the audio that is kept?
  `punct1` (the tokens after the last sounded one, i.e. final punctuation and end pad, at most 1 frame each) is
  TTS_TAIL_FRAMES=1.
Per text: the pieces the pipeline plans (TTS_FIRST_PIECE_TOKENS, TTS_PIECE_TOKENS), each synthesised, trimmed
and joined as the pipeline does; CPU-s summed; frames synthesised; seconds kept after the trim; with --whisper,
the CER of the joined audio by faster-whisper (whisper-base, CTranslate2; benchmark-only). Also G2P's share.

    python -m scripts.bench_tts_graph_variants --repeats 3 --threads 1 [--whisper CT2_DIR]
    python -m scripts.bench_tts_graph_variants --profile   # where one ~120-token piece's time goes, by node type
    python -m scripts.bench_tts_graph_variants --kernels   # the decoder's hottest conv shape on other int8 kernels
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from backend.api.schemas.tts import validate_request
from backend.pipelines.tts import joins
from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline, export_folder
from backend.pipelines.tts.pipeline import SAMPLE_RATE_HZ, TokenPiece, features_style
from backend.pipelines.tts.timed_graph import CAP_INPUT, frame_caps, timed_model
from config import build_settings

TEXTS = {"sentence": "The kettle is on, come and sit down.",
         "three sentences": "The kettle is on, come and sit down. We can talk about the weather while the water "
                            "boils. Then we will walk down to the harbour and watch the boats come in.",
         "paragraph": "The old lighthouse stood at the edge of the cliff, watching the sea. Every night its lamp "
                      "turned slowly, sending a beam across the water to guide the fishing boats home. The keeper, "
                      "a quiet man named Thomas, had tended it for thirty years. He knew every rock along the coast."}
# name -> (lead pad, last sounded token, each token after it): at most this many frames; 0 = not capped
RULES = {"timed": (0, 0, 0), "punct1": (0, 0, 1), "punct2": (0, 0, 2), "last10+punct1": (0, 10, 1),
         "lead8": (8, 0, 0), "lead3": (3, 0, 0)}


def caps(token_ids: list[int], sounded: frozenset[int], lead: int, last: int, after: int) -> np.ndarray:
    cap = frame_caps(token_ids, sounded, after)
    final = next((i for i in range(len(token_ids) - 1, -1, -1) if token_ids[i] in sounded), None)
    if lead:
        cap[0, 0] = lead
    if last and final is not None:
        cap[0, final + 1] = last
    return cap


PROFILED = ("We can talk about the weather while the water boils, and then we will walk down to the harbour and "
            "watch the boats come in.")


def profile(threads: int) -> dict:
    """ONNX Runtime's profiler on one piece (after a warm-up run): each node type's share of the kernel time."""
    import collections

    import onnxruntime as ort

    settings = build_settings(prometheus_multiproc_dir=None, inference_threads=threads)
    pipe = KokoroOnnxPipeline(settings)
    pipe.load()
    features = pipe.preprocess(validate_request(settings, text=PROFILED, fmt="wav"))
    ids = [t for p in features.plan if isinstance(p, TokenPiece) for t in p.token_ids][:510]
    folder = export_folder(settings)
    timed_path, _ = timed_model(next(folder / n for n in ("model.int8.onnx", "model.onnx") if (folder / n).is_file()),
                                settings.model_dir / "kokoro-timed")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    session = ort.InferenceSession(str(timed_path), options, providers=["CPUExecutionProvider"])
    feeds = {"tokens": np.array([[0, *ids, 0]], dtype=np.int64), "style": features_style(features.style, len(ids)),
             "speed": np.array([1.0], dtype=np.float32)}
    session.run(None, feeds)
    started = time.process_time()
    audio = session.run(None, feeds)[0]
    cpu = time.process_time() - started
    trace = session.end_profiling()
    events = json.loads(open(trace, encoding="utf-8").read())
    os.remove(trace)
    last = [e for e in events if e.get("name") == "model_run"][-1]
    by_type: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and \
                last["ts"] <= e["ts"] <= last["ts"] + last["dur"]:
            by_type[e["args"]["op_name"]] += e["dur"]
    total = sum(by_type.values())
    return {"tokens": len(ids), "audio_s": round(audio.size / SAMPLE_RATE_HZ, 2), "cpu_s": round(cpu, 3),
            "share": {op: round(us / total, 3) for op, us in by_type.most_common(12)}}


def kernels(threads: int, repeats: int) -> dict:
    """The decoder's hottest convolution (generator resblocks.5: 128 -> 128 channels, kernel 11, dilation 5, ~35k
    steps for 7 s of audio) as ConvInteger with uint8 weights (the published graph), with int8 weights, and as
    MatMulInteger on im2col'd input with uint8 / int8 weights (MLAS's u8s8 path): CPU-s per call."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    channels, width, steps = 128, 11, 35000
    rng = np.random.default_rng(0)
    weights = rng.integers(0, 256, (channels, channels, width)).astype(np.uint8)

    def graph(op: str, signed: bool):
        w = (weights.astype(np.int16) - 128).astype(np.int8) if signed else weights
        zero = np.array(67 - 128, np.int8) if signed else np.array(67, np.uint8)
        if op == "conv":
            node = helper.make_node("ConvInteger", ["q", "w", "z", "wz"], ["y"], dilations=[5], pads=[25, 25],
                                    kernel_shape=[width])
            shape = [1, channels, steps]
        else:
            w = w.reshape(channels, -1).T.copy()
            node = helper.make_node("MatMulInteger", ["q", "w", "z", "wz"], ["y"])
            shape = [1, steps, channels * width]
        nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]), node]
        g = helper.make_graph(nodes, "k", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(zero, "wz")])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(), shape

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    variants = {}
    for name, op, signed in (("ConvInteger u8 weights (published)", "conv", False),
                             ("ConvInteger s8 weights", "conv", True),
                             ("MatMulInteger on im2col, u8 weights", "matmul", False),
                             ("MatMulInteger on im2col, s8 weights", "matmul", True)):
        model, shape = graph(op, signed)
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        x = rng.standard_normal(shape).astype(np.float32)
        session.run(None, {"x": x})
        spent = []
        for _ in range(repeats):
            started = time.process_time()
            session.run(None, {"x": x})
            spent.append(time.process_time() - started)
        variants[name] = round(statistics.median(spent), 3)
    return {"macs_g": round(channels * channels * width * steps / 1e9, 2), "cpu_s": variants}


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--whisper", default=None, help="a CTranslate2 whisper-base folder: CER of each variant")
    parser.add_argument("--profile", action="store_true", help="only: where one piece's time goes, by node type")
    parser.add_argument("--kernels", action="store_true", help="only: the hottest conv on other int8 kernels")
    args = parser.parse_args(argv)
    if args.profile or args.kernels:
        report = profile(args.threads) if args.profile else kernels(args.threads, args.repeats)
        report.update(threads=args.threads, load_avg=[round(v, 2) for v in os.getloadavg()],
                      date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        json.dump(report, sys.stdout, indent=1)
        print()
        return 0
    settings = build_settings(prometheus_multiproc_dir=None, inference_threads=args.threads, tts_tail_frames=0)
    pipe = KokoroOnnxPipeline(settings)
    pipe.load()
    folder = export_folder(settings)
    plain_path = next(folder / n for n in ("model.int8.onnx", "model.onnx") if (folder / n).is_file())
    timed_path, _ = timed_model(plain_path, settings.model_dir / "kokoro-timed")
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {"plain": ort.InferenceSession(str(plain_path), options, providers=["CPUExecutionProvider"]),
                "timed": ort.InferenceSession(str(timed_path), options, providers=["CPUExecutionProvider"])}
    rules = ["plain", *args.rules.split(",")]
    judge = None
    if args.whisper:
        from faster_whisper import WhisperModel
        judge = WhisperModel(args.whisper, device="cpu", compute_type="float32", cpu_threads=args.threads)
    sounded = pipe._sounded
    rows = []
    for label, text in TEXTS.items():
        features = pipe.preprocess(validate_request(settings, text=text, fmt="wav"))
        pieces = [p for p in features.plan if isinstance(p, TokenPiece)]
        cpu: dict[str, list[float]] = {name: [] for name in rules}
        joined: dict[str, np.ndarray] = {}
        frames: dict[str, int] = {}
        kept: dict[str, float] = {}
        for _ in range(args.repeats):
            for name in rules:  # interleaved
                session = sessions["plain" if name == "plain" else "timed"]
                spent, out, made, kept_s = 0.0, [], 0, 0.0
                for piece in pieces:
                    feeds = {"tokens": np.array([[0, *piece.token_ids, 0]], dtype=np.int64),
                             "style": features_style(features.style, len(piece.token_ids)),
                             "speed": np.array([1.0], dtype=np.float32)}
                    if name != "plain" and name != "timed":
                        feeds[CAP_INPUT] = caps(piece.token_ids, sounded, *RULES[name])
                    started = time.process_time()
                    audio = session.run([session.get_outputs()[0].name], feeds)[0].reshape(-1)
                    spent += time.process_time() - started
                    made += audio.size
                    trimmed = joins.trim(audio, SAMPLE_RATE_HZ)
                    kept_s += trimmed.size / SAMPLE_RATE_HZ
                    out += [trimmed, joins.gap(piece.boundary, pipe.pause_lengths, SAMPLE_RATE_HZ)]
                cpu[name].append(spent)
                joined[name], frames[name], kept[name] = np.concatenate(out), made // 600, kept_s
        base = statistics.median(cpu["plain"])
        for name in rules:
            row = {"text": label, "pieces": len(pieces), "tokens": sum(len(p.token_ids) for p in pieces),
                   "variant": name, "cap": RULES.get(name, (0, 0, 0)),
                   "cpu_s": round(statistics.median(cpu[name]), 3),
                   "vs_plain": round(statistics.median(cpu[name]) / base, 3), "frames": frames[name],
                   "frames_vs_plain": round(frames[name] / frames["plain"], 3), "kept_s": round(kept[name], 3),
                   "kept_minus_plain_s": round(kept[name] - kept["plain"], 3),
                   "same_audio": bool(np.array_equal(joined[name], joined["plain"]))}
            if judge is not None:
                from backend.audio.decode import resample
                from scripts.intelligibility import character_error_rate

                segments, _ = judge.transcribe(resample(joined[name], SAMPLE_RATE_HZ, 16000), language="en",
                                               beam_size=1, temperature=0.0, condition_on_previous_text=False,
                                               vad_filter=False, without_timestamps=True)
                row["cer"] = round(character_error_rate(text, " ".join(s.text.strip() for s in segments)), 3)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    g2p = []
    for text in TEXTS.values():
        started = time.process_time()
        pipe.phonemizer(text)
        g2p.append(time.process_time() - started)
    json.dump({"rows": rows, "threads": args.threads, "repeats": args.repeats, "g2p_cpu_s": [round(v, 4) for v in g2p],
               "load_avg": [round(v, 2) for v in os.getloadavg()],
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
