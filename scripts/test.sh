#!/usr/bin/env bash
# Install (once) and run the whole default test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
exec .venv/bin/python -m pytest -m "not slow" -q -p no:cacheprovider "$@" tests
