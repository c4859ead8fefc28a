"""Word timestamps against an independent listener, and the first audio's cost: issue 23 sections 2 and 3.

`captions`: the ONNX pipeline (packaged int8 Kokoro) speaks English, Spanish and French paragraphs
with captions; faster-whisper (real whisper-base, CTranslate2, benchmark-only) transcribes the
same audio with its own word timestamps; words matched by their normalised text (difflib) are
compared: |start difference| median and p90, per language and over all.

`first`: for TTS_FIRST_PIECE_TOKENS values, an ordinary sentence and a three-sentence text:
CPU-seconds until the first audio block (preprocess + first piece; process time, so other
processes' load does not count), CPU-seconds for the whole stream, the first block's share,
the first piece's words, its intelligibility alone and the whole text's (CER by faster-whisper),
and the longest silence inside the joined audio (the joins).

    python -m scripts.bench_tts_captions captions --whisper /tmp/whisper-ct2
    python -m scripts.bench_tts_captions first --whisper /tmp/whisper-ct2 --limits 30,16,12,8
"""
from __future__ import annotations

import argparse
import difflib
import io
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile

from backend.api.schemas.tts import validate_request
from backend.audio.decode import resample
from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline
from backend.pipelines.tts.pipeline import SAMPLE_RATE_HZ
from config import build_settings
from scripts.intelligibility import character_error_rate, normalise

TEXTS = {
    "en": ("The old lighthouse stood at the end of the harbour, and every night its keeper climbed the narrow stairs "
           "to light the lamp. Ships passing in the dark trusted that light more than their own charts. One winter "
           "a storm broke the glass, and the keeper spent the whole night holding a lantern in the window. In the "
           "morning the fishermen came to thank him, bringing bread, fish and a bottle of wine. He laughed and said "
           "that he had only done his job, but he kept the empty bottle on his shelf for the rest of his life. "
           "Today the lighthouse is a small museum, and children still climb the stairs to see the great lamp."),
    "es": ("El viejo faro estaba al final del puerto, y cada noche su guardián subía las escaleras estrechas para "
           "encender la lámpara. Los barcos que pasaban en la oscuridad confiaban en esa luz más que en sus propias "
           "cartas. Un invierno una tormenta rompió el cristal, y el guardián pasó toda la noche con una linterna en "
           "la ventana. Por la mañana los pescadores vinieron a darle las gracias, con pan, pescado y una botella de "
           "vino. Hoy el faro es un pequeño museo, y los niños todavía suben las escaleras para ver la gran lámpara."),
    "fr": ("Le vieux phare se dressait au bout du port, et chaque nuit son gardien montait l'escalier étroit pour "
           "allumer la lampe. Les bateaux qui passaient dans le noir faisaient plus confiance à cette lumière qu'à "
           "leurs propres cartes. Un hiver, une tempête brisa la vitre, et le gardien passa toute la nuit avec une "
           "lanterne à la fenêtre. Le matin, les pêcheurs vinrent le remercier, avec du pain, du poisson et une "
           "bouteille de vin. Aujourd'hui le phare est un petit musée, et les enfants montent encore l'escalier."),
}
# A second set of paragraphs, for choosing a correction of the word starts (`--texts fit`); TEXTS is then the
# held-out set it is checked on.
FIT_TEXTS = {
    "en": ("My grandmother kept bees behind the house, in six white boxes under the apple trees. Every summer she "
           "put on a hat with a veil, lit a little smoker and opened the hives one by one. I was allowed to watch "
           "from the garden gate, but never to come closer. She talked to the bees while she worked, telling them "
           "the news of the village, because she believed they would leave if nobody spoke to them. In September "
           "we carried the heavy frames into the kitchen and spun the honey out by hand, and for weeks afterwards "
           "everything we touched was sticky."),
    "es": ("Mi abuela tenía abejas detrás de la casa, en seis cajas blancas bajo los manzanos. Cada verano se ponía "
           "un sombrero con velo, encendía un pequeño ahumador y abría las colmenas una por una. Yo podía mirar "
           "desde la puerta del jardín, pero nunca acercarme. Ella hablaba con las abejas mientras trabajaba, y les "
           "contaba las noticias del pueblo. En septiembre llevábamos los marcos pesados a la cocina y sacábamos la "
           "miel a mano, y durante semanas todo lo que tocábamos estaba pegajoso."),
    "fr": ("Ma grand-mère avait des abeilles derrière la maison, dans six caisses blanches sous les pommiers. Chaque "
           "été elle mettait un chapeau avec un voile, allumait un petit enfumoir et ouvrait les ruches une par une. "
           "Je pouvais regarder depuis la porte du jardin, mais jamais approcher. Elle parlait aux abeilles en "
           "travaillant et leur racontait les nouvelles du village. En septembre nous portions les cadres lourds "
           "dans la cuisine pour en tirer le miel à la main, et pendant des semaines tout ce que nous touchions "
           "collait aux doigts."),
}
VOICES = {"en": ("af_heart", "jf_alpha"), "es": ("ef_dora", "jf_alpha"), "fr": ("ff_siwis", "jf_alpha")}
SENTENCE = "The kettle is on, come and sit down."
THREE = ("The kettle is on, come and sit down. We can talk about the weather while the water boils. "
         "Then we will walk down to the harbour and watch the boats come in.")


