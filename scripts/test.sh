#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"   # stages run `imdb-mlops` and `dvc` from the venv
export DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1 HF_HUB_DISABLE_TELEMETRY=1
exec .venv/bin/python -m pytest "$@"
