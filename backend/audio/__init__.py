"""Audio in and out, pure functions.

    decode.py    any upload's bytes -> mono float32 at 16 kHz (by content, bounded memory)
    encode.py    float32 samples -> wav, flac, mp3, opus, aac (ADTS, through PyAV) or pcm bytes,
                 whole or streamed
    features.py  Whisper log-mel and AST filterbank in numpy, equal to transformers' extractors
"""
