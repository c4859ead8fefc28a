"""Settings: defaults, parsing, and one-line errors for bad values."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from config import ConfigError, Settings, build_settings
from tests.conftest import ROOT


def test_defaults_are_the_512_mb_deployment():
    s = build_settings()
    assert (s.workers, s.preload, s.port, s.memory_budget_mb) == (1, False, 8080, 512)
    assert s.backend == "onnx" and all(s.backend_for(name) == "onnx" for name in ("tts", "language", "ai_voice"))
    assert s.state_root == s.model_dir / "state"
    assert s.voice_aliases["alloy"] == "af_alloy" and len(s.voice_aliases) == 11  # OpenAI's eleven voices


def test_lists_are_comma_separated():
    s = build_settings(enabled_models="tts, language", preload_models="tts", api_keys="k1,k2")
    assert s.enabled_models == ["tts", "language"] and s.preload_models == ["tts"] and s.api_keys == ["k1", "k2"]


def test_a_per_model_switch_turns_a_pipeline_off():
    s = build_settings(enable_language_detection="false")
    assert not s.model_enabled("language") and s.model_enabled("tts")


def test_backend_can_be_overridden_per_pipeline():
    s = build_settings(backend="onnx", tts_backend="torch")
    assert s.backend_for("tts") == "torch" and s.backend_for("language") == "onnx"


def test_every_field_is_documented():
    assert all(field.description for field in Settings.model_fields.values())


@pytest.mark.parametrize("env, variable, accepted", [
    ({"WORKERS": "abc"}, "WORKERS", "1..32"),
    ({"WORKERS": "0"}, "WORKERS", "1..32"),
    ({"MEMORY_BUDGET_MB": "-5"}, "MEMORY_BUDGET_MB", "64..1048576"),
    ({"MODEL_TTL_S": "-2"}, "MODEL_TTL_S", "-1..604800"),
    ({"PRELOAD_MODELS": "tts,whisper-large"}, "PRELOAD_MODELS", "tts, language, ai_voice"),
    ({"VOICE_ALIASES": "alloy=af_alloy,nova"}, "VOICE_ALIASES", "name=voice pairs"),
])
def test_a_bad_value_stops_start_with_one_clear_line(env, variable, accepted):
    with pytest.raises(ConfigError):
        build_settings(**{k.lower(): v for k, v in env.items()})
    for command in ([sys.executable, "-c", "from backend.wsgi import app"],
                    [sys.executable, "-m", "gunicorn", "--check-config", "-c", "gunicorn_config.py", "backend.wsgi:app"]):
        result = subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith(f"config error: {variable}=") and accepted in lines[0]


def test_readme_documents_every_variable():
    from scripts import config_table

    assert config_table.readme_table() == "\n".join(config_table.rows()), \
        "README's configuration table is stale: run python scripts/config_table.py --write"
