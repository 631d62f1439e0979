"""Predictions at a lower CPU priority than the rest of a serving worker.

A worker's event loop accepts connections, refuses with 503 when every slot is taken, times out waiting
requests and answers the supervisor's health check. When it shares busy cores with the worker's own
prediction threads (and another worker's), the scheduler may let it wait one time slice or more, and a
refusal meant to be immediate goes out tens of milliseconds late. With the threads that compute
predictions niced (``serving.prediction_nice``), the event loop gets a core the moment it wakes, and
predictions still use every core that is otherwise idle. Linux only (elsewhere thread priorities are
left as they are): there, ``setpriority`` on a thread id sets that one thread's nice value.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def lower_this_thread(nice: int) -> bool:
    """Add ``nice`` to the calling thread's nice value (never raised back: an unprivileged process
    cannot); True when it was applied."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:
        return False
    return True


def in_lowered_thread(nice: int, work: Callable[[], T]) -> T:
    """``work()`` run in a new thread lowered by ``nice``; threads it starts (a runtime's compute
    pool) inherit the lowered priority. Its exception is raised here."""
    with ThreadPoolExecutor(
        1, thread_name_prefix="load-model", initializer=lower_this_thread, initargs=(nice,)
    ) as pool:
        return pool.submit(work).result()


def lowered_calls(nice: int, function: Callable[..., T]) -> Callable[..., T]:
    """``function`` whose calling thread is lowered by ``nice`` on its first call from that thread."""
    lowered = threading.local()

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        if not getattr(lowered, "done", False):
            lowered.done = True
            lower_this_thread(nice)
        return function(*args, **kwargs)

    return wrapper
