"""Log lines escape control characters: a request path cannot forge a line."""
from __future__ import annotations

import logging

from backend.logs import LOG_FORMAT, EscapingFormatter, escape_controls


def test_control_characters_are_escaped():
    assert escape_controls("/x\nFORGED\r\x1b[31m\u2028") == "/x\\nFORGED\\r\\x1b[31m\\u2028"
    assert escape_controls("plain /api/tts café") == "plain /api/tts café"


def test_a_forged_request_line_stays_on_one_line(make_app, caplog):
    client = make_app().test_client()
    with caplog.at_level(logging.INFO, logger="backend.requests"):
        client.get("/x%0aFORGED%0d%0a2026-01-01 INFO fake: line").close()  # logged when the response closes
    records = [r for r in caplog.records if r.name == "backend.requests"]
    formatted = EscapingFormatter(LOG_FORMAT).format(records[0])
    assert "\n" not in formatted and "\r" not in formatted
    assert "path=/x\\nFORGED\\r\\n2026-01-01 INFO fake: line" in formatted
