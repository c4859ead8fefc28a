"""`python -m backend.provision voices`: the provisioning commands, without the server.

    voices       the 54 Kokoro voices (npm kokoro-js) into ONNX_DIR/kokoro; a no-op once there

Exit code: 0 in place (or nothing to do), 1 not provisioned (the line says why), 2 bad settings.
"""
from __future__ import annotations

import argparse
import logging
import sys

from config import ConfigError, build_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.provision", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("voices",))
    parser.add_argument("--force", action="store_true", help="voices: fetch and write them again even when in place")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = build_settings()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    from backend.provision.voices import provision_voices

    outcome = provision_voices(settings, force=args.force)
    print(outcome.line, flush=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
