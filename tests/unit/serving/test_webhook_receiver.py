"""The webhook receiver on a real (SQLite) MLflow registry: signed deliveries recorded once, bad
ones refused with a reason, the Prefect event kept pending while the Prefect API is down."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from helpers import sqlite_registry
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.registry.aliases import promote
from imdb_mlops.registry.champion_events import ChampionEvents
from imdb_mlops.registry.history import history_entries
from imdb_mlops.registry.webhooks import check_webhook_url, signature
from imdb_mlops.serving.webhook_receiver import WEBHOOK_PATH, create_app
from servers import free_port

MODEL = "imdb-sentiment"
SECRET = "s3cret"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("IMDB_MLOPS_LOCK_DIR", str(tmp_path / "locks"))
    client = sqlite_registry(tmp_path, MODEL)
    for number in range(2):
        (tmp_path / f"v{number}").mkdir()
        client.create_model_version(MODEL, source=str(tmp_path / f"v{number}"))
    promote(client, MODEL, "1")
    return client


@pytest.fixture
def prefect_down():
    """PREFECT_API_URL pointing at a port nobody listens on."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        yield


def delivery(event: str, data: dict, secret: str | None = SECRET, delivery_id: str | None = None, age_s: float = 0):
    entity, action = event.rsplit(".", 1)
    body = json.dumps({"entity": entity, "action": action, "timestamp": "2026-12-02T00:00:00Z", "data": data})
    delivery_id = delivery_id or str(uuid.uuid4())
    stamp = str(int(time.time() - age_s))
    headers = {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": stamp, "Content-Type": "application/json"}
    if secret is not None:
        headers["X-MLflow-Signature"] = signature(secret, delivery_id, stamp, body.encode())
    return {"content": body, "headers": headers}


def alias_set(version: str, **kwargs):
    return delivery("model_version_alias.created", {"name": MODEL, "alias": "champion", "version": version}, **kwargs)


def test_a_ui_move_is_recorded_once_and_its_event_kept_pending_while_prefect_is_down(registry, prefect_down, caplog):
    app = TestClient(create_app(ChampionEvents(registry, MODEL), SECRET))
    registry.set_registered_model_alias(MODEL, "champion", "2")  # the move in the UI, then its delivery
    first = alias_set("2", delivery_id="d-1")
    answer = app.post(WEBHOOK_PATH, **first)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "recorded", "detail": "champion 1 -> 2 (ui/rest)", "prefect_event": "pending"}
    again = app.post(WEBHOOK_PATH, **first)  # MLflow retries a delivery it thinks failed
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    entries = history_entries(registry, MODEL)
    assert [(e.source, e.version, e.previous, e.prefect_event) for e in entries] == [
        ("cli", "1", None, None),
        ("ui/rest", "2", "1", "pending"),
    ]
    assert entries[-1].delivery_id == "d-1"
    assert "does not answer" in caplog.text and "kept pending" in caplog.text


def test_a_move_the_cli_recorded_is_not_recorded_again(registry, prefect_down):
    app = TestClient(create_app(ChampionEvents(registry, MODEL), SECRET))
    promote(registry, MODEL, "2")  # the CLI records before it moves the alias
    answer = app.post(WEBHOOK_PATH, **alias_set("2"))
    assert answer.json()["status"] == "already_recorded"
    assert [(e.source, e.version) for e in history_entries(registry, MODEL)] == [("cli", "1"), ("cli", "2")]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "reason"),
    [  # built when the test runs: a delivery signed at collection time could be too old by then
        (lambda: alias_set("2", secret=None), 401, "unsigned delivery"),
        (lambda: alias_set("2", secret="not-the-secret"), 401, "wrong signature"),
        (lambda: alias_set("2", age_s=3600), 401, "replay"),
        (
            lambda: delivery("model_version_alias.created", {"name": MODEL, "alias": "champion"}),
            400,
            "payload lacks version",
        ),
        (lambda: alias_set(None), 400, "payload field version is null"),
        (lambda: alias_set("two"), 400, "version 'two' is not a number"),
        (
            lambda: delivery("model_version_alias.created", {"name": MODEL, "alias": None, "version": "2"}),
            400,
            "payload field alias is null",
        ),
        (lambda: alias_set("99"), 400, f"{MODEL} has no version 99"),
        (lambda: {"content": "[]", "headers": alias_set("2")["headers"]}, 401, "wrong signature"),
    ],
    ids=[
        "unsigned",
        "wrongly-signed",
        "replayed-late",
        "missing-field",
        "null-version",
        "version-not-a-number",
        "null-alias",
        "no-such-version",
        "tampered-body",
    ],
)
def test_bad_deliveries_are_refused_and_record_nothing(registry, request_kwargs, status, reason, caplog):
    app = TestClient(create_app(ChampionEvents(registry, MODEL), SECRET))
    answer = app.post(WEBHOOK_PATH, **request_kwargs())
    assert answer.status_code == status and reason in answer.json()["error"]
    assert f"rejected ({status})" in caplog.text and reason in caplog.text
    assert [e.version for e in history_entries(registry, MODEL)] == ["1"]


def test_events_the_pipeline_does_not_act_on_are_ignored(registry):
    app = TestClient(create_app(ChampionEvents(registry, MODEL), SECRET))
    other = delivery("model_version_alias.created", {"name": "other", "alias": "champion", "version": "1"})
    assert "another registered model 'other'" in app.post(WEBHOOK_PATH, **other).json()["detail"]
    challenger = delivery("model_version_alias.created", {"name": MODEL, "alias": "challenger", "version": "2"})
    assert app.post(WEBHOOK_PATH, **challenger).json()["status"] == "ignored"
    created = delivery("model_version.created", {"name": MODEL, "version": "2", "source": "x", "run_id": "r"})
    assert app.post(WEBHOOK_PATH, **created).json() == {
        "status": "noted", "detail": f"{MODEL} version 2 created", "prefect_event": None}  # fmt: skip
    assert [e.version for e in history_entries(registry, MODEL)] == ["1"]


