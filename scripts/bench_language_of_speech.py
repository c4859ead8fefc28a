"""How surely whisper-base names the language of our Kokoro's speech, and how well it writes it down: a TTS
change's check by an independent listener.

    .venv/bin/python scripts/bench_language_of_speech.py --set large --variants jp native native+tts_first_piece_tokens=0

Sets: `small` = the 30 clips of scripts/speech_clips.kokoro_plan (5 sentences per language, es fr it hi pt
en); `large` = LARGE_TEXTS below, 12 ordinary sentences per language written for this benchmark only (in
no test, clip or other benchmark). Order is fixed (language, then sentence); `--seed` picks each
sentence's voice among the variant's voices for that language (the same seed, the same voices).

A variant is VOICES[+SETTING=VALUE...]: VOICES is `jp` (the five Japanese voices in rotation, what
speech_clips speaks with: the only voices the packaged model carries) or `native` (each language's own
Kokoro voices, NATIVE_VOICES: the 54-voice export, `python -m backend.provision voices`); each
SETTING=VALUE overrides one Settings field for that variant (e.g. tts_first_piece_tokens=0), except
`english=espeakg2p`: English read as before issue 23's fix (misaki's generic EspeakG2P on en-us/en-gb,
espeak's own symbols), to hear that fix's before and after in one run. Every
variant speaks every sentence through the product's ONNX TTS (KokoroOnnxPipeline, this checkout's code)
in this one process, so variants of one run share the machine's load.

The listener: whisper-base from PyPI in CTranslate2 format (models/whisper-base-ct2, the folder
scripts/setup.sh dev assembles; faster-whisper, dev-only). Language: the first decoder step's
probabilities on our own log-mel (backend.audio.features.whisper_log_mel: what the product's language
pipeline computes), or with `--onnx-dir` the product's exported Whisper itself; "right" = the top-1 is
the spoken language, P(right) its probability. Transcript: greedy, the language forced; CER against the
text (scripts/intelligibility.py's normalisation). Hindi's CER measures whisper-base's script (it often
writes Hindi speech in Urdu letters), not the speech.

Prints one line per clip, then a table per variant and language: right / clips, mean P(right), mean CER.
`--out` writes every clip's figures as JSON; `--clips DIR` caches each variant's audio in DIR/<variant>
(reused only while texts, voices and settings are the same; use a fresh DIR per checkout).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, ".")

WHISPER = {"es": "es", "fr": "fr", "it": "it", "hi": "hi", "pt": "pt", "en": "en"}
JAPANESE_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
NATIVE_VOICES = {
    "es": ("ef_dora", "em_alex", "em_santa"), "fr": ("ff_siwis",), "it": ("if_sara", "im_nicola"),
    "hi": ("hf_alpha", "hf_beta", "hm_omega", "hm_psi"), "pt": ("pf_dora", "pm_alex", "pm_santa"),
    "en": ("af_heart", "af_bella", "am_michael", "bf_emma", "bm_george"),
}

# 12 ordinary sentences per language, written for this benchmark (no digits: the listener is judged, not
# the number reader). Not in speech_clips, bench_quality's held-out sentences, or any test.
LARGE_TEXTS: dict[str, list[str]] = {
    "es": ["Mañana por la tarde vamos a visitar a mis primos en el pueblo.",
           "El médico me dijo que debo caminar más y dormir mejor.",
           "Esta tienda cierra a mediodía, pero vuelve a abrir por la tarde.",
           "Nuestros vecinos tienen un perro pequeño que ladra por las noches.",
           "Me gustaría reservar una mesa para cuatro personas junto a la ventana.",
           "El autobús llegó tarde otra vez y perdimos el principio de la película.",
           "Si llueve el sábado, nos quedaremos en casa jugando a las cartas.",
           "La profesora explicó la lección con mucha paciencia y buen humor.",
           "He olvidado las llaves en la oficina y no puedo entrar en casa.",
           "Los niños recogieron manzanas en el huerto de su abuelo.",
           "¿Podrías ayudarme a llevar estas cajas al segundo piso?",
           "El museo de arte moderno tiene una exposición nueva sobre fotografía."],
    "fr": ["Demain après-midi, nous allons rendre visite à mes cousins à la campagne.",
           "Le médecin m'a conseillé de marcher davantage et de mieux dormir.",
           "Cette boutique ferme à midi, mais elle rouvre en fin d'après-midi.",
           "Nos voisins ont un petit chien qui aboie toute la nuit.",
           "Je voudrais réserver une table pour quatre personnes près de la fenêtre.",
           "Le bus est encore arrivé en retard et nous avons manqué le début du film.",
           "S'il pleut samedi, nous resterons à la maison pour jouer aux cartes.",
           "La maîtresse a expliqué la leçon avec beaucoup de patience.",
           "J'ai oublié mes clés au bureau et je ne peux pas rentrer chez moi.",
           "Les enfants ont cueilli des pommes dans le verger de leur grand-père.",
           "Pourriez-vous m'aider à porter ces cartons au deuxième étage ?",
           "Le musée d'art moderne présente une nouvelle exposition de photographies."],
    "it": ["Domani pomeriggio andiamo a trovare i miei cugini in campagna.",
           "Il medico mi ha detto di camminare di più e di dormire meglio.",
           "Questo negozio chiude a mezzogiorno, ma riapre nel pomeriggio.",
           "I nostri vicini hanno un cane piccolo che abbaia tutta la notte.",
           "Vorrei prenotare un tavolo per quattro persone vicino alla finestra.",
           "L'autobus è arrivato di nuovo in ritardo e abbiamo perso l'inizio del film.",
           "Se sabato piove, resteremo a casa a giocare a carte.",
           "La maestra ha spiegato la lezione con molta pazienza.",
           "Ho dimenticato le chiavi in ufficio e non posso entrare in casa.",
           "I bambini hanno raccolto le mele nel frutteto del nonno.",
           "Potresti aiutarmi a portare queste scatole al secondo piano?",
           "Il museo d'arte moderna ospita una nuova mostra di fotografia."],
    "hi": ["कल दोपहर हम गाँव में अपने चचेरे भाइयों से मिलने जाएंगे।",
           "डॉक्टर ने मुझसे कहा कि मुझे ज़्यादा चलना और अच्छी नींद लेनी चाहिए।",
           "यह दुकान दोपहर को बंद होती है, लेकिन शाम को फिर खुलती है।",
           "हमारे पड़ोसियों के पास एक छोटा कुत्ता है जो रात भर भौंकता है।",
           "मैं खिड़की के पास चार लोगों के लिए एक मेज़ बुक करना चाहता हूँ।",
           "बस फिर से देर से आई और हमने फ़िल्म की शुरुआत छोड़ दी।",
           "अगर शनिवार को बारिश हुई, तो हम घर पर ताश खेलेंगे।",
           "अध्यापिका ने बड़े धैर्य से पाठ समझाया।",
           "मैं चाबियाँ दफ़्तर में भूल गया और घर में नहीं जा सकता।",
           "बच्चों ने अपने दादा के बाग़ से सेब तोड़े।",
           "क्या आप ये डिब्बे दूसरी मंज़िल तक ले जाने में मेरी मदद करेंगे?",
           "आधुनिक कला संग्रहालय में तस्वीरों की एक नई प्रदर्शनी लगी है।"],
    "pt": ["Amanhã à tarde vamos visitar os meus primos no interior.",
           "O médico me disse que eu preciso caminhar mais e dormir melhor.",
           "Esta loja fecha ao meio-dia, mas abre de novo à tarde.",
           "Os nossos vizinhos têm um cachorro pequeno que late a noite toda.",
           "Eu gostaria de reservar uma mesa para quatro pessoas perto da janela.",
           "O ônibus chegou atrasado de novo e perdemos o começo do filme.",
           "Se chover no sábado, vamos ficar em casa jogando cartas.",
           "A professora explicou a lição com muita paciência.",
           "Esqueci as chaves no escritório e não consigo entrar em casa.",
           "As crianças colheram maçãs no pomar do avô.",
           "Você pode me ajudar a levar estas caixas para o segundo andar?",
           "O museu de arte moderna tem uma nova exposição de fotografia."],
    "en": ["Tomorrow afternoon we are going to visit my cousins in the countryside.",
           "The doctor told me to walk more and to sleep better.",
           "This shop closes at noon, but it opens again in the late afternoon.",
           "Our neighbours have a small dog that barks all night long.",
           "I would like to book a table for four people near the window.",
           "The bus was late again and we missed the beginning of the film.",
           "If it rains on Saturday, we will stay at home and play cards.",
           "The teacher explained the lesson with a great deal of patience.",
           "I left my keys at the office and I cannot get into the house.",
           "The children picked apples in their grandfather's orchard.",
           "Could you help me carry these boxes up to the second floor?",
           "The modern art museum has a new exhibition of photographs."],
}


@dataclass(frozen=True)
class Sentence:
    id: str
    lang: str  # the product's `lang` and Whisper's code (the same two letters here)
    text: str


def sentences(which: str, per_language: int | None = None) -> list[Sentence]:
    """The set's sentences in a fixed order: language, then sentence."""
    if which == "small":
        from scripts.speech_clips import KOKORO_TEXTS

        texts = {lang: items for lang, (_, items) in KOKORO_TEXTS.items()}
    else:
        texts = LARGE_TEXTS
    return [Sentence(f"{which}-{lang}-{i}", lang, text) for lang, items in texts.items()
            for i, text in enumerate(items[:per_language])]


