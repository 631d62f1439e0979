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


def main() -> int:
    role = os.environ.get("IMDB_MLOPS_ROLE", "")
    if role == "serve":
        return 0 if ok(f"http://127.0.0.1:{os.environ.get('SERVE_PORT', '5001')}/ping") else 1
    if role == "worker":
        api = os.environ.get("PREFECT_API_URL", "").rstrip("/")
        return 0 if api and ok(f"{api}/health") else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
