"""Language detection on real speech: accuracy and agreement of every whisper-base variant, speed, memory;
and how intelligible our Kokoro is to the same Whisper (character error rate).

    .venv/bin/python scripts/bench_quality.py                       # every variant, every clip (~20 min here)
    .venv/bin/python scripts/bench_quality.py --variants torch,onnx-int8 --report-only
    .venv/bin/python scripts/bench_quality.py --interleaved 12      # speed ratios, all variants in one process
    .venv/bin/python scripts/bench_quality.py --cer                 # Kokoro en/es transcribed by faster-whisper
    .venv/bin/python scripts/bench_quality.py --voices              # the 54-voice export, per language (CER, P(lang))

Clips: scripts/speech_clips.py (30 real-Kokoro clips in 6 languages, 42 espeak-ng clips in 21),
cached in MODEL_DIR/speech-clips. Model: whisper-base converted from PyPI (scripts/convert_whisper_ct2.py,
MODEL_DIR/whisper-base and its CTranslate2 folder), exported by scripts/export/whisper.py to OUT/onnx/fp32
and quantised as the exporter does to OUT/onnx/int8. Each variant runs in a fresh process (worker style:
`create_app()` imported first, then the product's pipeline class built and loaded, as the registry would)
over every clip, one 30 s window each (every clip is shorter). It records the language probabilities,
CPU seconds (process time, all threads) and wall seconds of the model call per window, load time and
peak RSS (VmHWM). The parent prints markdown tables. Variants:
  torch        WhisperTorchPipeline (fp32)              ct2       CTranslate2 fp32 on our log-mel (faster-whisper)
  onnx-fp32    WhisperOnnxPipeline, the fp32 export     fw-own    faster-whisper's own detect_language(audio)
  onnx-int8    the same graph, dynamic int8 (what ships) *-noarena ONNX_CPU_ARENA=false (the old default)
  *-pattern    ONNX_MEM_PATTERN=true as well
faster-whisper / ctranslate2 are dev-only (requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REFERENCE = "torch"
VARIANTS = ("torch", "onnx-fp32", "onnx-fp32-noarena", "onnx-int8", "onnx-int8-noarena", "onnx-int8-pattern",
            "ct2", "fw-own")


def _paths(args: argparse.Namespace) -> dict[str, Path]:
    from config import load_settings

    model_dir = load_settings().model_dir
    return {"whisper": model_dir / "whisper-base", "ct2": model_dir / "whisper-base-ct2",
            "clips": model_dir / "speech-clips", "onnx": args.out / "onnx"}


def clips(args: argparse.Namespace):
    from scripts.speech_clips import espeak_clips, kokoro_clips

    folder = _paths(args)["clips"]
    return kokoro_clips(folder / "kokoro") + espeak_clips(folder / "espeak")


def prepare(args: argparse.Namespace) -> None:
    """The converted model, its CTranslate2 folder and both ONNX exports (each kept once made)."""
    from scripts.convert_whisper_ct2 import convert
    from scripts.export.common import quantize_int8
    from scripts.export.whisper import export

    paths = _paths(args)
    convert(paths["whisper"], ct2_dir=paths["ct2"])
    speech = clips(args)
    fp32, int8 = paths["onnx"] / "fp32" / "whisper", paths["onnx"] / "int8" / "whisper"
    if not (fp32 / "model.onnx").is_file():
        kokoro = [c for c in speech if c[0].engine == "kokoro"]
        export(str(paths["whisper"]), fp32, int8=False, speech=(kokoro, []))
    if not (int8 / "model.onnx").is_file():
        int8.mkdir(parents=True, exist_ok=True)
        quantize_int8(fp32 / "model.onnx", int8 / "model.onnx")  # the exporter's own int8 step
        meta = json.loads((fp32 / "meta.json").read_text(encoding="utf-8"))
        (int8 / "meta.json").write_text(json.dumps({**meta, "precision": "int8"}, indent=1), encoding="utf-8")


def _build(variant: str, args: argparse.Namespace) -> tuple[list[str], Any, Any]:
    """(languages, features(audio), call(features) -> (array, is_probability)) of one variant, built as a worker."""
    from backend import create_app
    from config import build_settings

    paths = _paths(args)
    base = variant.removesuffix("-noarena").removesuffix("-pattern")
    precision = base.removeprefix("onnx-") if base.startswith("onnx") else "fp32"
    settings = build_settings(backend="onnx" if base.startswith("onnx") else "torch", whisper_model=str(paths["whisper"]),
                              onnx_dir=paths["onnx"] / precision, onnx_cpu_arena=not variant.endswith("-noarena"),
                              onnx_mem_pattern=variant.endswith("-pattern"), inference_threads=args.threads,
                              state_dir=args.out / "state")
    create_app(settings)  # a worker imports the app before any model
    if base in ("ct2", "fw-own"):
        from backend.audio.features import whisper_log_mel
        from backend.pipelines.language.detector import language_codes, read_lang_to_id
        from scripts.whisper_peers import Ct2Peer

        codes, _ = language_codes(read_lang_to_id(paths["whisper"]))
        peer = Ct2Peer(paths["ct2"], codes, threads=args.threads)
        if base == "ct2":
            return codes, whisper_log_mel, lambda f: (peer.language_probabilities(f), True)
        return codes, lambda audio: audio, lambda audio: (peer.own_detection(audio), True)
    from backend.catalog import pipeline_class

    pipe = pipeline_class("language", settings.backend_for("language"))(settings)
    pipe.load()
    return pipe.languages, pipe.features, lambda f: (pipe.logits(f), False)


def _child(variant: str, args: argparse.Namespace) -> None:
    import numpy as np

    from backend.memory.readings import peak_rss_mb, rss_mb
    from backend.pipelines.windows import softmax

    speech = clips(args)
    started = time.perf_counter()
    languages, features, call = _build(variant, args)
    load_s, rss_loaded = time.perf_counter() - started, rss_mb()
    call(features(speech[0][1]))  # warm-up, not timed
    results = {}
    for clip, audio in speech:
        inputs = features(audio)
        cpu, wall = time.process_time(), time.perf_counter()
        output, is_probability = call(inputs)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        probabilities = np.asarray(output, np.float64) if is_probability else softmax(np.asarray(output, np.float64))
        results[clip.id] = {"probabilities": probabilities.tolist(), "cpu_s": cpu, "wall_s": wall}
    (args.out / f"{variant}.json").write_text(json.dumps({
        "variant": variant, "languages": languages, "load_s": load_s, "rss_loaded_mb": rss_loaded,
        "peak_mb": peak_rss_mb(), "clips": results}))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def interleaved_timing(args: argparse.Namespace, variants: list[str], rounds: int, clip_id: str) -> str:
    """Every variant loaded in one process, one window each in turn, `rounds` times: ratios under the same load."""
    clip, audio = next((c, a) for c, a in clips(args) if c.id == clip_id)
    built = {}
    for variant in variants:
        _, features, call = _build(variant, args)
        inputs = features(audio)
        call(inputs)  # warm-up
        built[variant] = (inputs, call)
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    order = list(variants)
    for round_index in range(rounds):
        random.Random(round_index).shuffle(order)
        for variant in order:
            inputs, call = built[variant]
            cpu, wall = time.process_time(), time.perf_counter()
            call(inputs)
            times[variant].append((time.process_time() - cpu, time.perf_counter() - wall))
    reference = REFERENCE if REFERENCE in times else variants[0]
    ref_cpu, ref_wall = _median([c for c, _ in times[reference]]), _median([w for _, w in times[reference]])
    lines = [f"Interleaved: {clip.id} ({audio.size / 16000:.1f} s of speech in one 30 s window), {rounds} rounds, "
             "one process", "", "| variant | CPU s (median) | wall s (median) | wall s (min) | CPU ratio to torch | "
             "wall ratio to torch |", "|---|---|---|---|---|---|"]
    for v in variants:
        cpu, wall = _median([c for c, _ in times[v]]), _median([w for _, w in times[v]])
        lines.append(f"| {v} | {cpu:.3f} | {wall:.3f} | {min(w for _, w in times[v]):.3f} | {cpu / ref_cpu:.2f} | "
                     f"{wall / ref_wall:.2f} |")
    return "\n".join(lines)


def intelligibility(args: argparse.Namespace) -> str:
    """Character error rate of faster-whisper's transcript of every Kokoro en/es clip (the test's judge)."""
    from backend.pipelines.language.detector import language_codes, read_lang_to_id
    from scripts.intelligibility import character_error_rate
    from scripts.whisper_peers import Ct2Peer

    paths = _paths(args)
    codes, _ = language_codes(read_lang_to_id(paths["whisper"]))
    peer = Ct2Peer(paths["ct2"], codes, threads=args.threads)
    lines = ["| clip | voice | CER | transcript |", "|---|---|---|---|"]
    per_language: dict[str, list[float]] = {}
    for clip, audio in clips(args):
        if clip.engine != "kokoro" or clip.language not in ("en", "es"):
            continue
        transcript = peer.transcribe(audio, clip.language)
        cer = character_error_rate(clip.text, transcript)
        per_language.setdefault(clip.language, []).append(cer)
        lines.append(f"| {clip.id} | {clip.voice} | {cer:.3f} | {transcript} |")
    lines += ["", "| language | clips | mean CER | worst CER |", "|---|---|---|---|"]
    lines += [f"| {lang} | {len(v)} | {sum(v) / len(v):.3f} | {max(v):.3f} |" for lang, v in per_language.items()]
    return "\n".join(lines)


# Held-out sentences (in no test and no clip) per Kokoro language code, and the code Whisper names it by.
HELD_OUT = {
    "a": ["The library closes early on Sundays, so bring the books back on Saturday.",
          "Please turn left at the second traffic light and park behind the bakery."],
    "e": ["La biblioteca cierra temprano los domingos, así que devuelve los libros el sábado.",
          "Gira a la izquierda en el segundo semáforo y aparca detrás de la panadería."],
    "f": ["La bibliothèque ferme tôt le dimanche, alors rapporte les livres samedi.",
          "Tourne à gauche au deuxième feu et gare-toi derrière la boulangerie."],
    "h": ["पुस्तकालय रविवार को जल्दी बंद हो जाता है।", "दूसरी बत्ती पर बाएं मुड़िए और बेकरी के पीछे गाड़ी खड़ी कीजिए।"],
    "i": ["La biblioteca chiude presto la domenica, quindi riporta i libri sabato.",
          "Gira a sinistra al secondo semaforo e parcheggia dietro la panetteria."],
    "p": ["A biblioteca fecha cedo aos domingos, então devolva os livros no sábado.",
          "Vire à esquerda no segundo semáforo e estacione atrás da padaria."],
    "j": ["図書館は日曜日に早く閉まります。", "二つ目の信号を左に曲がってください。"],
    "z": ["图书馆星期天很早关门。", "在第二个红绿灯向左转。"],
}
HELD_OUT["b"] = HELD_OUT["a"]
WHISPER_CODES = {"a": "en", "b": "en", "e": "es", "f": "fr", "h": "hi", "i": "it", "p": "pt", "j": "ja", "z": "zh"}
VOICES = ("af_heart", "af_alloy", "af_nova", "af_bella", "af_nicole", "af_sky", "am_onyx", "am_echo", "bf_emma",
          "bm_fable", "bm_george", "ef_dora", "em_alex", "ff_siwis", "hf_alpha", "hm_omega", "if_sara", "im_nicola",
          "pf_dora", "pm_alex", "jf_alpha", "jm_kumo", "zf_xiaoxiao", "zm_yunxi")


def voices_intelligibility(args: argparse.Namespace) -> str:
    """Each voice of the 54-voice export (backend/provision/voices.py) speaking held-out sentences in its own
    language through the product's ONNX pipeline; faster-whisper (whisper-base from PyPI, CTranslate2) writes
    them down (CER) and names their language (probability of the right one, top-1)."""
    import numpy as np
    import soxr

    from backend.api.schemas.tts import validate_request
    from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline
    from config import build_settings
    from scripts.ct2.packages import assemble_ct2_folder, download_wheels
    from scripts.intelligibility import character_error_rate
    from scripts.whisper_peers import Ct2Peer

    ct2 = _paths(args)["ct2"]
    if not (ct2 / "model.bin").is_file():
        assemble_ct2_folder(download_wheels(args.out / "wheels"), ct2)
    settings = build_settings(inference_threads=args.threads, prometheus_multiproc_dir=None)
    pipe = KokoroOnnxPipeline(settings)
    pipe.load()
    peer = Ct2Peer(ct2, [], threads=args.threads)
    lines = ["| voice | language | sentences | mean CER | worst CER | P(right language) mean | min | heard as |",
             "|---|---|---|---|---|---|---|---|"]
    for voice in [v for v in args.voice_list if v in pipe.voices]:
        code = voice[0]
        cers, probabilities, heard = [], [], []
        for text in HELD_OUT[code]:
            try:
                request = validate_request(settings, text=text, voice=voice, fmt="pcm")
                speech = pipe.postprocess(pipe.run(pipe.preprocess(request)))
            except Exception as exc:  # a G2P that is not installed: the row says so
                lines.append(f"| {voice} | {WHISPER_CODES[code]} | – | – | – | – | – | not spoken: "
                             f"{str(exc)[:120]} |")
                break
            raw = speech.content if isinstance(speech.content, bytes) else b"".join(speech.content)
            audio = soxr.resample(np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768, 24_000, 16_000)
            cers.append(character_error_rate(text, peer.transcribe(audio, WHISPER_CODES[code])))
            _, _, ranked = peer.model.detect_language(audio=audio)
            ranked = dict(ranked)
            probabilities.append(ranked.get(WHISPER_CODES[code], 0.0))
            heard.append(max(ranked, key=ranked.get))
        else:
            lines.append(f"| {voice} | {WHISPER_CODES[code]} | {len(cers)} | {sum(cers) / len(cers):.3f} | "
                         f"{max(cers):.3f} | {sum(probabilities) / len(probabilities):.2f} | {min(probabilities):.2f} | "
                         f"{', '.join(heard)} |")
        print(lines[-1], file=sys.stderr, flush=True)
    pipe.close()
    return "\n".join(lines)


def report(args: argparse.Namespace, variants: list[str]) -> str:
    import numpy as np

    from scripts.speech_parity import GUARD_TOLERANCE, SPEECH_TOLERANCE, speech_parity

    speech = [clip for clip, _ in clips(args)]
    runs = {v: json.loads((args.out / f"{v}.json").read_text()) for v in variants if (args.out / f"{v}.json").is_file()}
    variants = [v for v in variants if v in runs]
    languages = runs[variants[0]]["languages"]
    top = {v: {c.id: languages[int(np.argmax(runs[v]["clips"][c.id]["probabilities"]))] for c in speech}
           for v in variants}
    lines = ["Accuracy (top-1 = the spoken language), per engine and language", "",
             "| engine | language | clips | " + " | ".join(variants) + " |", "|---|---|---|" + "---|" * len(variants)]
    groups: dict[tuple[str, str], list] = {}
    for clip in speech:
        groups.setdefault((clip.engine, clip.language), []).append(clip)
    for engine in ("kokoro", "espeak"):
        keys = sorted(k for k in groups if k[0] == engine)
        for key in keys:
            members = groups[key]
            cells = [f"{sum(top[v][c.id] == c.language for c in members)}/{len(members)}" for v in variants]
            lines.append(f"| {engine} | {key[1]} | {len(members)} | " + " | ".join(cells) + " |")
        members = [c for k in keys for c in groups[k]]
        cells = [f"**{sum(top[v][c.id] == c.language for c in members)}/{len(members)}**" for v in variants]
        lines.append(f"| **{engine}** | **{len(keys)} languages** | {len(members)} | " + " | ".join(cells) + " |")
    cells = [f"**{sum(top[v][c.id] == c.language for c in speech)}/{len(speech)}**" for v in variants]
    lines.append(f"| both | | {len(speech)} | " + " | ".join(cells) + " |")

    reference = REFERENCE if REFERENCE in runs else variants[0]
    misses = [f"{c.id} → {top[reference][c.id]}" for c in speech if top[reference][c.id] != c.language]
    lines += ["", f"{reference} misses: " + ", ".join(misses), "", f"Agreement with {reference} (same clips)", "",
              "| variant | top-1 agrees | max abs diff of any language probability | median per clip | "
              "clips that disagree |", "|---|---|---|---|---|"]
    for v in variants:
        diffs, disagree = [], []
        for c in speech:
            ref, got = (np.array(runs[x]["clips"][c.id]["probabilities"]) for x in (reference, v))
            diffs.append(float(np.abs(ref - got).max()))
            if top[v][c.id] != top[reference][c.id]:
                disagree.append(f"{c.id} ({top[reference][c.id]}→{top[v][c.id]})")
        lines.append(f"| {v} | {len(speech) - len(disagree)}/{len(speech)} | {max(diffs):.2g} | {_median(diffs):.2g} | "
                     f"{', '.join(disagree[:6]) + (' …' if len(disagree) > 6 else '') or '–'} |")

    lines += ["", f"Real-speech parity rule (scripts/speech_parity.py) vs {reference}: kokoro decides, espeak guards "
              f"(only its p ≥ {GUARD_TOLERANCE.confident:g} row binds)", "",
              "| variant | set | clips (ref p ≥ 0.8) | top-1 agreement | agreement where p ≥ 0.8 | median abs dp | "
              "accuracy drop | verdict |", "|---|---|---|---|---|---|---|---|"]
    for v in variants:
        if v == reference:
            continue
        verdicts = []
        for engine, tolerance in (("kokoro", SPEECH_TOLERANCE), ("espeak", GUARD_TOLERANCE)):
            subset = [c for c in speech if c.engine == engine]
            ref = np.array([runs[reference]["clips"][c.id]["probabilities"] for c in subset])
            got = np.array([runs[v]["clips"][c.id]["probabilities"] for c in subset])
            rows = speech_parity("whisper", v, ref, got, [languages.index(c.language) for c in subset], tolerance)
            verdicts.append(all(r.ok for r in rows))
            cells = [f"{r.value:.3g}{'' if r.ok else ' ✗'}" for r in rows]
            confident = int((ref.max(-1) >= tolerance.confident).sum())
            verdict = ("ships" if all(verdicts) else "refused") if engine == "espeak" else ""
            lines.append(f"| {v} | {engine} | {len(subset)} ({confident}) | " + " | ".join(cells) + f" | {verdict} |")

    lines += ["", "Cost per 30 s window (one process per variant, median over the clips)", "",
              "| variant | load s | RSS loaded MB | peak RSS MB | CPU s / window | wall s / window | CPU ratio to torch |",
              "|---|---|---|---|---|---|---|"]
    ref_cpu = _median([r["cpu_s"] for r in runs[reference]["clips"].values()])
    for v in variants:
        cpu = _median([r["cpu_s"] for r in runs[v]["clips"].values()])
        wall = _median([r["wall_s"] for r in runs[v]["clips"].values()])
        run = runs[v]
        lines.append(f"| {v} | {run['load_s']:.1f} | {run['rss_loaded_mb']:.0f} | {run['peak_mb'] or 0:.0f} | "
                     f"{cpu:.3f} | {wall:.3f} | {cpu / ref_cpu:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/quality"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of every runtime (2 = the cores here)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--interleaved", type=int, default=0, metavar="ROUNDS",
                        help="instead: time ROUNDS windows per variant, all loaded in one process, in turn")
    parser.add_argument("--clip", default="kokoro-es-0", help="the clip --interleaved times")
    parser.add_argument("--cer", action="store_true", help="instead: Kokoro en/es transcribed by faster-whisper")
    parser.add_argument("--voices", nargs="?", const=",".join(VOICES), default=None, metavar="VOICES",
                        help="instead: these voices of the 54-voice export (default: one or more per language) "
                             "speaking held-out sentences, written down by faster-whisper")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.child:
        _child(args.child, args)
        return 0
    if args.voices is not None:
        args.voice_list = [v.strip() for v in args.voices.split(",") if v.strip()]
        print(voices_intelligibility(args))
        return 0
    prepare(args)
    if args.cer:
        print(intelligibility(args))
        return 0
    if args.interleaved:
        print(interleaved_timing(args, variants, args.interleaved, args.clip))
        return 0
    if not args.report_only:
        for variant in variants:
            print(f"running {variant} ...", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, __file__, "--child", variant, "--out", str(args.out),
                            "--threads", str(args.threads)], check=True,
                           env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    print(report(args, variants))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
