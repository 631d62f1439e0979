"""Prediction threads at a lower priority than a serving worker's event loop (Linux thread nice values)."""

from __future__ import annotations

import inspect
import os
import sys
import threading

import pytest

from imdb_mlops.serving.priority import in_lowered_thread, lower_this_thread, lowered_calls

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread nice values are Linux's")


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def in_new_thread(work):
    """``work()`` in a fresh thread (a lowered thread cannot be raised back, so never this one)."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=work()))
    thread.start()
    thread.join()
    return result["value"]


def test_only_the_calling_thread_is_lowered():
    main_before = nice_of(threading.get_native_id())

    def work():
        before = nice_of(threading.get_native_id())
        applied = lower_this_thread(3)
        return before, applied, nice_of(threading.get_native_id())

    before, applied, after = in_new_thread(work)
    assert applied and after == min(19, before + 3)
    assert nice_of(threading.get_native_id()) == main_before


def test_zero_changes_nothing():
    def work():
        before = nice_of(threading.get_native_id())
        return lower_this_thread(0), before, nice_of(threading.get_native_id())

    applied, before, after = in_new_thread(work)
    assert not applied and after == before


def test_threads_started_by_the_lowered_work_inherit_its_priority():
    base = nice_of(threading.get_native_id())

    def load():  # like a runtime starting its compute pool while the model loads
        seen = {}
        pool = threading.Thread(target=lambda: seen.update(pool=nice_of(threading.get_native_id())))
        pool.start()
        pool.join()
        return seen["pool"]

    assert in_lowered_thread(4, load) == min(19, base + 4)
    assert nice_of(threading.get_native_id()) == base  # the caller is left as it was


def test_an_error_of_the_lowered_work_is_raised_to_the_caller():
    def broken():
        raise ValueError("no such model")

    with pytest.raises(ValueError, match="no such model"):
        in_lowered_thread(2, broken)


def test_lowered_calls_lower_each_calling_thread_once_and_keep_the_signature():
    def predict(data, params=None):
        return nice_of(threading.get_native_id())

    wrapped = lowered_calls(2, predict)
    assert "params" in inspect.signature(wrapped).parameters  # MLflow's app passes params only if declared

    def twice():
        base = nice_of(threading.get_native_id())
        return base, wrapped(["a"]), wrapped(["b"], params={})

    base, first, second = in_new_thread(twice)
    assert first == second == min(19, base + 2)  # lowered on the first call, not again on the second
