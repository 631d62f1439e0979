"""Worker processes that die with the command that started them.

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

PR_SET_PDEATHSIG = 1
_registered = False


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
