"""Text to speech over HTTP: OpenAI-compatible /v1/audio/speech, /api/tts and the voice lists."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("tts", __name__)
