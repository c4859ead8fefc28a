"""Voice analysis over HTTP: language, AI-voice, both at once, and the /api/voice-detection contract."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("analysis", __name__)