@dataclass(frozen=True)
class Variant:
    name: str
    voices: str  # jp | native
    overrides: dict

    @classmethod
    def parse(cls, spec: str) -> Variant:
        voices, *settings = spec.split("+")
        if voices not in ("jp", "native"):
            raise SystemExit(f"variant {spec!r}: voices must be jp or native")
        overrides = {}
        for item in settings:
            key, _, value = item.partition("=")
            try:
                overrides[key] = json.loads(value)
            except ValueError:
                overrides[key] = value
        return cls(spec, voices, overrides)

    def voice_of(self, sentence: Sentence, index: int, rng: random.Random) -> str:
        pool = JAPANESE_VOICES if self.voices == "jp" else NATIVE_VOICES[sentence.lang]
        return pool[index % len(pool)] if self.voices == "jp" else rng.choice(pool)


def plan(variant: Variant, items: list[Sentence], seed: int) -> list[tuple[Sentence, str]]:
    """(sentence, voice) in the set's order; jp voices rotate per language as speech_clips does."""
    rng = random.Random(f"{seed}-{variant.voices}")
    index: dict[str, int] = {}
    out = []
    for sentence in items:
        i = index[sentence.lang] = index.get(sentence.lang, -1) + 1
        out.append((sentence, variant.voice_of(sentence, i, rng)))
    return out


