#!/usr/bin/env bash
# Release check: build the lean image and run it on Render's real shapes. Not in the default test
# suite (a cold build takes ~15 minutes, the shapes ~15 more); run it whenever the Dockerfile,
# the requirements or provisioning change, and before a release:
#
#   scripts/release_check.sh            build + the shapes at 0.1 and 0.5 CPU (three clients for 240 s)
#   CLIENTS_S=0 scripts/release_check.sh    without the three-client run
#   PORT_BASE=18100 NAME_PREFIX=me scripts/release_check.sh   Redis and the containers on ports from
#                                       18100, containers named me-...; IMAGE_TAG names the image
#
# It needs podman (scripts/build_image.sh installs it with buildah), redis-server on the host and a
# Python with requests and PyYAML: the checkout's .venv (scripts/setup.sh dev) or, in a fresh clone,
# the system's python3; redis-server is installed from Debian packages when missing.
#
# It fails (exit 1) when the image is over 700 MB, /ready never answers 200, a container is
# OOM-killed, a stop takes 30 s or more (Render's SIGKILL), the first English speech comes later
# than 40 s at 0.1 CPU or 8 s at 0.5 CPU after `podman run`, or one of the three clients was refused.
# Reports: reports/release/<time>/ (shapes.jsonl, table.md, the containers' logs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/reports/release/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
python=$root/.venv/bin/python
[ -x "$python" ] || python=$(command -v python3)
"$python" -c 'import requests, yaml' 2>/dev/null \
  || { echo "release_check: $python lacks requests or PyYAML: run scripts/setup.sh dev" >&2; exit 2; }
command -v redis-server >/dev/null \
  || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
image=$("$root/scripts/build_image.sh" lean | tail -n1)
"$python" "$root/scripts/bench_shapes.py" --image "$image" --cpus 0.1,0.5 \
  --clients-s "${CLIENTS_S:-240}" --port-base "${PORT_BASE:-0}" --name-prefix "${NAME_PREFIX:-release-check}" \
  --keep-logs "$out" | tee "$out/shapes.out"
grep '^{' "$out/shapes.out" >"$out/shapes.jsonl"
grep '^|' "$out/shapes.out" >"$out/table.md"
"$python" - "$out/shapes.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
failures = []
for r in rows:
    shape = f"{r['cpus']} CPU"
    goal_s = 40 if r["cpus"] <= 0.1 else 8
    if r["image_mb"] > 700: failures.append(f"image {r['image_mb']} MB > 700")
    if r.get("ready_s") is None: failures.append(f"{shape}: /ready never 200")
    if r.get("oom_kills"): failures.append(f"{shape}: {r['oom_kills']} OOM kill(s)")
    if r.get("sigterm_to_exit_s", 99) >= 30: failures.append(f"{shape}: stop took {r.get('sigterm_to_exit_s')} s")
    if r.get("first_speech_status") != 200 or r.get("first_speech_s", 1e9) > goal_s:
        failures.append(f"{shape}: first speech {r.get('first_speech_status')} after {r.get('first_speech_s')} s (goal {goal_s})")
    if (r.get("clients") or {}).get("refused"): failures.append(f"{shape}: {r['clients']['refused']} client request(s) refused")
print("\n".join(f"FAIL {f}" for f in failures) or "release check: every goal met")
sys.exit(1 if failures else 0)
EOF
