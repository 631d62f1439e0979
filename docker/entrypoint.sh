#!/usr/bin/env bash
# Container entry point: `repro` (dvc repro), `worker` (Prefect worker), `serve` (registered model
# over HTTP), or any command (`imdb-mlops ...`, `dvc ...`, `bash`).
set -euo pipefail

role=${1:-repro}
case "$role" in
  repro)
    shift || true
    export IMDB_MLOPS_ROLE=repro
    exec dvc repro "$@"
    ;;
  worker)
    shift
    export IMDB_MLOPS_ROLE=worker
    exec prefect worker start "$@"
    ;;
  serve)
    shift
    export IMDB_MLOPS_ROLE=serve
    # Inside a container the server must listen on the container's interface to be reachable at
    # all; publish it on the host's loopback only (docker run -p 127.0.0.1:5001:5001).
    exec imdb-mlops serve --host "${SERVE_HOST:-0.0.0.0}" --port "${SERVE_PORT:-5001}" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
