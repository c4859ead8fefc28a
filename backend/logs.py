"""Logging set-up: one format, and control characters escaped so a request cannot forge a log line.

A path such as `/x%0aFORGED` reaches the request log decoded (`/x\\nFORGED`); written raw it would
start a line of its own. `EscapingFormatter` escapes every control character of the message
(tracebacks, appended after it, keep their lines).
"""
from __future__ import annotations

import logging
import re

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with each control character (and the Unicode line separators) as a visible escape."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's own name
        return escape_controls(super().formatMessage(record))


def configure(level: str) -> None:
    """Root handler with the escaping format (unless the host configured one), and the app's level."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(EscapingFormatter(LOG_FORMAT))
        root.addHandler(handler)
    logging.getLogger("backend").setLevel(level)
