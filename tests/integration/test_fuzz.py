"""schemathesis against a live Gunicorn, from its own /openapi.json: no 5xx but a documented 503, every answer as documented.

The server runs the real Kokoro ONNX (packaged) and tiny random Whisper / AST checkpoints (torch
backend), with an admin key so load/unload are fuzzed too. The run is bounded: a fixed seed, a
few examples per operation and a time budget (FUZZ_MAX_TIME_S). Checks: not_a_server_error
(503 allowed: tests/integration/schemathesis.toml), status_code_conformance,
content_type_conformance and response_schema_conformance.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
pytest.importorskip("torch")  # the tiny checkpoints run on the torch backend
FUZZ_MAX_TIME_S = 80
ADMIN_KEY = "fuzz-admin-key"
# One schemathesis worker: with two, hypothesis parses lambda sources with `ast` in both threads and
# CPython 3.11 can fail that ("AST constructor recursion depth mismatch"): an error of the tool, not the server.
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(live_server, whisper_checkpoint, ast_checkpoint,
                                                                       tmp_path):
    schemathesis = Path(sys.executable).parent / "schemathesis"
    if not schemathesis.exists() and shutil.which("schemathesis") is None:
        pytest.fail("schemathesis is not installed: scripts/setup.sh dev installs requirements-dev.txt")
    server = live_server({"LANGUAGE_BACKEND": "torch", "WHISPER_MODEL": str(whisper_checkpoint),
                          "AI_VOICE_BACKEND": "torch", "AI_VOICE_MODEL": str(ast_checkpoint),
                          "MEMORY_BUDGET_MB": "8192", "MAX_TEXT_CHARS": "200", "MAX_UPLOAD_MB": "2",
                          "ADMIN_API_KEYS": ADMIN_KEY, "INFERENCE_THREADS": "1"})
    result = subprocess.run(
        [str(schemathesis), "--config-file", str(ROOT / "tests/integration/schemathesis.toml"), "--no-color",
         "run", f"{server.url}/openapi.json", "--checks", CHECKS, "-H", f"x-api-key: {ADMIN_KEY}",
         "--phases", "coverage,fuzzing", "--max-examples", "5", "--seed", "12", "--workers", "1",
         "--request-timeout", "60", "--max-time", str(FUZZ_MAX_TIME_S), "--suppress-health-check", "all",
         "--report", "junit", "--report-dir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=FUZZ_MAX_TIME_S + 120)  # its cache stays out of the checkout
    failures = result.stdout.partition("WARNINGS ===")[0]
    assert result.returncode == 0, _shortened(failures)[-8000:] + result.stdout[-1500:] + result.stderr[-2000:]
    assert "Traceback" not in server.output(), server.output()[-4000:]


def _shortened(text: str) -> str:
    """Failure reports with their generated megabyte-long queries cut to something readable."""
    return "\n".join(line if len(line) < 400 else line[:400] + " ..." for line in text.splitlines())