def test_a_deleted_champion_alias_is_recorded_and_rollback_still_walks_back(registry, prefect_down):
    from imdb_mlops.registry.aliases import rollback

    app = TestClient(create_app(ChampionEvents(registry, MODEL), SECRET))
    registry.set_registered_model_alias(MODEL, "champion", "2")
    app.post(WEBHOOK_PATH, **alias_set("2"))
    registry.delete_registered_model_alias(MODEL, "champion")
    deleted = delivery("model_version_alias.deleted", {"name": MODEL, "alias": "champion"})
    assert app.post(WEBHOOK_PATH, **deleted).json()["status"] == "recorded"
    assert history_entries(registry, MODEL)[-1].action == "deleted"
    registry.set_registered_model_alias(MODEL, "champion", "2")  # put back, as the UI would
    app.post(WEBHOOK_PATH, **alias_set("2"))
    assert rollback(registry, MODEL) == ("2", "1")


def test_a_late_delivery_of_a_superseded_move_records_nothing(registry, prefect_down):
    """1 -> 2 then 2 -> 1 in the UI; the delivery of the first move arrives after the second."""
    app = TestClient(create_app(ChampionEvents(registry, MODEL), SECRET))
    late = alias_set("2")
    registry.set_registered_model_alias(MODEL, "champion", "2")
    registry.set_registered_model_alias(MODEL, "champion", "1")
    answer = app.post(WEBHOOK_PATH, **late)
    assert answer.status_code == 200
    assert answer.json()["status"] == "superseded"
    assert "the registry's champion is 1 now; nothing recorded" in answer.json()["detail"]
    stale_delete = app.post(
        WEBHOOK_PATH, **delivery("model_version_alias.deleted", {"name": MODEL, "alias": "champion"})
    )
    assert stale_delete.json()["status"] == "superseded"
    assert [e.version for e in history_entries(registry, MODEL)] == ["1"]  # as the registry says: champion 1


def test_webhook_urls_beyond_loopback_need_an_explicit_choice():
    check_webhook_url("http://127.0.0.1:8765/mlflow-webhook", allow_remote=False)
    check_webhook_url("http://localhost:8765/mlflow-webhook", allow_remote=False)
    with pytest.raises(PipelineError, match=r"--url: http://10.1.2.3:8765/x is not a loopback address.*--allow-remote"):
        check_webhook_url("http://10.1.2.3:8765/x", allow_remote=False)
    check_webhook_url("http://10.1.2.3:8765/x", allow_remote=True)
    with pytest.raises(PipelineError, match=r"--url: 'ftp://x' is not an http\(s\) URL"):
        check_webhook_url("ftp://x", allow_remote=True)


@pytest.mark.xdist_group(name="flow")
def test_a_pending_event_is_sent_once_the_prefect_api_answers(registry, prefect_api):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    events = ChampionEvents(registry, MODEL)
    app = TestClient(create_app(events, SECRET))
    registry.set_registered_model_alias(MODEL, "champion", "2")
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        assert app.post(WEBHOOK_PATH, **alias_set("2")).json()["prefect_event"] == "pending"
        assert events.retry_pending() is False  # still down
    assert events.retry_pending() is True  # the session's Prefect API
    assert history_entries(registry, MODEL)[-1].prefect_event == "emitted"
    assert events.retry_pending() is False  # nothing left


def test_a_body_over_the_limit_is_refused_unread(registry, caplog):
    from imdb_mlops.serving.webhook_receiver import MAX_BODY_BYTES

    app = TestClient(create_app(ChampionEvents(registry, MODEL), SECRET))
    huge = alias_set("2")
    huge["content"] = "x" * (5 * 1024**2)
    answer = app.post(WEBHOOK_PATH, **huge)
    assert answer.status_code == 413 and answer.json()["error"] == f"body over {MAX_BODY_BYTES:,} bytes"
    assert [e.version for e in history_entries(registry, MODEL)] == ["1"]


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)])
def test_a_receiver_bound_beyond_loopback_warns(host, warned, caplog):
    from imdb_mlops.serving.webhook_receiver import warn_if_exposed

    warn_if_exposed(host, "the receiver")
    assert ("reachable from other machines" in caplog.text) is warned


@pytest.mark.parametrize("stop_signal", ["SIGTERM", "SIGINT"])
def test_the_receiver_command_stops_on_a_signal_and_frees_its_port(registry, tmp_path, stop_signal):
    import signal
    import socket
    import subprocess
    import sys

    import requests

    from helpers import REPO_ROOT, cli_env

    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    port = free_port()
    env = cli_env(MLFLOW_TRACKING_URI=registry.tracking_uri, IMDB_MLOPS_WEBHOOK_SECRET=SECRET)
    receiver = subprocess.Popen(
        [sys.executable, "-m", "imdb_mlops", "webhooks", "serve", "--port", str(port), "--host", "0.0.0.0"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        receiver.send_signal(getattr(signal, stop_signal))
        _, stderr = receiver.communicate(timeout=15)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    assert "listening on 0.0.0.0" in stderr and "reachable from other machines" in stderr
    with socket.socket() as sock:  # the port is free again: nothing left holding it
        sock.bind(("0.0.0.0", port))
