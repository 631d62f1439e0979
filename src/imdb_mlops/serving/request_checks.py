"""Requests refused before MLflow's schema check: a JSON request with no texts at all is a 400
that says so (MLflow's own message for it is about tensors and schemas). Empty or blank texts
and oversized requests are refused by the model itself (``classifier_model.check_request``)."""

from __future__ import annotations

import json
from typing import Any

from imdb_mlops.serving.admission import Scope, receive_body, replay_body, respond

SMALL_BODY = 1024  # an empty request is tiny: only bodies under this are parsed here
INPUT_KEYS = ("inputs", "instances", "dataframe_records")


def sent_no_texts(body: bytes) -> bool:
    """True when ``body`` is a JSON request of the scoring server whose texts are an empty list."""
    if len(body) >= SMALL_BODY:
        return False
    try:
        request = json.loads(body)
    except ValueError:
        return False  # MLflow answers malformed JSON itself
    if not isinstance(request, dict):
        return False
    split = request.get("dataframe_split")
    values = [request.get(key) for key in INPUT_KEYS] + [split.get("data") if isinstance(split, dict) else None]
    return any(isinstance(value, list) and not value for value in values)


class RefuseEmptyRequests:
    def __init__(self, app: Any, paths: tuple[str, ...] = ("/invocations",)) -> None:
        self.app, self.paths = app, paths

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        body = await receive_body(receive)
        if body is None:
            return  # the client hung up
        if sent_no_texts(body):
            await respond(
                send, 400, "no texts were sent: the request needs at least one review", "INVALID_PARAMETER_VALUE"
            )
            return
        await self.app(scope, replay_body(body, receive), send)
