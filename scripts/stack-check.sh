#!/usr/bin/env bash
# The team stack of compose.yaml exercised end to end, then torn down (docs/stack.md):
#  1. builds the images (SKIP_BUILD=1: use the ones there), brings the stack up, every service healthy;
#  2. runs the smoke pipeline in a container against it (registry on the server, artifacts in its volume);
#  3. kills the MLflow server container mid-way through a second run and starts it again: no
#     registered version lost (PostgreSQL volume), the pipeline's next run succeeds;
#  4. scores a batch, promotes through MLflow's REST API, finds the move in `registry history`
#     with source ui/rest and the re-scoring flow run Completed in the worker;
#  5. asks the model server for a prediction, and the stock `mlflow models serve` in the image (as its
#     non-root user) for /ping and a prediction; tears everything down, volumes included.
# Runs in a scratch clone of this checkout (HEAD), offline when no hub is reachable (../shared/imdb).
#   scripts/stack-check.sh            # here: LOCAL_BASE=1 TORCH_WHEELS_DIR=/opt/wheels scripts/stack-check.sh
set -euo pipefail

cd "$(dirname "$0")/.."
root="$PWD"
scratch="$(mktemp -d /tmp/imdb-mlops-stack.XXXXXX)"
export IMDB_MLOPS_WORKTREE="$scratch/worktree" STACK_ENV_FILE="$scratch/stack.env"
export MLFLOW_PORT="${MLFLOW_PORT:-15000}" PREFECT_PORT="${PREFECT_PORT:-14200}" SERVE_PORT_HOST="${SERVE_PORT_HOST:-15001}"
stack=(scripts/stack.sh)
offline=()
if [ -d "${IMDB_DATA:-../shared/imdb}" ]; then
  export IMDB_DATA="$(cd "${IMDB_DATA:-../shared/imdb}" && pwd)"
  stack+=(--offline)
  offline=(--offline)
