"""MLflow registry webhooks: registering one on a tracking server, and checking a delivery.

MLflow (3.3+, SQL-backed stores) POSTs a JSON body ``{"entity", "action", "timestamp", "data"}``
with the headers ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` and, when the webhook has a secret,
``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``. Deliveries
are sent by the tracking server's request handlers, so only moves made through a server
(``mlflow server``, its UI or REST API, or a client whose tracking URI is that server) send any;
a client writing a SQLite file directly sends none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from imdb_mlops.common.errors import PipelineError

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
ALIAS_EVENTS = ("model_version_alias.created", "model_version_alias.deleted")
WEBHOOK_EVENTS = (*ALIAS_EVENTS, "model_version.created")
MAX_AGE_S = 300  # a delivery signed longer ago than this is a replay


class DeliveryRejected(Exception):
    """A delivery that must not be acted on; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    event: str  # "<entity>.<action>", e.g. model_version_alias.created
    data: dict[str, Any]
    sent_at: str


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    signed = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def verify_delivery(headers: Any, body: bytes, secret: str, now: float | None = None) -> Delivery:
    """The delivery in a request, or :class:`DeliveryRejected` (unsigned, wrongly signed, too old,
    or not the JSON MLflow sends)."""
    import json

    delivery_id = headers.get(DELIVERY_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    sent = headers.get(SIGNATURE_HEADER)
    if not sent:
        raise DeliveryRejected(401, f"unsigned delivery (no {SIGNATURE_HEADER} header)")
    if not delivery_id or not timestamp:
        raise DeliveryRejected(400, f"delivery without {DELIVERY_HEADER} or {TIMESTAMP_HEADER} header")
    if not hmac.compare_digest(sent, signature(secret, delivery_id, timestamp, body)):
        raise DeliveryRejected(
            401, f"delivery {delivery_id}: wrong signature (is the receiver's secret the webhook's?)"
        )
    try:
        age = (time.time() if now is None else now) - int(timestamp)
    except ValueError:
        raise DeliveryRejected(400, f"delivery {delivery_id}: timestamp '{timestamp}' is not a number") from None
    if abs(age) > MAX_AGE_S:
        raise DeliveryRejected(401, f"delivery {delivery_id}: signed {age:.0f} s ago (more than {MAX_AGE_S} s): replay")
    try:
        message = json.loads(body)
        event = f"{message['entity']}.{message['action']}"
        data = message["data"]
    except (ValueError, KeyError, TypeError):
        raise DeliveryRejected(400, f"delivery {delivery_id}: body lacks entity, action or data") from None
    if not isinstance(data, dict):
        raise DeliveryRejected(400, f"delivery {delivery_id}: data is not an object")
    return Delivery(delivery_id, event, data, str(message.get("timestamp", "")))


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str, allow_remote: bool) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PipelineError(f"--url: '{url}' is not an http(s) URL")
    if not is_loopback(url) and not allow_remote:
        raise PipelineError(
            f"--url: {url} is not a loopback address, and the receiver binds 127.0.0.1 unless started with "
            "--host; start it with --host and pass --allow-remote"
        )


def register_webhook(client: Any, name: str, url: str, secret: str, model: str) -> tuple[Any, bool]:
    """Create (or update, when one of that name exists) the webhook on the tracking server;
    returns (webhook, created)."""
    from mlflow.exceptions import MlflowException

    description = f"imdb-mlops: alias moves and new versions of {model} reach the pipeline's receiver"
    try:
        existing = [hook for hook in client.list_webhooks(max_results=100) if hook.name == name]
    except MlflowException as exc:
        raise PipelineError(
            f"{client.tracking_uri}: this tracking store has no webhooks ({exc.message.splitlines()[0]}); "
            "they need a tracking server on a SQL store (mlflow server --backend-store-uri sqlite:///mlflow.db)"
        ) from None
    events = list(WEBHOOK_EVENTS)
    if existing:
        hook = client.update_webhook(
            existing[0].webhook_id, url=url, events=events, secret=secret, description=description, status="ACTIVE"
        )
        return hook, False
    return client.create_webhook(name=name, url=url, events=events, secret=secret, description=description), True
