"""Admission control in front of the model server's ``/invocations`` (an ASGI middleware).

A worker computes at most ``max_in_flight`` predictions at once and lets at most ``max_queue``
more wait for a slot. A request beyond that is answered at once with HTTP 503 and ``Retry-After``,
so clients back off instead of piling up into timeouts; one that waited ``max_queue_wait_s``, or
``max_queue_wait_predictions`` times the worker's typical prediction (the median of its recent
ones), gets the same: an answered request never waits much longer than its own prediction takes.
A waiting request whose client hangs up is dropped without being computed. Request bodies over
``max_body_bytes`` are refused with 413 before they are read whole.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import deque
from typing import Any

from imdb_mlops.config import ServingConfig

Scope = dict[str, Any]


class AdmissionControl:
    def __init__(self, app: Any, limits: ServingConfig, paths: tuple[str, ...] = ("/invocations",)) -> None:
        self.app, self.limits, self.paths = app, limits, paths
        self.in_flight = 0
        self.waiting = 0
        self.counts = {"admitted": 0, "rejected_busy": 0, "rejected_waited": 0, "dropped_gone": 0, "too_large": 0}
        self._slots: asyncio.Semaphore | None = None
        self.recent_s: deque[float] = deque(maxlen=64)  # seconds of the latest admitted requests

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.max_in_flight)
        body = await self._read_body(scope, receive)
        if body is None:
            self.counts["dropped_gone"] += 1
            return
        if body is TOO_LARGE:
            self.counts["too_large"] += 1
            limit = self.limits.max_body_bytes
            await respond(send, 413, f"request body over {limit:,} bytes (serving.max_body_bytes)", "REQUEST_TOO_LARGE")
            return
        if self.in_flight >= self.limits.max_in_flight and self.waiting >= self.limits.max_queue:
            self.counts["rejected_busy"] += 1
            await self._busy(send, "server busy: every slot taken and the queue full; retry later")
            return
        limit_s = self.wait_limit_s()
        admitted = await self._wait_for_slot(receive, limit_s)
        if admitted is None:
            self.counts["dropped_gone"] += 1
            return  # the client hung up while waiting: nothing computed, nobody to answer
        if not admitted:
            self.counts["rejected_waited"] += 1
            await self._busy(send, f"server busy: no slot within {limit_s:.3g} s; retry later")
            return
        self.in_flight += 1
        self.counts["admitted"] += 1
        slot_held, began = True, time.monotonic()

        def release() -> None:
            nonlocal slot_held
            if slot_held:
                slot_held = False
                self.in_flight -= 1
                self._slots.release()
                self.recent_s.append(time.monotonic() - began)

        async def send_and_free(message: dict[str, Any]) -> None:
            # free the slot as the last of the answer goes out, not once the app has unwound: its
            # client may send its next request before then, and without a queue it would get a 503
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                release()
            await send(message)

        try:
            await self.app(scope, replay_body(body, receive), send_and_free)
        finally:
            release()

    async def _read_body(self, scope: Scope, receive: Any) -> bytes | None:
        """The whole body; ``TOO_LARGE`` when it is over the limit (by its header or as it arrives);
        None when the client hung up."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            return TOO_LARGE
        return await receive_body(receive, self.limits.max_body_bytes)

    async def _wait_for_slot(self, receive: Any, limit_s: float) -> bool | None:
        """True once a slot is held; False when none came in time; None when the client left."""
        assert self._slots is not None
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        self.waiting += 1
        acquire = asyncio.ensure_future(self._slots.acquire())
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            done, _ = await asyncio.wait({acquire, gone}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting -= 1
            gone.cancel()
        if acquire in done:
            if gone in done and gone.result():
                self._slots.release()
                return None
            return True
        acquire.cancel()
        with_slot = acquire.done() and not acquire.cancelled()
        if with_slot:  # acquired in the instant it was given up
            self._slots.release()
        return None if gone in done else False

    def wait_limit_s(self) -> float:
        """How long a request may wait for a slot: ``max_queue_wait_s``, or less once this worker has
        a typical prediction time (after 5 predictions)."""
        limit, times = self.limits.max_queue_wait_s, self.limits.max_queue_wait_predictions
        if times is None or len(self.recent_s) < 5:
            return limit
        return min(limit, times * statistics.median(self.recent_s))

    async def _busy(self, send: Any, message: str) -> None:
        await respond(send, 503, message, "SERVER_BUSY", [(b"retry-after", str(self.limits.retry_after_s).encode())])


TOO_LARGE = b"\0too large"  # what receive_body returns past its limit (never a real body: compared by identity)


async def receive_body(receive: Any, limit: int | None = None) -> bytes | None:
    """The whole request body; ``TOO_LARGE`` once it passes ``limit`` bytes; None when the client hung up."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _disconnected(receive: Any) -> bool:
    """Waits until the client hangs up (the body was read already: nothing else can arrive)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return True


def replay_body(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives ``body`` (already read) once, then what the client sends next."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def respond(
    send: Any, status: int, message: str, error_code: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON error answer in the scoring server's own shape (``error_code``, ``message``)."""
    body = json.dumps({"error_code": error_code, "message": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
