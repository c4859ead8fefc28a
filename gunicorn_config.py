"""Gunicorn configuration, sectioned like Gunicorn's examples/example_config.py.

Every value comes from config.Settings (the environment), so `WORKERS=2 PRELOAD=true gunicorn -c
gunicorn_config.py backend.wsgi:app` is the whole interface. A bad value stops Gunicorn with one
line naming the variable.
"""
import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
from functools import partial
from pathlib import Path

from config import load_settings

settings = load_settings()
logger = logging.getLogger("gunicorn.error")

# The CPU quota, read once: every thread pool the workers start (ONNX Runtime, torch, numpy's
# OpenBLAS/OpenMP) is sized to it, not to the host's cores a container sees (backend/cpu_quota.py).
# Set here, in the master, before anything imports numpy: the workers inherit it.
from backend.cpu_quota import inference_threads, limit_thread_pools, start_line  # noqa: E402 - after the settings

limit_thread_pools(inference_threads(settings.inference_threads))

#
# Server socket
#
#   bind - 0.0.0.0:$PORT: Render routes its public port to $PORT.
#   backlog - connections queued while every thread is busy.
#
bind = f"0.0.0.0:{settings.port}"
backlog = 64

#
# Worker processes
#
#   workers - 1 by default: every worker holds its own copy of the models, and on a 512 MB
#       instance a second worker must prove it fits (scripts/budget_check.py).
#   worker_class / threads - gthread: requests share one copy of the models through threads,
#       while model inference releases the GIL.
#   timeout - a silent worker is killed after this many seconds (0 disables); model builds
#       and long syntheses must fit in it.
#   graceful_timeout - time a worker gets to finish its requests on restart or stop; below
#       Render's 30 s between SIGTERM and SIGKILL by default, so a stop is always a clean exit.
#   threads - not sized to the CPU quota: a thread waiting for a model or a slow client uses no
#       CPU, and model runs are bounded by MODEL_CONCURRENCY (config.py THREADS).
#   max_requests / max_requests_jitter - recycle a worker after about this many requests, so a
#       slow leak (allocator fragmentation, caches) can never grow into an OOM kill. Probes
#       (/health, /ready) do not count (pre_request below): they allocate nothing that could
#       leak, and a box that is only polled must not rebuild its models every few minutes.
#   worker_tmp_dir - the heartbeat file lives in RAM (/dev/shm), not on a disk that may stall.
#
workers = settings.workers
worker_class = "gthread"
threads = settings.threads
timeout = settings.timeout
graceful_timeout = settings.graceful_timeout
keepalive = 5
max_requests = settings.max_requests
max_requests_jitter = settings.max_requests_jitter
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

#
# Security: bounds on what a client may send before the app sees it (Gunicorn answers 400/431).
#
#   limit_request_line - longest request line (method, path, query), bytes.
#   limit_request_fields / limit_request_field_size - most headers, longest header, bytes.
#   A client that sends slowly holds one thread while it sends; THREADS leaves room for that,
#   and README "Security" says what a proxy in front must do (buffer whole requests).
#
limit_request_line = 4094
limit_request_fields = 64
limit_request_field_size = 8190

#
# Server mechanics
#
#   preload_app - import the app in the master before forking, so workers share its code
#       pages. Models are never built in the master: torch/OpenMP thread pools do not survive
#       fork (a whisper model run in the master hung its forked workers until WORKER TIMEOUT),
#       so pinned models load in each worker after fork (post_worker_init).
#
preload_app = settings.preload

#
# Logging
#
#   logger_class - Gunicorn's logger whose access lines mask any key/token query value: keys
#       travel in headers only (backend/auth.py), but a client may still put one in a URL.
#
loglevel = settings.log_level.lower()
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


from gunicorn.glogging import Logger  # noqa: E402 - the logging section's own class

from backend.auth import mask_query_secrets  # noqa: E402


