"""The animation worker's image end to end: a job sent to the lean web container runs on the worker container.

    .venv/bin/python scripts/bench_worker_image.py --web-image localhost/speech-api:lean \
        --worker-image localhost/speech-api:full

What render.yaml deploys, under podman on this machine:
- Redis: a redis-server on the host's loopback (--redis-port), standing in for the Key Value instance;
- the web service: the lean image, render.yaml's web envVars (JOBS_BACKEND=rq), 512 MB with swap off
  and --web-cpus (free: 0.1);
- the Background Worker: the full image, render.yaml's worker envVars and its dockerCommand,
  --worker-memory with swap off and --worker-cpus (standard: 2 GB, 1 CPU), the SadTalker
  checkpoints mounted read-only where SADTALKER_CHECKPOINT_DIR points (render.yaml: the disk).
No real SadTalker weights exist offline here: the checkpoints are random weights in the official
format, file names and shapes (scripts/checkpoints/sadtalker.py, as the tests build them; 256 px
renderer and both mapping files, ~730 MB, written once into --checkpoints). The render costs what
a real one costs; the video shows noise, not a talking face.

A portrait (astronaut.png from scikit-image's wheel, as in the tests) and --audio-s seconds of
speech-like audio go to POST /api/animate on the web container; the job is followed through the
web container's status URL until it ends (--timeout-s), and its MP4 is downloaded through the web
container and decoded (frames, codecs, size). Measured: image sizes, the worker's start (to its
"animation: servable" line), the job's stages and times, the worker container's CPU-seconds, peak
memory and OOM kills, SIGTERM to exit. Prints one JSON line; exit 1 when the job did not end done
with a valid MP4. Containers and Redis are removed by id however the run ends.
"""
from __future__ import annotations

import argparse
import io
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_shapes import Container, image_mb  # noqa: E402 - the shapes bench's cgroup reader
from scripts.checkpoints.sadtalker import MAPPING_FILES, build_sadtalker_checkpoints, speech_like  # noqa: E402

