"""Admission control (imdb_mlops.serving.admission) in a real uvicorn server on loopback, in front
of a slow app that records what it computes."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import uvicorn

from imdb_mlops.config import ServingConfig
from imdb_mlops.serving.admission import AdmissionControl
from servers import wait_until


class SlowApp:
    """Answers each request after ``seconds``; records bodies computed and the peak concurrency.
    ``linger``: seconds it still runs after its answer is sent (as middleware unwinding does)."""

    def __init__(self, seconds: float, linger: float = 0.0) -> None:
        self.seconds, self.linger, self.computed, self.running, self.peak = seconds, linger, [], 0, 0

    async def __call__(self, scope, receive, send):
        body = (await receive()).get("body", b"")
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.computed.append(body.decode())
        await asyncio.sleep(float(body[6:]) if body.startswith(b"sleep=") else self.seconds)
        self.running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok " + body})
        await asyncio.sleep(self.linger)


@pytest.fixture
def server(request):
    """(base URL, slow app, middleware) for ServingConfig(**request.param) in front of a 1 s app."""
    app = SlowApp(request.param.pop("app_seconds", 1.0), request.param.pop("linger", 0.0))
    middleware = AdmissionControl(app, ServingConfig(**request.param))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(middleware, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    wait_until(lambda: instance.started or not thread.is_alive(), 30, "uvicorn started", every_s=0.02)
    assert instance.started, f"uvicorn did not start on port {port}"
    yield f"http://127.0.0.1:{port}", app, middleware
    instance.should_exit = True
    thread.join(timeout=10)


def post(url: str, body: str) -> tuple[requests.Response, float]:
    answer = requests.post(f"{url}/invocations", data=body, timeout=30)
    return answer, time.monotonic()


@pytest.mark.parametrize("server", [{"max_in_flight": 1, "max_queue": 1}], indirect=True)
def test_beyond_the_slot_and_the_queue_requests_get_503_with_retry_after_before_any_is_computed(server):
    url, app, middleware = server
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: post(url, f"r{i}"), range(6)))
    ok = [(a, t) for a, t in answers if a.status_code == 200]
    busy = [(a, t) for a, t in answers if a.status_code == 503]
    assert len(ok) == 2 and len(busy) == 4
    assert all(a.headers["Retry-After"] == "1" and "server busy" in a.json()["message"] for a, _ in busy)
    assert max(t for _, t in busy) < min(t for _, t in ok)  # refused at once, not after waiting
    assert app.peak == 1 and len(app.computed) == 2
    assert middleware.counts["rejected_busy"] == 4 and middleware.counts["admitted"] == 2


# "kept" is computed for 3 s: time enough, on a busy machine, for "gone" to be queued behind it
@pytest.mark.parametrize("server", [{"max_in_flight": 1, "max_queue": 2, "app_seconds": 3.0}], indirect=True)
def test_a_waiting_request_whose_client_hangs_up_is_not_computed(server):
    url, app, middleware = server
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, url, "kept")
        wait_until(lambda: app.computed, 30, "the first request computed", every_s=0.01)
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as gone:  # waits behind "kept", then hangs up
            gone.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\ngone")
            wait_until(lambda: middleware.waiting > 0, 3, "the second request queued", every_s=0.01)
        assert first.result()[0].status_code == 200
    after = requests.post(f"{url}/invocations", data="after", timeout=30)
    assert after.status_code == 200
    assert app.computed == ["kept", "after"] and middleware.counts["dropped_gone"] == 1


@pytest.mark.parametrize("server", [{"max_queue": 1, "max_queue_wait_s": 0.2, "app_seconds": 2.0}], indirect=True)
def test_a_request_that_waits_too_long_gets_503(server):
    url, app, _ = server
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda i: post(url, f"r{i}")[0], range(2)))
    assert sorted(a.status_code for a in answers) == [200, 503]
    waited = next(a for a in answers if a.status_code == 503)
    assert "no slot within 0.2 s" in waited.json()["message"] and waited.headers["Retry-After"] == "1"
    assert len(app.computed) == 1


@pytest.mark.parametrize("server", [{"max_body_bytes": 1024, "app_seconds": 0.0}], indirect=True)
def test_oversized_bodies_get_413_whether_declared_or_streamed(server):
    url, app, _ = server
    declared = requests.post(f"{url}/invocations", data="x" * 2000, timeout=30)
    assert declared.status_code == 413 and "serving.max_body_bytes" in declared.json()["message"]
    streamed = requests.post(f"{url}/invocations", data=iter([b"x" * 600, b"x" * 600]), timeout=30)  # chunked
    assert streamed.status_code == 413
    assert requests.post(f"{url}/invocations", data="x" * 1000, timeout=30).status_code == 200
    assert requests.get(f"{url}/ping", timeout=30).status_code == 200  # other paths pass through
    assert app.computed == ["x" * 1000, ""]


@pytest.mark.parametrize("server", [{"max_queue": 0, "app_seconds": 0.0, "linger": 0.05}], indirect=True)
def test_a_client_sending_one_request_after_another_is_never_refused_even_without_a_queue(server):
    """The slot is free once the answer is on its way, not when the app has finished unwinding."""
    url, app, middleware = server
    session = requests.Session()
    codes = [session.post(f"{url}/invocations", data=f"r{i}", timeout=30).status_code for i in range(20)]
    assert codes == [200] * 20 and middleware.counts["rejected_busy"] == 0 and len(app.computed) == 20


@pytest.mark.parametrize(
    "server", [{"max_queue": 1, "max_queue_wait_predictions": 1.0, "app_seconds": 0.1}], indirect=True
)
def test_a_request_waiting_longer_than_a_typical_prediction_gets_503_at_once(server):
    """Behind an unusually long prediction (1 s against a typical 0.1 s), a waiting request is
    refused after about one typical prediction, not kept waiting for the slot."""
    url, app, middleware = server
    for i in range(5):  # the worker learns its typical prediction time
        assert post(url, f"r{i}")[0].status_code == 200
    assert 0.09 <= middleware.wait_limit_s() < 0.3
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(post, url, "sleep=1.0")
        wait_until(lambda: len(app.computed) >= 6, 30, "the long prediction started", every_s=0.01)
        sent = time.monotonic()
        waiting, answered = post(url, "behind")
        assert waiting.status_code == 503 and answered - sent < 0.6
        assert "no slot within 0.1" in waiting.json()["message"] and waiting.headers["Retry-After"] == "1"
        assert long.result()[0].status_code == 200
    assert "behind" not in app.computed and middleware.counts["rejected_waited"] == 1
