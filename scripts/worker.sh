#!/usr/bin/env bash
# Start a jobs worker: RQ's worker on the `animation` queue at REDIS_URL, with this project's
# settings (SADTALKER_CHECKPOINT_DIR, FACE_MODEL_DIR, ANIMATION_BATCH_SIZE, MODEL_DTYPE, ... from the
# environment, as for the web service). Run it on any machine that reaches Redis and has ~1.1 GB
# free per job at 256 px (~1.6 GB at 512); the web service needs JOBS_BACKEND=rq and the same REDIS_URL.
#   REDIS_URL=redis://host:6379/0 SADTALKER_CHECKPOINT_DIR=/data/sadtalker ./scripts/worker.sh
# Extra arguments: --burst (work the queue empty, then exit).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REDIS_URL:?set REDIS_URL to the Redis the web service enqueues on (redis://host:6379/0)}"
scripts/setup.sh full
exec .venv/bin/python -m backend.jobs.worker "$@"
