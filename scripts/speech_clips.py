"""Real-speech clips for language-detection parity and quality: the real Kokoro-82M and espeak-ng.

    python scripts/speech_clips.py --out models/speech-clips    # NAME.wav (16 kHz mono float) + clips.json

Kokoro speaks through the product's own ONNX TTS pipeline (the packaged Kokoro-82M int8 from
PyPI and its Japanese voices, the only ones offline) with `lang` choosing misaki's espeak G2P;
espeak-ng (Debian) speaks a wider set of languages: robotic, but real phonemes. The texts and
voices are constants, so a set is the same every run and a cache of it (`cached_clips`) stays
valid until they change. Uses: the fp32/int8 decision of the Whisper export (scripts/export/
whisper.py, scripts/speech_parity.py), scripts/bench_quality.py and the real-weight tests.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backend.audio.decode import resample
from backend.audio.features import SAMPLE_RATE_HZ

# Kokoro language (product's `lang`) -> (whisper code, sentences).
KOKORO_TEXTS: dict[str, tuple[str, list[str]]] = {
    "es": ("es", ["El tren de la mañana sale a las siete y media desde la estación central.",
                  "Mi abuela prepara una sopa de verduras deliciosa todos los domingos.",
                  "¿Sabes dónde está la biblioteca municipal? Necesito devolver estos libros.",
                  "Durante el verano, las playas del norte se llenan de turistas y familias.",
                  "La reunión de mañana se ha cancelado porque el director está enfermo."]),
    "fr": ("fr", ["Le train du matin part à sept heures et demie de la gare centrale.",
                  "Ma grand-mère prépare une délicieuse soupe de légumes tous les dimanches.",
                  "Savez-vous où se trouve la bibliothèque municipale ? Je dois rendre ces livres.",
                  "Pendant l'été, les plages du nord se remplissent de touristes et de familles.",
                  "La réunion de demain est annulée parce que le directeur est malade."]),
    "it": ("it", ["Il treno del mattino parte alle sette e mezza dalla stazione centrale.",
                  "Mia nonna prepara una deliziosa zuppa di verdure ogni domenica.",
                  "Sai dove si trova la biblioteca comunale? Devo restituire questi libri.",
                  "Durante l'estate, le spiagge del nord si riempiono di turisti e famiglie.",
                  "La riunione di domani è stata annullata perché il direttore è malato."]),
    "hi": ("hi", ["सुबह की ट्रेन केंद्रीय स्टेशन से साढ़े सात बजे निकलती है।",
                  "मेरी दादी हर रविवार को स्वादिष्ट सब्ज़ियों का सूप बनाती हैं।",
                  "क्या आप जानते हैं कि नगर पुस्तकालय कहाँ है? मुझे ये किताबें लौटानी हैं।",
                  "गर्मियों में उत्तर के समुद्र तट पर्यटकों और परिवारों से भर जाते हैं।",
                  "कल की बैठक रद्द कर दी गई है क्योंकि निदेशक बीमार हैं।"]),
    "pt": ("pt", ["O trem da manhã sai às sete e meia da estação central.",
                  "A minha avó prepara uma sopa de legumes deliciosa todos os domingos.",
                  "Você sabe onde fica a biblioteca municipal? Preciso devolver estes livros.",
                  "Durante o verão, as praias do norte ficam cheias de turistas e famílias.",
                  "A reunião de amanhã foi cancelada porque o diretor está doente."]),
    "en": ("en", ["The morning train leaves the central station at half past seven.",
                  "My grandmother makes a delicious vegetable soup every Sunday.",
                  "Do you know where the public library is? I need to return these books.",
                  "During the summer, the northern beaches fill up with tourists and families.",
                  "Tomorrow's meeting has been cancelled because the director is ill."]),
}
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")

# espeak-ng voice -> (whisper code, two sentences). Japanese as kana, Chinese as pinyin (this build reads no hanzi).
ESPEAK_TEXTS: dict[str, tuple[str, list[str]]] = {
    "en-us": ("en", KOKORO_TEXTS["en"][1][:2]), "es": ("es", KOKORO_TEXTS["es"][1][:2]),
    "fr-fr": ("fr", KOKORO_TEXTS["fr"][1][:2]), "it": ("it", KOKORO_TEXTS["it"][1][:2]),
    "pt-br": ("pt", KOKORO_TEXTS["pt"][1][:2]), "hi": ("hi", KOKORO_TEXTS["hi"][1][:2]),
    "de": ("de", ["Der Zug am Morgen fährt um halb acht vom Hauptbahnhof ab.",
                  "Meine Großmutter kocht jeden Sonntag eine leckere Gemüsesuppe."]),
    "nl": ("nl", ["De ochtendtrein vertrekt om half acht van het centraal station.",
                  "Mijn grootmoeder maakt elke zondag een heerlijke groentesoep."]),
    "sv": ("sv", ["Morgontåget går från centralstationen halv åtta.",
                  "Min mormor lagar en god grönsakssoppa varje söndag."]),
    "pl": ("pl", ["Poranny pociąg odjeżdża z dworca centralnego o wpół do ósmej.",
                  "Moja babcia co niedzielę gotuje pyszną zupę jarzynową."]),
    "ru": ("ru", ["Утренний поезд отправляется с центрального вокзала в половине восьмого.",
                  "Моя бабушка каждое воскресенье готовит вкусный овощной суп."]),
    "tr": ("tr", ["Sabah treni merkez istasyondan yedi buçukta kalkıyor.",
                  "Büyükannem her pazar çok lezzetli bir sebze çorbası yapar."]),
    "fi": ("fi", ["Aamujuna lähtee keskusasemalta puoli kahdeksalta.",
                  "Isoäitini keittää joka sunnuntai herkullista kasviskeittoa."]),
    "hu": ("hu", ["A reggeli vonat fél nyolckor indul a központi pályaudvarról.",
                  "A nagymamám minden vasárnap finom zöldséglevest főz."]),
    "cs": ("cs", ["Ranní vlak odjíždí z hlavního nádraží v půl osmé.",
                  "Moje babička každou neděli vaří výbornou zeleninovou polévku."]),
    "el": ("el", ["Το πρωινό τρένο φεύγει από τον κεντρικό σταθμό στις επτάμισι.",
                  "Η γιαγιά μου φτιάχνει κάθε Κυριακή μια νόστιμη σούπα λαχανικών."]),
    "ro": ("ro", ["Trenul de dimineață pleacă din gara centrală la șapte și jumătate.",
                  "Bunica mea face în fiecare duminică o supă de legume delicioasă."]),
    "id": ("id", ["Kereta pagi berangkat dari stasiun pusat pukul setengah delapan.",
                  "Nenek saya memasak sup sayur yang lezat setiap hari Minggu."]),
    "vi": ("vi", ["Chuyến tàu buổi sáng rời ga trung tâm lúc bảy giờ rưỡi.",
                  "Bà tôi nấu một nồi canh rau rất ngon vào mỗi chủ nhật."]),
    "ja": ("ja", ["あさの でんしゃは ちゅうおうえきを しちじはんに でます。",
                  "わたしの そぼは まいしゅう にちようびに おいしい やさいの スープを つくります。"]),
    "cmn-latn-pinyin": ("zh", ["zao3 shang4 de5 huo3 che1 qi1 dian3 ban4 cong2 zhong1 yang1 che1 zhan4 chu1 fa1.",
                               "wo3 de5 nai3 nai5 mei3 ge4 xing1 qi1 tian1 dou1 zuo4 hao3 he1 de5 shu1 cai4 tang1."]),
}



@dataclass(frozen=True)
class Clip:
    id: str
    engine: str  # kokoro | espeak
    language: str  # the whisper code the speech is in
    voice: str
    text: str


Clips = list[tuple[Clip, np.ndarray]]  # each with its float32 16 kHz mono audio


def kokoro_plan(languages: tuple[str, ...] | None = None, per_language: int = 5) -> list[Clip]:
    """The Kokoro clips: the first `per_language` sentences of each language, voices in rotation."""
    return [Clip(f"kokoro-{lang}-{index}", "kokoro", code, KOKORO_VOICES[index % len(KOKORO_VOICES)], text)
            for lang, (code, sentences) in KOKORO_TEXTS.items() if languages is None or lang in languages
            for index, text in enumerate(sentences[:per_language])]


def espeak_plan(voices: tuple[str, ...] | None = None, sentences: int = 2) -> list[Clip]:
    """The espeak-ng clips: the first `sentences` of each voice (all voices of ESPEAK_TEXTS unless named)."""
    return [Clip(f"espeak-{voice}-{index}", "espeak", ESPEAK_TEXTS[voice][0], voice, text)
            for voice in voices or tuple(ESPEAK_TEXTS) for index, text in enumerate(ESPEAK_TEXTS[voice][1][:sentences])]


def kokoro_speaker(model_dir: Path | None = None) -> Callable[[Clip], np.ndarray]:
    """A function speaking one Kokoro clip (16 kHz) with the product's ONNX TTS on the packaged model."""
    from backend.api.schemas.tts import validate_request
    from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline
    from config import build_settings

    settings = build_settings(backend="onnx")
    # The packaged Kokoro (its Japanese voices), never an export: the clips are the same on every machine.
    model_dir = model_dir or settings.model_dir
    settings = build_settings(backend="onnx", model_dir=model_dir, onnx_dir=model_dir / "speech-clips-no-export")
    pipeline = KokoroOnnxPipeline(settings)
    pipeline.load()

    def speak(clip: Clip) -> np.ndarray:
        request = validate_request(settings, text=clip.text, voice=clip.voice, fmt="wav", lang=clip.id.split("-")[1])
        blocks = list(pipeline.run(pipeline.preprocess(request)).blocks)
        return resample(np.concatenate(blocks), pipeline.sample_rate)

    return speak


