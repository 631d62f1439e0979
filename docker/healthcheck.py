"""Container HEALTHCHECK, by role (set by docker/entrypoint.sh):

- serve: the model server answers GET /ping with 200;
- worker: the Prefect API the worker polls answers GET /health;
- repro or a one-off command: healthy while it runs (a batch job has no endpoint).
"""

from __future__ import annotations

import os
import sys
import urllib.request


def ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return response.status == 200
    except OSError:
        return False


def role() -> str:
    """The entry point's role: from the environment, else from the file the entry point wrote
    (a health check runs in its own process, with the container's environment, not the entry
    point's)."""
    if os.environ.get("IMDB_MLOPS_ROLE"):
        return os.environ["IMDB_MLOPS_ROLE"]
    try:
        with open(os.environ.get("IMDB_MLOPS_ROLE_FILE", "/tmp/imdb-mlops-role")) as file:
            return file.read().strip()
    except OSError:
        return ""


def main() -> int:
    role_now = role()
    if role_now == "serve":
        return 0 if ok(f"http://127.0.0.1:{os.environ.get('SERVE_PORT', '5001')}/ping") else 1
    if role_now == "worker":
        api = os.environ.get("PREFECT_API_URL", "").rstrip("/")
        return 0 if api and ok(f"{api}/health") else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
