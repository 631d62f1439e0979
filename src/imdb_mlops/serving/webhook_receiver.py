"""The registry webhook receiver: a small HTTP server MLflow's tracking server posts registry
events to (``imdb-mlops webhooks serve``).

``POST /mlflow-webhook`` verifies the signature and age of each delivery
(:func:`~imdb_mlops.registry.webhooks.verify_delivery`) and hands it to
:class:`~imdb_mlops.registry.champion_events.ChampionEvents`; every delivery gets one log line.
Answers: 200 for a handled, ignored or repeated delivery (MLflow stops retrying), 400 for a body
that is not an MLflow event, 401 for an unsigned, wrongly signed or replayed one. ``GET /health``
answers 200. A thread retries the Prefect event of a move recorded while the Prefect API was down.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from imdb_mlops.registry.champion_events import ChampionEvents
from imdb_mlops.registry.webhooks import DeliveryRejected, is_loopback, verify_delivery
from imdb_mlops.serving.admission import TOO_LARGE, receive_body

log = logging.getLogger("imdb_mlops.webhooks")
WEBHOOK_PATH = "/mlflow-webhook"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
MAX_BODY_BYTES = 64 * 1024  # an MLflow registry event is a few hundred bytes


def create_app(events: ChampionEvents, secret: str, retry_every_s: float = 15.0) -> Any:
    stop = threading.Event()

    def retry_loop() -> None:
        while not stop.wait(retry_every_s):
            try:
                events.retry_pending()
            except Exception as exc:  # keep retrying; say why once per attempt
                log.warning("retrying pending Prefect events failed: %s", exc)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        thread = threading.Thread(target=retry_loop, name="prefect-event-retry", daemon=True)
        thread.start()
        yield
        stop.set()

    app = FastAPI(title="imdb-mlops registry webhook receiver", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": events.model}

    @app.post(WEBHOOK_PATH)
    async def receive(request: Request) -> Any:
        body = await _bounded_body(request)
        if body is None:
            log.warning("rejected (413): body over %d bytes", MAX_BODY_BYTES)
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES:,} bytes"}, status_code=413)
        try:
            delivery = verify_delivery(request.headers, body, secret)
            outcome = await run_in_threadpool(events.handle, delivery)
        except DeliveryRejected as exc:
            log.warning("rejected (%d): %s", exc.status, exc.reason)
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        prefect = f"; Prefect event {outcome.prefect}" if outcome.prefect else ""
        log.info("%s %s: %s%s", delivery.delivery_id[:8], outcome.status, outcome.detail, prefect)
        return {"status": outcome.status, "detail": outcome.detail, "prefect_event": outcome.prefect}

    return app


async def _bounded_body(request: Request) -> bytes | None:
    """The request body, or None once it passes MAX_BODY_BYTES (by its header or as it arrives)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = await receive_body(request.receive, MAX_BODY_BYTES)
    return None if body is TOO_LARGE else body or b""


def warn_if_exposed(host: str, what: str) -> None:
    """A log line when ``host`` is not a loopback address: ``what`` is reachable from the network."""
    if not is_loopback(f"http://{host}"):
        log.warning(
            "listening on %s: %s is reachable from other machines (use the default 127.0.0.1 unless that is meant)",
            host,
            what,
        )


def warn_unreachable_webhooks(client: Any, host: str, port: int) -> None:
    """A log line for each webhook on the server that points at this port on a non-loopback host
    while the receiver listens on loopback only."""
    from urllib.parse import urlparse

    if not is_loopback(f"http://{host}"):
        return
    with contextlib.suppress(Exception):  # a store without webhooks: nothing to check
        for hook in client.list_webhooks(max_results=100):
            parsed = urlparse(hook.url)
            if parsed.path == WEBHOOK_PATH and (parsed.port or 80) == port and not is_loopback(hook.url):
                log.warning(
                    "webhook '%s' posts to %s, but this receiver listens on %s only: those deliveries "
                    "cannot arrive (start it with --host 0.0.0.0, or register a loopback URL)",
                    hook.name,
                    hook.url,
                    host,
                )


def serve_receiver(events: ChampionEvents, secret: str, host: str, port: int) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "prefect.events.clients", "EventsWorker"):
        logging.getLogger(noisy).setLevel(logging.WARNING if noisy == "httpx" else logging.ERROR)
    warn_if_exposed(host, "the receiver of registry events (deliveries are checked by signature)")
    warn_unreachable_webhooks(events.client, host, port)
    log.info(
        "receiving MLflow registry events for %s at http://%s:%d%s (tracking %s)",
        events.model,
        host,
        port,
        WEBHOOK_PATH,
        events.client.tracking_uri,
    )
    uvicorn.run(create_app(events, secret), host=host, port=port, log_level="warning")
