"""Random-weight Audio Spectrogram Transformer classifiers in the published folder format.

`build_ast_checkpoint(folder, shape="tiny" | "real", labels="asvspoof" | "audioset")` writes
config.json, model.safetensors and preprocessor_config.json (ASTFeatureExtractor) with the
real ASTForAudioClassification class. "real" has the published AST config (86.6 M parameters,
1024 frames = 10.24 s); "tiny" has 32-wide, 1-layer blocks over 256 frames (2.56 s) so window
tests need little audio. labels="asvspoof" is MattyB95/AST-ASVspoof2019-Synthetic-Voice-Detection's
{0: bonafide, 1: spoof} (single-label, softmax); "audioset" is a 527-class multi-label head with
"Speech synthesizer" at its AudioSet index 7 (sigmoid).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

ASVSPOOF_LABELS = {0: "bonafide", 1: "spoof"}
AUDIOSET_FIRST_LABELS = ["Speech", "Male speech, man speaking", "Female speech, woman speaking",
                         "Child speech, kid speaking", "Conversation", "Narration, monologue", "Babbling",
                         "Speech synthesizer", "Shout", "Bellow"]
AUDIOSET_N_LABELS = 527
TINY_MAX_LENGTH = 256
REAL_CONFIG: dict = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                     "num_mel_bins": 128, "max_length": 1024, "frequency_stride": 10, "time_stride": 10}
TINY_OVERRIDES: dict = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                        "max_length": TINY_MAX_LENGTH}


def label_map(labels: Literal["asvspoof", "audioset"]) -> tuple[dict[int, str], str]:
    """id2label and problem_type of a label set."""
    if labels == "asvspoof":
        return dict(ASVSPOOF_LABELS), "single_label_classification"
    if labels == "audioset":
        names = AUDIOSET_FIRST_LABELS + [f"AudioSet class {i}" for i in range(len(AUDIOSET_FIRST_LABELS), AUDIOSET_N_LABELS)]
        return dict(enumerate(names)), "multi_label_classification"
    raise ValueError(f"labels must be 'asvspoof' or 'audioset', got {labels!r}")


def build_ast_checkpoint(folder: Path | str, *, shape: Literal["tiny", "real"] = "tiny",
                         labels: Literal["asvspoof", "audioset"] = "asvspoof", seed: int = 0,
                         synthetic_bias: float = 0.0) -> Path:
    """Write a random AST classifier into folder; returns folder.

    synthetic_bias is added to the classifier bias of the synthetic label (spoof / Speech
    synthesizer) so tests can make the decision go either way.
    """
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    from backend.pipelines.ai_voice.ast_torch import feature_extractor

    if shape not in ("tiny", "real"):
        raise ValueError(f"shape must be 'tiny' or 'real', got {shape!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    id2label, problem_type = label_map(labels)
    config = ASTConfig(**dict(REAL_CONFIG, **(TINY_OVERRIDES if shape == "tiny" else {})), id2label=id2label,
                       label2id={v: k for k, v in id2label.items()}, problem_type=problem_type)
    torch.manual_seed(seed)
    model = ASTForAudioClassification(config).eval()
    if synthetic_bias:
        synthetic = 1 if labels == "asvspoof" else AUDIOSET_FIRST_LABELS.index("Speech synthesizer")
        with torch.no_grad():
            model.classifier.dense.bias[synthetic] += synthetic_bias
    model.save_pretrained(folder)
    feature_extractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length).save_pretrained(folder)
    return folder
