"""Request shapes, one module per area: what a valid request is, checked before the registry is asked for anything.

    tts.py       /v1/audio/speech and /api/tts bodies -> SpeechRequest
    analysis.py  the analysis options, base64 audio, and the /api/voice-detection contract body

Each function takes what the blueprint read from HTTP (a JSON object, query and form fields)
and returns the typed request a pipeline takes, or raises a 4xx ApiError naming the field.
What needs the model (does the voice exist, is the language one it knows) is the pipeline's
preprocess. These are the functions pydantic models will replace, with the OpenAPI document.
"""
