#!/usr/bin/env bash
# Install (once) and start the server: Gunicorn with gunicorn_config.py, settings from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "${SETUP_PROFILE:-full}"
exec .venv/bin/gunicorn -c gunicorn_config.py backend.wsgi:app