API_KEY = "bench-worker-key"
MAPPINGS = tuple(MAPPING_FILES)
RUN_FLAGS = ["--runtime", "runc", "--network", "host", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


def blueprint_service(kind: str) -> dict:
    """One service of render.yaml by its type (web, worker)."""
    return next(s for s in yaml.safe_load((ROOT / "render.yaml").read_text())["services"] if s["type"] == kind)


def literal_env(service: dict) -> dict[str, str]:
    """A service's envVars with literal values (generated secrets and Redis are set by the run)."""
    return {v["key"]: str(v["value"]) for v in service.get("envVars", []) if "value" in v}


def checkpoints(folder: Path) -> Path:
    """The random-weight checkpoints in the official format, written once (the 256 px file is 725 MB)."""
    from backend.pipelines.animation.checkpoint_files import safetensors_name

    wanted = [folder / safetensors_name(256), *(folder / MAPPING_FILES[m] for m in MAPPINGS)]
    if not all(path.is_file() for path in wanted):
        build_sadtalker_checkpoints(folder, sizes=(256,), mappings=MAPPINGS)
    for path in [folder, *folder.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the image's user (uid 10001) reads them
    return folder


def portrait() -> bytes:
    from scripts.fetch_face_assets import fetch_test_images

    folder = ROOT / ".cache" / "test-images"
    fetch_test_images(folder)
    return (folder / "astronaut.png").read_bytes()


def run(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def start(image: str, env: dict[str, str], flags: list[str], command: list[str] | None = None) -> Container:
    args = ["podman", "run", "-d", *RUN_FLAGS, *flags]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    box = Container(run([*args, image, *(command or [])]))
    while not box.locate():
        time.sleep(0.05)
    return box


def logs(box: Container) -> str:
    out = subprocess.run(["podman", "logs", box.cid], capture_output=True, text=True)
    return out.stdout + out.stderr


def wait_for(predicate, timeout_s: float, step_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return False


def healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/health", timeout=5).ok
    except requests.RequestException:
        return False


def follow(base: str, job: dict, t0: float, timeout_s: float) -> tuple[dict, list[tuple[str, float]]]:
    """Poll the job's status until it ends; the stages seen, each with when it was first seen."""
    stages: list[tuple[str, float]] = []
    status: dict = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = requests.get(base + job["status_url"], timeout=30, headers={"x-api-key": API_KEY}).json()
        stage = status["state"] if status["state"] in ("queued", "done", "failed", "cancelled") else \
            status["progress"]["stage"]
        if not stages or stages[-1][0] != stage:
            stages.append((stage, round(time.monotonic() - t0, 1)))
        if status["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(1)
    return status, stages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web-image", default="localhost/speech-api:lean")
    parser.add_argument("--worker-image", default="localhost/speech-api:full")
    parser.add_argument("--checkpoints", default=str(ROOT / ".cache" / "sadtalker-random"))
    parser.add_argument("--redis-port", type=int, default=18579)
    parser.add_argument("--web-port", type=int, default=18580)
    parser.add_argument("--web-cpus", type=float, default=0.1)
    parser.add_argument("--worker-cpus", type=float, default=1.0)
    parser.add_argument("--worker-memory", default="2g")
    parser.add_argument("--audio-s", type=float, default=0.08, help="seconds of audio: 25 frames a second")
    parser.add_argument("--timeout-s", type=float, default=1800, help="longest wait for the job")
    parser.add_argument("--prefix", default="bench-worker", help="container name prefix")
    args = parser.parse_args()

    folder = checkpoints(Path(args.checkpoints))
    web_service, worker_service = blueprint_service("web"), blueprint_service("worker")
    mount = literal_env(worker_service)["SADTALKER_CHECKPOINT_DIR"]
    redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
    base = f"http://127.0.0.1:{args.web_port}"
    row: dict = {"web_image": args.web_image, "web_image_mb": image_mb(args.web_image),
                 "worker_image": args.worker_image, "worker_image_mb": image_mb(args.worker_image),
                 "web_cpus": args.web_cpus, "worker_cpus": args.worker_cpus, "worker_memory": args.worker_memory,
                 "audio_s": args.audio_s, "checkpoints": "random weights, official format (scripts/checkpoints)"}
    redis = subprocess.Popen(["redis-server", "--port", str(args.redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    boxes: list[Container] = []
    ok = False
    try:
        web = start(args.web_image, {**literal_env(web_service), "PORT": str(args.web_port), "REDIS_URL": redis_url,
                                     "API_KEYS": API_KEY, "ADMIN_API_KEYS": API_KEY + "-admin", "WARM_MODELS": ""},
                    ["--name", f"{args.prefix}-web", "--memory", "512m", "--memory-swap", "512m",
                     "--cpus", str(args.web_cpus)])
        boxes.append(web)
        t0 = time.monotonic()
        worker = start(args.worker_image, {**literal_env(worker_service), "REDIS_URL": redis_url},
                       ["--name", f"{args.prefix}-worker", "--memory", args.worker_memory, "--memory-swap",
                        args.worker_memory, "--cpus", str(args.worker_cpus), "--volume", f"{folder}:{mount}:ro"],
                       shlex.split(worker_service["dockerCommand"]))
        boxes.append(worker)
        if wait_for(lambda: "animation: " in logs(worker), 600):
            row["worker_start_s"], row["worker_start_cpu_s"] = round(time.monotonic() - t0, 1), round(worker.cpu_s(), 2)
        row["worker_says"] = [line for line in logs(worker).splitlines() if "animation: " in line or "cpu: " in line]
        if not wait_for(lambda: healthy(base), 600):
            raise RuntimeError(f"the web container never answered /health:\n{logs(web)[-3000:]}")
        audio = io.BytesIO()
        sf.write(audio, speech_like(args.audio_s), 16_000, format="WAV", subtype="PCM_16")
        t1 = time.monotonic()
        response = requests.post(f"{base}/api/animate", headers={"x-api-key": API_KEY}, timeout=120,
                                 files={"image": ("portrait.png", portrait(), "image/png"),
                                        "audio": ("speech.wav", audio.getvalue(), "audio/wav")},
                                 data={"size": "256", "seed": "1"})
        row["submit_status"] = response.status_code
        if response.status_code != 202:
            raise RuntimeError(f"submit: {response.status_code} {response.text}")
        job = response.json()
        cpu_before = worker.cpu_s()
        status, stages = follow(base, job, t1, args.timeout_s)
        row.update(job_state=status.get("state"), job_s=round(time.monotonic() - t1, 1), stages=stages,
                   job_worker_cpu_s=round(worker.cpu_s() - cpu_before, 1), job_error=status.get("error"),
                   job_facts={k: status.get("facts", {}).get(k) for k in ("peak_mb", "seconds_per_frame", "frames")})
        if status.get("state") == "done":
            video = requests.get(base + job["result_url"], timeout=120, headers={"x-api-key": API_KEY})
            row.update(result_status=video.status_code, result_type=video.headers.get("Content-Type"),
                       result_bytes=len(video.content))
            from backend.pipelines.animation.video import probe

            with tempfile.NamedTemporaryFile(suffix=".mp4") as mp4:
                mp4.write(video.content)
                mp4.flush()
                row["result_probe"] = probe(mp4.name)
            facts = row["result_probe"]
            ok = (video.status_code == 200 and facts["video_codec"] == "h264" and facts["audio_codec"] == "aac"
                  and facts["width"] == 256 and abs(facts["frames"] - round(25 * args.audio_s)) <= 1)
        row.update(worker_peak_mb=round(worker.peak_mb()), worker_oom_kills=worker.oom_kills(),
                   web_peak_mb=round(web.peak_mb()), web_oom_kills=web.oom_kills())
        stop = time.monotonic()
        subprocess.run(["podman", "kill", "--signal", "TERM", worker.cid], capture_output=True)
        subprocess.run(["podman", "wait", worker.cid], capture_output=True, timeout=120)
        row["worker_sigterm_to_exit_s"] = round(time.monotonic() - stop, 1)
        row["worker_exit_code"] = run(["podman", "inspect", "-f", "{{.State.ExitCode}}", worker.cid])
        if not ok:
            row["worker_log_tail"] = logs(worker)[-3000:]
    finally:
        for box in boxes:  # podman may be busy with another build's storage lock: retry, then say so
            for _ in range(3):
                if subprocess.run(["podman", "rm", "-f", box.cid], capture_output=True).returncode == 0:
                    break
                time.sleep(5)
            else:
                print(f"could not remove container {box.cid}: `podman rm -f {box.cid}`", file=sys.stderr)
        redis.terminate()
        redis.wait(timeout=10)
        print(json.dumps(row), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
