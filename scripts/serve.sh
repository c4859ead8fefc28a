#!/usr/bin/env bash
# Install (once) and start the server: Gunicorn with gunicorn_config.py, settings from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "${SETUP_PROFILE:-full}"
# Models: fetch and export what is missing when the Hugging Face hub answers (probed for at most
# 2 s); offline it says, one line per model, what is missing and the server starts with what is
# installed (speech always: the packaged Kokoro int8 ONNX). GET /ready then says the same.
.venv/bin/python scripts/fetch_models.py || echo "serve: starting with the models at hand (GET /ready says what each needs)" >&2
exec .venv/bin/gunicorn -c gunicorn_config.py backend.wsgi:app
