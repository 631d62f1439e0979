#!/usr/bin/env bash
# The team stack of compose.yaml, one command each (docs/stack.md):
#
#   scripts/stack.sh build            # the project image (and, with no registry, the local bases)
#   scripts/stack.sh up               # secrets (stack.env, made once), services healthy in order,
#                                     # Prefect pool + deployments, MLflow webhook, model server
#   scripts/stack.sh run CMD...       # a one-off command in the project image on the stack's network
#   scripts/stack.sh ps | running | logs [SERVICE] | kill SERVICE | restart SERVICE
#   scripts/stack.sh down [--volumes] # stop everything (--volumes also deletes registry and artifacts)
#
# Options before the command: --offline (mount $IMDB_DATA, default ../shared/imdb, for --offline
# runs; HF_HUB_OFFLINE=1). Engine: docker compose where Docker runs, else podman-compose
# (pip install podman-compose); COMPOSE="..." chooses. No registry (this workplace):
# LOCAL_BASE=1 builds the bases locally (scripts/make-base-image.sh, docker/postgres/Dockerfile)
# and TORCH_WHEELS_DIR=<folder with the CPU torch wheel> takes torch from there.
set -euo pipefail

cd "$(dirname "$0")/.."
files=(-f compose.yaml)
if [ "${1:-}" = --offline ]; then
  shift
  export IMDB_DATA="${IMDB_DATA:-$(cd .. && pwd)/shared/imdb}"
  files+=(-f compose.offline.yaml)
fi
env_file="${STACK_ENV_FILE:-stack.env}"
export IMDB_MLOPS_IMAGE="${IMDB_MLOPS_IMAGE:-localhost/imdb-mlops:cpu}"
engine="${CONTAINER_ENGINE:-$(command -v docker >/dev/null && docker info >/dev/null 2>&1 && echo docker || echo podman)}"
if [ -z "${COMPOSE:-}" ]; then
  if [ "$engine" = docker ]; then
    COMPOSE="docker compose"
  else # scripts/setup.sh installs it into the venv (requirements-stack.txt)
    COMPOSE="$(command -v podman-compose || echo "$PWD/.venv/bin/podman-compose")"
  fi
fi

say() { printf 'stack: %s\n' "$*" >&2; }
compose() { $COMPOSE --env-file "$env_file" "${files[@]}" --profile jobs --profile serving "$@"; }

make_env_file() {
  [ -f "$env_file" ] && return
  umask 077
  python3 - >"$env_file" <<'PY'
import base64, os, secrets
print("# secrets of the stack (scripts/stack.sh made them); never commit this file")
print("POSTGRES_PASSWORD=" + secrets.token_urlsafe(24))
print("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=" + base64.urlsafe_b64encode(os.urandom(32)).decode())
print("IMDB_MLOPS_WEBHOOK_SECRET=" + secrets.token_hex(32))
PY
  say "made $env_file (mode 600)"
}

containers() { # running containers of the stack [of one service], by the labels both compose tools set
  $engine ps -q --filter "label=com.docker.compose.project=imdb-mlops" \
    ${1:+--filter "label=com.docker.compose.service=$1"}
}
container_of() { containers "$1" | head -1; }

healthy() { # podman without systemd runs no health checks by itself: run it once here
  local id
  id="$(container_of "$1")"
  [ -n "$id" ] || return 1
  if [ "$engine" = podman ]; then
    podman healthcheck run "$id" >/dev/null 2>&1
  else
    [ "$(docker inspect --format '{{.State.Health.Status}}' "$id")" = healthy ]
  fi
}

wait_healthy() {
  local service deadline=$((SECONDS + ${STACK_TIMEOUT_S:-300}))
  for service in "$@"; do
    until healthy "$service"; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        say "$service is not healthy after ${STACK_TIMEOUT_S:-300} s; its last lines:"
        compose logs --tail 30 "$service" >&2 || true
        exit 1
      fi
      sleep 2
    done
    say "$service healthy"
  done
}

build() {
  if [ "${LOCAL_BASE:-0}" = 1 ]; then
    scripts/make-base-image.sh localhost/bookworm-python:3.11
    export PYTHON_IMAGE=localhost/bookworm-python:3.11 POSTGRES_IMAGE=localhost/postgres:15-bookworm
    $engine build --network host -f docker/postgres/Dockerfile --build-arg BASE_IMAGE="$PYTHON_IMAGE" \
      -t "$POSTGRES_IMAGE" docker/postgres
  fi
  local args=(--target cpu -t "$IMDB_MLOPS_IMAGE")
  [ "$engine" = podman ] && args+=(--format docker) # OCI images drop HEALTHCHECK
  [ -n "${PYTHON_IMAGE:-}" ] && args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
  if [ -n "${TORCH_WHEELS_DIR:-}" ]; then # podman only: a folder mounted into the build
    args+=(--build-arg TORCH_WHEELS=/wheels -v "$TORCH_WHEELS_DIR:/wheels:ro")
  fi
  say "building $IMDB_MLOPS_IMAGE"
  local started=$SECONDS
  $engine build --network host "${args[@]}" .
  say "built $IMDB_MLOPS_IMAGE in $((SECONDS - started)) s"
}

champion_exists() {
  compose run --rm -T pipeline python -c "
import sys
from mlflow import MlflowClient
from imdb_mlops.config import load_params
name = load_params('params.yaml').registry.model_name
try:
    MlflowClient().get_model_version_by_alias(name, 'champion')
except Exception:
    sys.exit(1)" >/dev/null 2>&1
}

up() {
  make_env_file
  [ "${LOCAL_BASE:-0}" = 1 ] && export POSTGRES_IMAGE="${POSTGRES_IMAGE:-localhost/postgres:15-bookworm}"
  compose up -d postgres
  wait_healthy postgres
  compose up -d mlflow prefect
  wait_healthy mlflow prefect
  compose up -d webhooks worker
  wait_healthy webhooks worker
  say "Prefect pool and deployments, MLflow webhook"
  compose run --rm -T pipeline bash -c '
    prefect work-pool inspect imdb-process >/dev/null 2>&1 || prefect work-pool create imdb-process --type process
    prefect --no-prompt deploy --all >/dev/null
    imdb-mlops webhooks register --url http://webhooks:8765/mlflow-webhook --allow-remote'
  if champion_exists; then
    compose up -d model-server
    wait_healthy model-server
  else
    say "no champion yet: the model server starts with the next \`scripts/stack.sh up\` after a run registers one"
  fi
  say "up: MLflow http://127.0.0.1:${MLFLOW_PORT:-5000}  Prefect http://127.0.0.1:${PREFECT_PORT:-4200}"
}

command="${1:-}"
shift || true
case "$command" in
  build) build ;;
  up) up ;;
  run)
    make_env_file
    compose run --rm -T pipeline "$@"
    ;;
  kill) $engine kill "$(container_of "$1")" >/dev/null ;; # SIGKILL, as a crash would
  restart)
    compose up -d "$1"
    wait_healthy "$1"
    ;;
  ps) compose ps ;;
  running) containers ;; # ids of the stack's running containers, one per line
  logs) compose logs --tail "${TAIL:-100}" "$@" ;;
  down)
    if [ "${1:-}" = --volumes ]; then compose down --volumes; else compose down; fi
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