fi
started=$SECONDS
step() { printf '\nstack-check [%4d s] %s\n' "$((SECONDS - started))" "$*" >&2; }
fail() {
  printf 'stack-check: FAILED: %s\n' "$*" >&2
  exit 1
}
cleanup() {
  local rc=$?
  step "tearing down"
  "${stack[@]}" down --volumes >/dev/null 2>&1 || true
  rm -rf "$scratch"
  left="$(scripts/stack.sh running | tr '\n' ' ')"
  [ -z "$left" ] || {
    echo "stack-check: containers left running: $left" >&2
    rc=1
  }
  printf 'stack-check: %s in %d s\n' "$([ "$rc" = 0 ] && echo passed || echo FAILED)" "$((SECONDS - started))" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rest() { # METHOD PATH [JSON]: MLflow's REST API on the host's loopback
  curl -fsS -X "$1" "http://127.0.0.1:$MLFLOW_PORT/api/2.0/mlflow/$2" -H 'Content-Type: application/json' ${3:+-d "$3"}
}
versions() { rest GET "model-versions/search?filter=name%3D%27imdb-sentiment%27" | python3 -c \
  'import json,sys; print(" ".join(sorted(v["version"] for v in json.load(sys.stdin).get("model_versions", []))))'; }
champion() { rest GET "registered-models/alias?name=imdb-sentiment&alias=champion" | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["model_version"]["version"])'; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  step "building the images"
  "${stack[@]}" build
fi
[ "${LOCAL_BASE:-0}" = 1 ] && export POSTGRES_IMAGE="${POSTGRES_IMAGE:-localhost/postgres:15-bookworm}"

step "scratch checkout (git clone of HEAD) at $IMDB_MLOPS_WORKTREE"
git clone -q "$root" "$IMDB_MLOPS_WORKTREE"
git -C "$IMDB_MLOPS_WORKTREE" config user.email stack-check@localhost
git -C "$IMDB_MLOPS_WORKTREE" config user.name stack-check
[ "$(id -u)" = 0 ] && chown -R 1000:1000 "$IMDB_MLOPS_WORKTREE" # the image's user

step "stack up"
"${stack[@]}" up

step "smoke pipeline in a container (run 1)"
"${stack[@]}" run imdb-mlops exp-run "${offline[@]}" --profile smoke || fail "smoke pipeline (run 1)"
[ "$(versions)" = 1 ] || fail "expected version 1 registered, have: $(versions)"

step "run 2 with the MLflow server container killed mid-way"
log="$scratch/run2.log"
"${stack[@]}" run imdb-mlops exp-run "${offline[@]}" --profile smoke -S train.learning_rate=3e-5 >"$log" 2>&1 &
run2=$!
for _ in $(seq 600); do
  grep -q "Running stage 'train'" "$log" && break
  kill -0 "$run2" 2>/dev/null || break
  sleep 1
done
grep -q "Running stage 'train'" "$log" || fail "run 2 never reached the train stage: $(tail -5 "$log")"
sleep 10
"${stack[@]}" kill mlflow
step "MLflow killed; starting it again"
"${stack[@]}" restart mlflow
[ "$(versions)" = 1 ] || fail "after the restart the registry holds: $(versions)"
if wait "$run2"; then echo "stack-check: run 2 rode out the restart" >&2; else echo "stack-check: run 2 failed with the server gone, as it may" >&2; fi
step "run 3: the pipeline's next run"
"${stack[@]}" run imdb-mlops exp-run "${offline[@]}" --profile smoke -S train.learning_rate=3e-5 || fail "run 3"
[ "$(versions)" = "1 2" ] || fail "expected versions 1 2, have: $(versions)"

step "a scoring batch for the re-scoring flow"
"${stack[@]}" run bash -c 'mkdir -p incoming && python -c "
import pandas as pd, glob
files = sorted(glob.glob(\"/shared/imdb/plain_text/test-*.parquet\")) or sorted(glob.glob(\"data/raw/test*\"))
pd.read_parquet(files[0]).sample(200, random_state=0)[[\"text\"]].to_parquet(\"incoming/batch.parquet\")
" && imdb-mlops score incoming/batch.parquet --out scores/stack-check' || fail "scoring"

before="$(champion)"
target=$([ "$before" = 1 ] && echo 2 || echo 1)
step "promotion through the REST API: champion $before -> $target"
rest POST registered-models/alias "{\"name\": \"imdb-sentiment\", \"alias\": \"champion\", \"version\": \"$target\"}" >/dev/null
for _ in $(seq 120); do
  history="$("${stack[@]}" run imdb-mlops registry history 2>/dev/null || true)"
  grep -q "ui/rest" <<<"$history" && break
  sleep 5
done
grep "ui/rest" <<<"$history" || fail "no ui/rest move in registry history: $history"

step "the re-scoring flow run in the worker"
state=""
for _ in $(seq 120); do
  state="$(curl -fsS -X POST "http://127.0.0.1:$PREFECT_PORT/api/flow_runs/filter" -H 'Content-Type: application/json' \
    -d '{"deployments": {"name": {"any_": ["rescore-on-champion"]}}, "sort": "START_TIME_DESC", "limit": 1}' |
    python3 -c 'import json,sys; runs = json.load(sys.stdin); print(runs[0]["state"]["type"] if runs else "")')"
  case "$state" in COMPLETED | FAILED | CRASHED | CANCELLED) break ;; esac
  sleep 5
done
[ "$state" = COMPLETED ] || fail "re-scoring flow run: ${state:-never started}"
echo "stack-check: rescore-on-champion flow run COMPLETED" >&2

step "the model server answers with the new champion"
"${stack[@]}" up >/dev/null
prediction="$(curl -fsS "http://127.0.0.1:$SERVE_PORT_HOST/invocations" -H 'Content-Type: application/json' \
  -d '{"inputs": ["A wonderful, moving film with superb acting."]}')" || fail "no prediction from the model server"
echo "stack-check: prediction $prediction" >&2

step "stock \`mlflow models serve\` of @champion in the image, as its non-root user"
"${stack[@]}" run bash -c '
  set -e
  [ "$(id -u)" != 0 ]
  mlflow models serve -m models:/imdb-sentiment@champion --env-manager local -h 127.0.0.1 -p 5002 >/tmp/serve.log 2>&1 &
  python - <<"PY"
import json, time, urllib.request
deadline = time.monotonic() + 180
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:5002/ping", timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("mlflow models serve: no /ping within 180 s:\n" + open("/tmp/serve.log").read()[-2000:])
        time.sleep(2)
request = urllib.request.Request("http://127.0.0.1:5002/invocations", method="POST",
    data=json.dumps({"inputs": ["Dull, slow and badly acted."]}).encode(), headers={"Content-Type": "application/json"})
print("stack-check: mlflow models serve /ping ok, prediction", urllib.request.urlopen(request, timeout=60).read().decode())
PY' || fail "mlflow models serve in the image"
