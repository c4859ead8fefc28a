"""Prove a configuration fits the memory budget before deploying it.

    .venv/bin/python scripts/budget_check.py WORKERS=2 PRELOAD=true BACKEND=onnx --duration 60
    .venv/bin/python scripts/budget_check.py --matrix scripts/budget/configs.txt --duration 60

Starts the real server (Gunicorn, gunicorn_config.py, the given settings on top of this
environment) inside a memory cgroup limited to the budget with swap off (v2 or v1, whichever this
machine offers; without one it falls back to sampling the process tree's RSS/PSS and says so),
drives a bounded mixed workload on loopback while sampling memory every 100 ms, and writes
report.txt, report.json and report.png (memory over time, budget line, model events) under --out.
The last line is the verdict: `FITS in 512 MB (peak N MB)` or `DOES NOT FIT: ...`.
With --matrix FILE (one configuration a line: `[label |] KEY=VALUE ...`), every configuration is
checked in turn and a markdown table (for docs/BENCHMARKS.md) is printed and saved as matrix.md.

Exit code: 0 every configuration fits, 1 one does not, 2 bad arguments or settings,
3 the check itself failed (server never answered...), 130 interrupted. The server is stopped by
pid and the cgroup removed in every case, SIGINT and SIGTERM included.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

from config import ConfigError, Settings
from scripts.budget import report as reporting
from scripts.budget.check import CheckOptions, run_check
from scripts.budget.workload import PROFILES

ROOT = Path(__file__).resolve().parent.parent

logger = logging.getLogger("budget_check")
ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*=")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                        help="settings of the configuration under test, on top of this environment (WORKERS=2 BACKEND=onnx)")
    parser.add_argument("--budget-mb", type=float, default=None, help="cgroup limit and MEMORY_BUDGET_MB (default: MEMORY_BUDGET_MB, 512)")
    parser.add_argument("--app", default="backend.wsgi:app", help="WSGI app given to Gunicorn (module:callable or module:factory())")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="speech", help="workload mix (default: speech)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default: 4)")
    parser.add_argument("--duration", type=float, default=60.0, help="workload seconds (default: 60)")
    parser.add_argument("--max-requests", type=int, default=5000, help="cap on requests sent (default: 5000)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, s (default: 120)")
    parser.add_argument("--boot-timeout", type=float, default=120.0, help="seconds to wait for /health (default: 120)")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to then wait for /ready (default: 60)")
    parser.add_argument("--max-refused-percent", type=float, default=5.0,
                        help="share of requests that may be refused with 503 memory_budget_exceeded and still fit (default: 5)")
    parser.add_argument("--no-cgroup", action="store_true", help="do not make a cgroup: sample the process tree only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix (default: 0)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: reports/budget/<UTC time>)")
    parser.add_argument("--label", default="", help="name of the configuration in the report")
    parser.add_argument("--matrix", type=Path, default=None, help="file with one configuration a line: [label |] KEY=VALUE ...")
    args = parser.parse_args(argv)
    bad = [item for item in args.settings if not ASSIGNMENT.match(item)]
    if bad:
        parser.error(f"not a KEY=VALUE setting: {bad[0]!r}")
    if args.concurrency < 1 or args.duration <= 0 or args.max_requests < 1:
        parser.error("--concurrency and --max-requests must be >= 1 and --duration > 0")
    return args


def parse_assignments(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def environment_settings() -> dict[str, str]:
    """Settings already in this environment (`make budget-check WORKERS=2`), shown in the report."""
    return {key: value for key, value in os.environ.items() if key.lower() in Settings.model_fields}


def read_matrix(path: Path) -> list[tuple[str, dict[str, str]]]:
    """[(label, settings)] from a file of `[label |] KEY=VALUE ...` lines; '#' starts a comment."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        label, _, assignments = line.rpartition("|")
        items = shlex.split(assignments)
        bad = [item for item in items if not ASSIGNMENT.match(item)]
        if bad:
            raise ValueError(f"{path}:{number}: not a KEY=VALUE setting: {bad[0]!r}")
        rows.append((label.strip() or " ".join(items) or "(defaults)", parse_assignments(items)))
    return rows


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")[:60] or "defaults"


class _Interrupted:
    """SIGINT/SIGTERM raise KeyboardInterrupt once, so cleanup (in finally blocks) runs; later ones wait."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.received:
            print(f"budget check: {signal.Signals(signum).name} again; still cleaning up", file=sys.stderr)
            return
        self.received = True
        raise KeyboardInterrupt(signal.Signals(signum).name)


def check_one(args: argparse.Namespace, label: str, settings: dict[str, str], out_dir: Path) -> dict:
    options = CheckOptions(env=settings, app=args.app, profile=args.profile, budget_mb=args.budget_mb,
                           concurrency=args.concurrency, duration_s=args.duration, max_requests=args.max_requests,
                           request_timeout_s=args.timeout, boot_timeout_s=args.boot_timeout,
                           ready_timeout_s=args.ready_timeout, use_cgroup=not args.no_cgroup,
                           max_refused_percent=args.max_refused_percent, seed=args.seed, out_dir=out_dir, label=label)
    try:
        report = run_check(options)
    except (RuntimeError, TimeoutError, OSError) as exc:
        logger.error("%s: the check failed: %s", label, exc)
        out_dir.mkdir(parents=True, exist_ok=True)
        failed = {"label": label, "error": str(exc), "verdict": f"CHECK FAILED: {exc}"}
        (out_dir / "report.json").write_text(json.dumps(failed, indent=1))
        return failed
    reporting.summarise(report)
    paths = reporting.write(report, out_dir)
    print(reporting.format_table(report))
    print(f"\nreport: {paths['text']}  {paths['json']}  {paths['plot']}  server log: {out_dir / 'server.log'}\n", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    handler = _Interrupted()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    out = args.out or ROOT / "reports" / "budget" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    common = {**environment_settings(), **parse_assignments(args.settings)}
    try:
        if args.matrix:
            configs = read_matrix(args.matrix)
            for _label, settings in configs:  # environment and CLI settings apply to every row; the row's own win
                settings.update({k: v for k, v in common.items() if k not in settings})
        else:
            settings = common
            label = args.label or " ".join(f"{k}={v}" for k, v in settings.items()) or "(defaults)"
            configs = [(label, settings)]
        reports = []
        for index, (label, settings) in enumerate(configs, 1):
            out_dir = out / f"{index:02d}-{slug(label)}" if args.matrix else out
            reports.append(check_one(args, label, settings, out_dir))
    except (ConfigError, ValueError) as exc:
        print(f"budget check: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"budget check: interrupted ({exc or 'SIGINT'}); server stopped, cgroup removed", file=sys.stderr)
        return 130
    if args.matrix:
        table = "\n".join([reporting.MATRIX_HEADER, *(reporting.markdown_row(r) for r in reports)])
        (out / "matrix.md").write_text(table + "\n")
        print(table)
        print(f"\nmatrix: {out / 'matrix.md'}")
    if any("summary" not in r for r in reports):
        return 3
    return 0 if all(not r["summary"]["reasons"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
