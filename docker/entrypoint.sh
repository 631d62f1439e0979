#!/usr/bin/env bash
# Container entry point: `repro` (dvc repro), `worker` (Prefect worker), `serve` (registered model
# over HTTP), or any command (`imdb-mlops ...`, `dvc ...`, `bash`).
set -euo pipefail

role=${1:-repro}
# The health check runs as a separate process with the container's environment, not this one's:
# it reads the role from this file (docker/healthcheck.py).
role_file="${IMDB_MLOPS_ROLE_FILE:-/tmp/imdb-mlops-role}"
case "$role" in repro | worker | serve) printf '%s\n' "$role" >"$role_file" 2>/dev/null || true ;; esac
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
