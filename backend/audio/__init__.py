"""Audio in and out, pure functions: decode.py (any upload -> mono float32 at 16 kHz) and
encode.py (float32 samples -> wav, flac, mp3, opus, aac, pcm bytes)."""