def speak_all(variant: Variant, items: list[tuple[Sentence, str]], cache: Path | None) -> list[np.ndarray]:
    """Each sentence spoken by this checkout's ONNX TTS with the variant's settings, at 16 kHz (cached)."""
    import hashlib

    import soundfile

    from backend.audio.features import SAMPLE_RATE_HZ
    from backend.pipelines.tts import g2p
    from config import build_settings

    key = hashlib.sha256(json.dumps([[s.text, v] for s, v in items] + [variant.overrides], ensure_ascii=False,
                                    sort_keys=True).encode()).hexdigest()[:16]
    folder = cache / variant.name.replace("=", "-").replace("+", "_") if cache else None
    if folder and (folder / "key").is_file() and (folder / "key").read_text() == key:
        return [soundfile.read(folder / f"{s.id}.wav", dtype="float32")[0] for s, _ in items]
    overrides = dict(variant.overrides)
    english, plain_english = overrides.pop("english", None), g2p.english_espeak
    if english == "espeakg2p":  # before issue 23's fix (restored below)
        from misaki.espeak import EspeakG2P

        g2p.english_espeak = lambda british: EspeakG2P(language="en-gb" if british else "en-us")
    elif english is not None:
        raise SystemExit(f"variant {variant.name!r}: english must be espeakg2p")
    try:
        settings = build_settings(backend="onnx", prometheus_multiproc_dir=None, **overrides)
        out = _speak(settings, items)
    finally:
        g2p.english_espeak = plain_english
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        for (sentence, _), audio in zip(items, out, strict=True):
            soundfile.write(folder / f"{sentence.id}.wav", audio, SAMPLE_RATE_HZ, subtype="FLOAT")
        (folder / "key").write_text(key)
    print(f"# {variant.name}: spoken", file=sys.stderr, flush=True)
    return out


def _speak(settings: Any, items: list[tuple[Sentence, str]]) -> list[np.ndarray]:
    from backend.api.schemas.tts import validate_request
    from backend.audio.decode import resample
    from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline

    pipe = KokoroOnnxPipeline(settings)
    pipe.load()
    missing = sorted({v for _, v in items} - set(pipe.voices.names))
    if missing:
        raise SystemExit(f"voices not installed: {', '.join(missing)} (python -m backend.provision voices)")
    out = []
    cpu = time.process_time()
    for sentence, voice in items:
        # A native voice's own language picks the G2P (bf_emma reads British English); a Japanese voice is told.
        lang = sentence.lang if voice[:1] == "j" else None
        request = validate_request(settings, text=sentence.text, voice=voice, fmt="wav", lang=lang)
        blocks = list(pipe.run(pipe.preprocess(request)).blocks)
        out.append(resample(np.concatenate(blocks), pipe.sample_rate))
    print(f"# spoken in {time.process_time() - cpu:.1f} CPU-s", file=sys.stderr, flush=True)
    pipe.close()
    return out