class MaskingLogger(Logger):
    """Gunicorn's logger; the request line and query string atoms have secrets masked."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["r"] = mask_query_secrets(atoms["r"])
        atoms["q"] = mask_query_secrets("?" + atoms["q"])[1:]  # the query atom has no "?" of its own
        return atoms


logger_class = MaskingLogger

#
# Control interface
#
#   control_socket_disable - Gunicorn 27's control socket defaults to one path per user
#       (~/.gunicorn/gunicorn.ctl), shared by every Gunicorn on the machine; this service is
#       managed by signals (and Render), so it opens none.
#
control_socket_disable = True

#
# Process naming
#
proc_name = "speech-api"

#
# Metrics: prometheus_client's multiprocess mode needs a folder shared by all workers, named
# in its own environment variable before any worker (or a preloaded app) creates a metric.
# It is this master's own subfolder (backend/memory/multiproc.py): an operator's
# PROMETHEUS_MULTIPROC_DIR is its parent and is never emptied, `--check-config` only makes (and
# removes) its own, and folders left by a hard-killed master are removed here, at the next start.
#
from backend.memory import multiproc  # noqa: E402 - after the settings, and it imports no metric

_master_pid = os.getpid()
_metrics_dir = multiproc.prepare(settings.prometheus_multiproc_dir or Path(tempfile.gettempdir()), _master_pid)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)


@atexit.register
def _remove_metrics_dir():
    if os.getpid() == _master_pid:  # forked workers run atexit too: only the master removes it
        shutil.rmtree(_metrics_dir, ignore_errors=True)


#
# Server hooks
#
def on_starting(server):
    server.log.info(
        "memory budget %d MB (margin %d MB), workers=%d threads=%d preload=%s backend=%s ttl=%ss pinned=%s",
        settings.memory_budget_mb, settings.memory_margin_mb, settings.workers, settings.threads,
        settings.preload, settings.backend, settings.model_ttl_s, ",".join(settings.preload_models) or "none")
    server.log.info(start_line(settings.inference_threads))


def is_probe(path: str) -> bool:
    """A health or readiness probe: /health, /ready, /ready/<model>."""
    return path in ("/health", "/ready") or path.startswith("/ready/")


def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)  # Gunicorn's default hook
    # Gunicorn counts a request toward max_requests (worker.nr += 1) right after this hook, in
    # every worker class (gthread's handle_request: pre_request, then nr += 1, then the check):
    # a probe gives its count back first, so it can neither count nor trigger the recycle.
    # tests/integration/test_gunicorn.py pins this on the installed Gunicorn.
    if is_probe(req.path):
        worker.nr -= 1


def post_fork(server, worker):
    # Safety net: if anything imported torch in the master, its OpenMP pool did not survive
    # fork. One intra-op thread is the only setting measured to be safe (2 threads still hung).
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
        if settings.inference_threads != 1:
            worker.log.warning("torch was imported before fork: worker %d runs torch on 1 thread", worker.pid)


def post_worker_init(worker):
    from backend.memory.readings import rss_mb
    from backend.jobs import get_jobs
    from backend.registry import get_registry
    from backend.warmup import start_warm_up

    registry = get_registry(worker.wsgi)
    # The budget counts the master and all workers; pinned models load now. When a model cannot
    # be admitted only because this worker holds memory it cannot give back, the registry asks
    # for a replacement with SIGTERM to itself: Gunicorn's graceful exit (the worker stops
    # accepting, finishes its in-flight requests within GRACEFUL_TIMEOUT) and the master forks
    # a fresh worker, as after MAX_REQUESTS.
    registry.start_worker(root_pid=os.getppid(), recycle=partial(os.kill, worker.pid, signal.SIGTERM))
    get_jobs(worker.wsgi).start_worker()  # local jobs: this worker's dispatcher (queued jobs survive restarts)
    start_warm_up(registry, [name for name in settings.warm_models if name not in settings.preload_models])
    worker.log.info("worker %d booted: rss %.1f MB, budget %d MB", worker.pid, rss_mb(), settings.memory_budget_mb)


def worker_exit(server, worker):
    from backend.memory.readings import rss_mb

    server.log.info("worker %d exiting: rss %.1f MB", worker.pid, rss_mb())


def child_exit(server, worker):
    from backend.memory.metrics import mark_process_dead
    from backend.registry.peers import Peers

    mark_process_dead(worker.pid)
    Peers(settings.state_root).forget(worker.pid)  # its reserved head-room went with it


def on_exit(server):
    _remove_metrics_dir()
