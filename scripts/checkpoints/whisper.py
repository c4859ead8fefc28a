"""Random-weight Whisper checkpoints in the published folder format, built with the real classes.

`build_whisper_checkpoint(folder, shape="tiny" | "real")` writes config.json,
model.safetensors, generation_config.json (with the multilingual `lang_to_id` map, task tokens
and decoder start token of openai/whisper-tiny) and preprocessor_config.json
(WhisperFeatureExtractor). "real" has openai/whisper-tiny's config (37.8 M parameters);
"tiny" keeps the real vocabulary and token layout (so language token ids are the published
ones) but shrinks widths and depths to ~1.7 M parameters.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

# openai/whisper-tiny's special tokens.
END_OF_TEXT_ID = 50257
START_OF_TRANSCRIPT_ID = 50258
FIRST_LANGUAGE_ID = 50259
N_LANGUAGES = 99  # whisper-tiny predates "yue" (large-v3's 100th language)
TRANSLATE_ID = 50358
TRANSCRIBE_ID = 50359
NO_TIMESTAMPS_ID = 50363

REAL_CONFIG: dict = {
    "vocab_size": 51865, "num_mel_bins": 80, "d_model": 384, "encoder_layers": 4, "decoder_layers": 4,
    "encoder_attention_heads": 6, "decoder_attention_heads": 6, "encoder_ffn_dim": 1536, "decoder_ffn_dim": 1536,
    "max_source_positions": 1500, "max_target_positions": 448, "bos_token_id": END_OF_TEXT_ID,
    "eos_token_id": END_OF_TEXT_ID, "pad_token_id": END_OF_TEXT_ID, "decoder_start_token_id": START_OF_TRANSCRIPT_ID,
}
TINY_OVERRIDES: dict = {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
                        "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64}


def whisper_languages(n: int = N_LANGUAGES) -> list[str]:
    """Whisper's language codes in token order (en, zh, de, es, ...)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return list(LANGUAGES)[:n]


def lang_to_id(n: int = N_LANGUAGES) -> dict[str, int]:
    """{"<|en|>": 50259, ...} as in the published generation_config.json."""
    return {f"<|{code}|>": FIRST_LANGUAGE_ID + i for i, code in enumerate(whisper_languages(n))}


def build_whisper_checkpoint(folder: Path | str, *, shape: Literal["tiny", "real"] = "tiny", seed: int = 0,
                             language_bias: dict[str, float] | None = None) -> Path:
    """Write a random Whisper (model, generation and preprocessor configs) into folder; returns folder.

    language_bias adds a constant to a language token's output-embedding row direction so a test
    can make one language win whatever the audio: {"de": 5.0}.
    """
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    if shape not in ("tiny", "real"):
        raise ValueError(f"shape must be 'tiny' or 'real', got {shape!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(REAL_CONFIG, **(TINY_OVERRIDES if shape == "tiny" else {}))
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(WhisperConfig(**config)).eval()
    if language_bias:
        # The final layer norm's bias is the only constant in the step's hidden state: align a
        # language's (tied) embedding row with it so that language's logit grows by `bias`.
        with torch.no_grad():
            norm_bias = model.model.decoder.layer_norm.bias
            norm_bias.copy_(torch.randn_like(norm_bias))
            direction = norm_bias / norm_bias.norm().pow(2)
            for code, bias in language_bias.items():
                row = FIRST_LANGUAGE_ID + whisper_languages().index(code)
                model.model.decoder.embed_tokens.weight[row] += bias * direction
    model.generation_config = GenerationConfig(
        decoder_start_token_id=START_OF_TRANSCRIPT_ID, bos_token_id=END_OF_TEXT_ID, eos_token_id=END_OF_TEXT_ID,
        pad_token_id=END_OF_TEXT_ID, is_multilingual=True, lang_to_id=lang_to_id(),
        task_to_id={"translate": TRANSLATE_ID, "transcribe": TRANSCRIBE_ID}, no_timestamps_token_id=NO_TIMESTAMPS_ID,
        max_length=448)
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=config["num_mel_bins"]).save_pretrained(folder)
    return folder