class Listener:
    """whisper-base: language probabilities (CTranslate2 on our log-mel, or the product's ONNX export) and a
    greedy transcript with the language forced (CTranslate2 through faster-whisper)."""

    def __init__(self, ct2_dir: Path, onnx_dir: str | None, threads: int) -> None:
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=threads)
        self.onnx = None
        if onnx_dir:
            from backend.pipelines.language.whisper_onnx import WhisperOnnxPipeline
            from config import build_settings

            self.onnx = WhisperOnnxPipeline(build_settings(onnx_dir=onnx_dir, backend="onnx"))
            self.onnx.load()

    def languages(self, audio: np.ndarray) -> dict[str, float]:
        if self.onnx is not None:
            answer = self.onnx({"audio": audio, "top_k": 5})
            return {r["language"]: r["probability"] for r in answer["languages"]}
        import ctranslate2

        from backend.audio.features import whisper_log_mel

        features = np.ascontiguousarray(whisper_log_mel(audio)[None], dtype=np.float32)
        ranked = self.model.model.detect_language(ctranslate2.StorageView.from_array(features))[0]
        return {token.removeprefix("<|").removesuffix("|>"): prob for token, prob in ranked}

    def transcribe(self, audio: np.ndarray, language: str) -> str:
        segments, _ = self.model.transcribe(np.asarray(audio, dtype=np.float32), language=language, beam_size=1,
                                            temperature=0.0, condition_on_previous_text=False, vad_filter=False,
                                            without_timestamps=True)
        return " ".join(segment.text.strip() for segment in segments)


def table(results: dict[str, list[dict]], languages: list[str]) -> str:
    names = list(results)
    head = "| language | clips | " + " | ".join(f"{n}: right | {n}: mean P(right) | {n}: mean CER" for n in names)
    lines = [head + " |", "|---|---|" + "---|---|---|" * len(names)]
    for lang in languages + ["all"]:
        row = []
        count = 0
        for name in names:
            rows = [r for r in results[name] if lang in ("all", r["lang"])]
            count = len(rows)
            right = sum(r["heard"] == WHISPER[r["lang"]] for r in rows)
            cer = [r["cer"] for r in rows if lang != "all" or r["lang"] != "hi"]
            row.append(f"{right} | {sum(r['p_right'] for r in rows) / len(rows):.3f} | "
                       + (f"{sum(cer) / len(cer):.3f}" if cer else "–"))
        label = "all (CER without hi)" if lang == "all" else lang
        lines.append(f"| {label} | {count} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("small", "large"), default="small")
    parser.add_argument("--per-language", type=int, default=None, help="only the first N sentences per language")
    parser.add_argument("--languages", default=",".join(WHISPER), help="comma-separated (es,fr,it,hi,pt,en)")
    parser.add_argument("--variants", nargs="+", default=["jp"], help="VOICES[+SETTING=VALUE...], VOICES jp|native")
    parser.add_argument("--seed", type=int, default=23, help="picks each sentence's native voice")
    parser.add_argument("--ct2-dir", type=Path, default=Path("models/whisper-base-ct2"))
    parser.add_argument("--onnx-dir", default=None, help="language by the product's exported Whisper instead")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clips", type=Path, default=None, help="cache of the spoken audio (one per checkout)")
    parser.add_argument("--out", type=Path, help="JSON: variant -> clips' figures")
    args = parser.parse_args(argv)
    from scripts.intelligibility import character_error_rate

    languages = [lang for lang in args.languages.split(",") if lang]
    items = [s for s in sentences(args.set, args.per_language) if s.lang in languages]
    variants = [Variant.parse(spec) for spec in args.variants]
    spoken = {v.name: (plan(v, items, args.seed), speak_all(v, plan(v, items, args.seed), args.clips))
              for v in variants}
    listener = Listener(args.ct2_dir, args.onnx_dir, args.threads)
    results: dict[str, list[dict]] = {}
    for name, (pairs, audios) in spoken.items():
        for (sentence, voice), audio in zip(pairs, audios, strict=True):
            code = WHISPER[sentence.lang]
            probabilities = listener.languages(audio)
            heard = max(probabilities, key=probabilities.get)
            transcript = listener.transcribe(audio, code)
            row = {"id": sentence.id, "lang": sentence.lang, "voice": voice, "heard": heard,
                   "p_right": round(probabilities.get(code, 0.0), 4),
                   "cer": round(character_error_rate(sentence.text, transcript), 4), "transcript": transcript,
                   "seconds": round(audio.size / 16_000, 2)}
            results.setdefault(name, []).append(row)
            print(name, row["id"], voice, heard, row["p_right"], row["cer"], transcript, flush=True)
    print()
    print(table(results, languages))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
