"""`python -m backend.provision voices`: the provisioning commands, without the server.

    voices       the 54 Kokoro voices (npm kokoro-js) into ONNX_DIR/kokoro; a no-op once there
    background   the slow conversions (backend/provision/runner.py), under the file lock, writing progress;
                 --setup full first installs the rest of that profile (serve.sh on a fresh clone)
    status       what the progress file says, as JSON

Exit code: 0 in place (or nothing to do), 1 not provisioned (the line says why), 2 bad settings.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from config import ConfigError, build_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.provision", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("voices", "background", "status"))
    parser.add_argument("--force", action="store_true", help="voices: fetch and write them again even when in place")
    parser.add_argument("--setup", metavar="PROFILE", choices=("full", "dev"),
                        help="background: first install this profile (scripts/setup.sh), under the same lock")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = build_settings()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "voices":
        from backend.provision.voices import provision_voices

        outcome = provision_voices(settings, force=args.force)
        print(outcome.line, flush=True)
        return 0 if outcome.ok else 1
    if args.command == "background":
        from backend.provision.runner import run_background

        return run_background(settings, setup_profile=args.setup)
    from backend.provision.progress import read_all

    print(json.dumps(read_all(settings), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