def load(threads: int, first: int | None = None) -> KokoroOnnxPipeline:
    overrides = {"tts_first_piece_tokens": first} if first is not None else {}
    settings = build_settings(prometheus_multiproc_dir=None, inference_threads=threads, **overrides)
    pipe = KokoroOnnxPipeline(settings)
    pipe.load()
    return pipe


def listener(path: Path, threads: int):
    from faster_whisper import WhisperModel

    return WhisperModel(str(path), device="cpu", compute_type="float32", cpu_threads=threads)


def heard_words(model, audio16: np.ndarray, language: str) -> list[tuple[str, float]]:
    segments, _ = model.transcribe(audio16, language=language, beam_size=1, temperature=0.0, word_timestamps=True,
                                   condition_on_previous_text=False, vad_filter=False)
    return [(w.word.strip(), float(w.start)) for s in segments for w in (s.words or [])]


def transcript(model, audio16: np.ndarray, language: str) -> str:
    segments, _ = model.transcribe(audio16, language=language, beam_size=1, temperature=0.0,
                                   condition_on_previous_text=False, vad_filter=False, without_timestamps=True)
    return " ".join(s.text.strip() for s in segments)


def to16k(wav: bytes) -> tuple[np.ndarray, np.ndarray]:
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return audio, resample(audio, rate, 16000)


def captions(args: argparse.Namespace) -> dict:
    pipe = load(args.threads)
    judge = listener(args.whisper, args.threads)
    names = set(pipe.voices.names)
    rows, every, words = [], [], []
    for language, text in (FIT_TEXTS if args.texts == "fit" else TEXTS).items():
        voice = next((v for v in VOICES[language] if v in names), sorted(names)[0])
        request = replace(validate_request(pipe.settings, text=text, fmt="wav", voice=voice, lang=language),
                          timed=True)
        speech = pipe(request)
        audio, audio16 = to16k(speech.content)
        ours = [(w.word, w.start_time) for w in speech.words or []]
        heard = heard_words(judge, audio16, language)
        a, b = [normalise(w) for w, _ in ours], [normalise(w) for w, _ in heard]
        diffs = []
        for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
            for k in range(block.size):
                word, start = ours[block.a + k]
                signed = start - heard[block.b + k][1]  # > 0: our start is later than the one Whisper hears
                diffs.append(abs(signed))
                words.append({"language": language, "word": word, "signed_s": round(signed, 3),
                              "first": first_sound(pipe, word, language)})
        every += diffs
        rows.append({"language": language, "voice": voice, "words": len(ours), "heard": len(heard),
                     "cer": round(character_error_rate(text, " ".join(w for w, _ in heard)), 3),
                     "matched": len(diffs), "median_s": round(statistics.median(diffs), 3),
                     "p90_s": round(float(np.percentile(diffs, 90)), 3), "audio_s": round(len(audio) / 24000, 1)})
    rows.append({"language": "all", "voice": "", "words": sum(r["words"] for r in rows),
                 "heard": sum(r["heard"] for r in rows), "matched": len(every),
                 "median_s": round(statistics.median(every), 3), "p90_s": round(float(np.percentile(every, 90)), 3),
                 "audio_s": round(sum(r["audio_s"] for r in rows), 1)})
    signed = [w["signed_s"] for w in words]
    classes = {}
    for w in words:
        classes.setdefault(w["first"], []).append(w["signed_s"])
    return {"rows": rows, "texts": args.texts, "signed_median_s": round(statistics.median(signed), 3),
            "signed_mean_s": round(statistics.fmean(signed), 3),
            "signed_by_first_sound": {k: {"words": len(v), "median_s": round(statistics.median(v), 3)}
                                      for k, v in sorted(classes.items())},
            "words": words}


