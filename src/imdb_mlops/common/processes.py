"""Child processes: the tools they find, and workers that die with the command that started them.

:func:`tools_first_env`: a command runs ``dvc`` (and DVC runs ``imdb-mlops``) from the environment
the command itself runs in, whether or not that environment is activated.

``datasets.map(num_proc=N)`` forks worker processes; when the command is killed (``kill -9``, a
Prefect timeout, an out-of-memory kill) they would live on as orphans holding gigabytes. After
:func:`die_with_parent`, every process this one forks asks Linux to send it SIGKILL when its parent
dies (``prctl(PR_SET_PDEATHSIG)``). Elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

PR_SET_PDEATHSIG = 1
_registered = False


def tools_first_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with the folder of this interpreter's scripts
    (``.venv/bin``: its ``dvc``, ``imdb-mlops``) first on ``PATH``."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def die_with_parent() -> None:
    """From now on, forked children of this process are killed when it dies (Linux)."""
    global _registered
    if _registered or not sys.platform.startswith("linux"):
        return
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def in_child() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    os.register_at_fork(after_in_child=in_child)
    _registered = True
