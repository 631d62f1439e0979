"""Leave a finished command without the interpreter's teardown.

When a command is done, CPython still tears the interpreter down before the process ends: it clears
every module and collects what they held. With torch, transformers, MLflow and ``evaluate`` imported
that takes 1.5-2.6 s on a 2-core machine, after the last line is printed, in every stage of
``dvc repro`` and every ``imdb-mlops`` call. :func:`exit_without_teardown` ends the process as the
interpreter would (non-daemon threads joined, ``atexit`` handlers run: MLflow's, logging's,
multiprocessing's, Ray's, temporary folders' finalizers; standard streams flushed) and then skips the
teardown with ``os._exit``. Nothing a command writes waits for the teardown: files are closed where
they are written and stage outputs are moved into place before the command returns.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_status(code: object) -> int:
    """The process status ``sys.exit(code)`` gives: None is 0, an int is itself, anything else is
    printed to stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_without_teardown(code: object = 0) -> NoReturn:
    """``sys.exit(code)``, minus the interpreter's teardown (see the module doc). With a non-daemon
    thread still running it is plain ``sys.exit``: the interpreter waits for that thread."""
    main = threading.main_thread()
    if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    status = exit_status(code)
    atexit._run_exitfuncs()  # what the interpreter runs first on its way out
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the reader went away, or the stream is closed
            pass
    os._exit(status)