SOUND_CLASSES = {"plosive": "pbtdkgʧʤcɟʔ", "fricative": "fvθðszʃʒhxɣçʝχʁβ", "nasal": "mnŋɲɱ",
                 "approximant": "lɹrɾwjʎɥʋɫ"}


def first_sound(pipe: KokoroOnnxPipeline, word: str, language: str) -> str:
    """The class of a word's first phoneme (its G2P alone): plosive, fricative, nasal, approximant or vowel."""
    from backend.pipelines.tts.g2p import language_code

    phonemes = pipe.phonemizer(word, language_code(language)) if pipe.phonemizer else ""
    head = next((ch for ch in phonemes if ch.isalpha() and ch not in "ˈˌː"), "")
    return next((name for name, chars in SOUND_CLASSES.items() if head and head in chars), "vowel")


def longest_inner_silence_s(audio: np.ndarray, below: float = 1e-3, frame: int = 240) -> float:
    count = len(audio) // frame
    energy = np.sqrt(np.mean(audio[:count * frame].reshape(count, frame) ** 2, axis=1))
    loud = np.flatnonzero(energy > below)
    if loud.size == 0:
        return 0.0
    quiet, longest = 0, 0
    for value in energy[loud[0]:loud[-1] + 1]:
        quiet = quiet + 1 if value <= below else 0
        longest = max(longest, quiet)
    return longest * frame / SAMPLE_RATE_HZ


def first(args: argparse.Namespace) -> dict:
    judge = listener(args.whisper, args.threads) if args.whisper else None
    rows = []
    for limit in [int(v) for v in args.limits.split(",")]:
        pipe = load(args.threads, limit)
        for name, text in (("sentence", SENTENCE), ("three sentences", THREE)):
            request = validate_request(pipe.settings, text=text, fmt="wav")
            firsts, totals = [], []
            for _ in range(args.repeats):
                started = time.process_time()
                features = pipe.preprocess(request)
                blocks = pipe.run(features).blocks
                head = next(blocks)
                firsts.append(time.process_time() - started)
                rest = list(blocks)
                totals.append(time.process_time() - started)
            audio = np.concatenate([head, *rest])
            pieces = [item for item in features.plan if hasattr(item, "token_ids")]
            row = {"first_limit": limit, "text": name, "pieces": len(pieces),
                   "first_tokens": len(pieces[0].token_ids), "first_cpu_s": round(statistics.median(firsts), 3),
                   "total_cpu_s": round(statistics.median(totals), 3),
                   "first_share": round(statistics.median(firsts) / statistics.median(totals), 3),
                   "audio_s": round(len(audio) / SAMPLE_RATE_HZ, 2),
                   "longest_inner_silence_s": round(longest_inner_silence_s(audio), 3)}
            if judge is not None:
                head16 = resample(head, SAMPLE_RATE_HZ, 16000)
                whole16 = resample(audio, SAMPLE_RATE_HZ, 16000)
                said = transcript(judge, head16, "en")
                row["first_heard"] = said
                row["cer_whole"] = round(character_error_rate(text, transcript(judge, whole16, "en")), 3)
            rows.append(row)
        pipe.close()
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("captions", "first"))
    parser.add_argument("--whisper", type=Path, help="a CTranslate2 whisper-base folder (scripts/convert_whisper_ct2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limits", default="30,16,12,8")
    parser.add_argument("--texts", choices=("test", "fit"), default="test",
                        help="captions: the held-out paragraphs (test) or those a correction is chosen on (fit)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    started = time.time()
    report = captions(args) if args.what == "captions" else first(args)
    report.update({"threads": args.threads, "wall_s": round(time.time() - started, 1),
                   "load_avg": [round(v, 2) for v in __import__("os").getloadavg()],
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    json.dump(report, sys.stdout, indent=1, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