def espeak_speak(clip: Clip) -> np.ndarray:
    """One espeak-ng clip at 16 kHz."""
    import soundfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.wav"
        subprocess.run(["espeak-ng", "-v", clip.voice, "-w", str(path), clip.text], check=True, capture_output=True)
        audio, rate = soundfile.read(path, dtype="float32")
    return resample(audio, rate)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def plan_key(plan: list[Clip]) -> str:
    return hashlib.sha256(json.dumps([asdict(clip) for clip in plan], ensure_ascii=False).encode()).hexdigest()[:16]


def cached_clips(folder: Path, plan: list[Clip], speak: Callable[[], Callable[[Clip], np.ndarray]]) -> Clips:
    """The plan's clips from folder when it holds exactly them, else spoken now (`speak()` builds the
    speaker only then) and written there; folder is one plan's cache."""
    import soundfile

    index = folder / "clips.json"
    try:
        cached = json.loads(index.read_text(encoding="utf-8"))
        if cached.get("key") == plan_key(plan) and all((folder / f"{c.id}.wav").is_file() for c in plan):
            return [(clip, soundfile.read(folder / f"{clip.id}.wav", dtype="float32")[0]) for clip in plan]
    except (OSError, ValueError, AttributeError):
        pass
    speaker = speak()
    clips = [(clip, speaker(clip)) for clip in plan]
    folder.mkdir(parents=True, exist_ok=True)
    for clip, audio in clips:
        soundfile.write(folder / f"{clip.id}.wav", audio, SAMPLE_RATE_HZ, subtype="FLOAT")
    seconds = {clip.id: round(audio.size / SAMPLE_RATE_HZ, 3) for clip, audio in clips}
    index.write_text(json.dumps({"key": plan_key(plan), "clips": [asdict(c) for c in plan], "seconds": seconds},
                                indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return clips


def kokoro_clips(cache: Path, languages: tuple[str, ...] | None = None, per_language: int = 5) -> Clips:
    return cached_clips(cache, kokoro_plan(languages, per_language), kokoro_speaker)


def espeak_clips(cache: Path, voices: tuple[str, ...] | None = None, sentences: int = 2) -> Clips:
    return cached_clips(cache, espeak_plan(voices, sentences), lambda: espeak_speak)


def parity_sets(cache: Path | None = None) -> tuple[Clips, Clips]:
    """(decision set, guard set) of the Whisper export's fp32/int8 decision: every Kokoro clip (30), and
    every espeak-ng clip (42) when espeak-ng is installed (else none: the guard is skipped, and says so).

    Cached in MODEL_DIR/speech-clips: Kokoro takes minutes to speak them, a second export reads them back.
    """
    from config import load_settings

    cache = cache or load_settings().model_dir / "speech-clips"
    guard = espeak_clips(cache / "espeak") if espeak_available() else []
    return kokoro_clips(cache / "kokoro"), guard


def main(argv: list[str] | None = None) -> int:
    from config import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=load_settings().model_dir / "speech-clips")
    args = parser.parse_args(argv)
    clips = kokoro_clips(args.out / "kokoro") + espeak_clips(args.out / "espeak")
    by_engine: dict[str, float] = {}
    for clip, audio in clips:
        by_engine[clip.engine] = by_engine.get(clip.engine, 0.0) + audio.size / SAMPLE_RATE_HZ
    print(f"{len(clips)} clips in {args.out}: " + ", ".join(f"{k} {v:.0f} s" for k, v in by_engine.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
