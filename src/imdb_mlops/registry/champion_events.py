"""What an MLflow registry event does to the pipeline (the webhook receiver calls this).

A move of alias ``champion`` of the pipeline's registered model is (1) recorded in the champion
history, source ``ui/rest``, unless the history already holds it (the register stage, the CLI and a
rollback record their moves before making them), then (2) announced as the Prefect event
``imdb-mlops.champion.changed`` on resource ``mlflow.registered-model.<name>``, which the
``rescore-on-champion`` deployment of ``prefect.yaml`` is triggered by. The history is written
first, so a Prefect API that is down loses no move: the entry stays ``prefect_event: pending`` and
:meth:`ChampionEvents.retry_pending` sends it later.

Every delivery is handled at most once: its id is remembered, and the history entry carries it.
A delivery is checked against the registry before anything is recorded: a field that is null or
not a name is a 400, so is a version the model does not have; a move that the alias no longer
shows (a late or replayed delivery of a superseded move) records nothing, so the history never
disagrees with the registry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.registry.aliases import current_champion
from imdb_mlops.registry.history import (
    HistoryEntry,
    append_entry,
    history_entries,
    recorded_champion,
    registry_lock,
    update_entry,
)
from imdb_mlops.registry.versions import CHAMPION, get_version
from imdb_mlops.registry.webhooks import ALIAS_EVENTS, Delivery, DeliveryRejected

log = logging.getLogger("imdb_mlops.webhooks")
PREFECT_EVENT = "imdb-mlops.champion.changed"
REQUIRED_FIELDS = {
    "model_version_alias.created": ("name", "alias", "version"),
    "model_version_alias.deleted": ("name", "alias"),
    "model_version.created": ("name", "version"),
}


def model_resource(name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"mlflow.registered-model.{name}", "prefect.resource.name": name}


def prefect_api_problem() -> str | None:
    """Why no Prefect event can be sent now (None when the API answers)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return "PREFECT_API_URL is not set"
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    return None if problem is None else f"the Prefect API at {url} does not answer ({type(problem).__name__})"


def emit_champion_event(name: str, entry: HistoryEntry) -> None:
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    emit_event(
        event=PREFECT_EVENT,
        resource=model_resource(name),
        payload={
            "model": name,
            "version": entry.version,
            "previous_version": entry.previous,
            "source": entry.source,
            "history_id": entry.id,
        },
    )
    EventsWorker.drain_all(timeout=10)


@dataclass
class Outcome:
    status: str  # recorded | already_recorded | duplicate | superseded | ignored | noted
    detail: str
    entry: HistoryEntry | None = None
    prefect: str | None = None  # emitted | pending | None


@dataclass
class ChampionEvents:
    """Handles deliveries for one registered model of one tracking store."""

    client: Any
    model: str
    seen: set[str] = field(default_factory=set)

    def handle(self, delivery: Delivery) -> Outcome:
        if delivery.delivery_id in self.seen:
            return Outcome("duplicate", f"delivery {delivery.delivery_id} was handled before; nothing recorded")
        for key in REQUIRED_FIELDS.get(delivery.event, ()):
            problem = field_problem(key, delivery.data)
            if problem:
                raise DeliveryRejected(400, f"delivery {delivery.delivery_id} ({delivery.event}): {problem}")
        outcome = self._handle(delivery)
        self.seen.add(delivery.delivery_id)
        return outcome

    def _handle(self, delivery: Delivery) -> Outcome:
        data = delivery.data
        if delivery.event not in REQUIRED_FIELDS:
            return Outcome("ignored", f"event {delivery.event} is not one the pipeline acts on")
        if data["name"] != self.model:
            return Outcome(
                "ignored", f"event for another registered model '{data['name']}' (this receiver: {self.model})"
            )
        if delivery.event == "model_version.created":
            return Outcome("noted", f"{self.model} version {data['version']} created")
        if data["alias"] != CHAMPION:
            return Outcome("ignored", f"alias '{data['alias']}' moved; only '{CHAMPION}' is tracked")
        version = str(data["version"]) if delivery.event == ALIAS_EVENTS[0] else None
        with registry_lock(self.client, self.model):
            entries = history_entries(self.client, self.model)
            if any(e.delivery_id == delivery.delivery_id for e in entries):
                return Outcome("duplicate", f"delivery {delivery.delivery_id} is in the history already")
            stale = self._superseded(delivery, version)
            if stale:
                return Outcome("superseded", stale)
            if entries and recorded_champion(entries) == version:
                entry = entries[-1]
                if entry.prefect_event is not None or version is None:
                    return Outcome("already_recorded", f"champion {version} is recorded already", entry)
                status = "already_recorded"  # a move the pipeline made and recorded: announce it once
            else:
                entry = HistoryEntry(
                    action="set" if version else "deleted",
                    version=version,
                    previous=recorded_champion(entries),
                    source="ui/rest",
                    reason="alias set in the MLflow UI or REST API" if version else "alias deleted",
                    delivery_id=delivery.delivery_id,
                )
                append_entry(self.client, self.model, entry)
                status = "recorded"
        detail = (
            f"champion {entry.previous or '(none)'} -> {version} ({entry.source})"
            if version
            else f"champion alias deleted (was {entry.previous})"
        )
        prefect = self.announce(entry) if version else None
        return Outcome(status, detail, entry, prefect)

    def _superseded(self, delivery: Delivery, version: str | None) -> str | None:
        """Why the delivery's move is no longer what the registry shows (None when it is); a
        version the model does not have is refused."""
        if version is not None:
            try:
                get_version(self.client, self.model, version)
            except PipelineError:
                raise DeliveryRejected(
                    400, f"delivery {delivery.delivery_id}: {self.model} has no version {version}"
                ) from None
        now = current_champion(self.client, self.model)
        if now == version:
            return None
        move = f"champion -> {version}" if version else "champion deleted"
        return f"{move} was superseded: the registry's champion is {now or '(none)'} now; nothing recorded"

    def announce(self, entry: HistoryEntry) -> str:
        """Send the Prefect event about ``entry``; ``pending`` (and logged) when it cannot be sent."""
        problem = prefect_api_problem()
        if problem is None:
            try:
                emit_champion_event(self.model, entry)
            except Exception as exc:  # the history holds the move; the event is retried
                problem = f"the event could not be sent ({type(exc).__name__}: {exc})"
        state = "emitted" if problem is None else "pending"
        with registry_lock(self.client, self.model):
            update_entry(self.client, self.model, entry.id, prefect_event=state)
        if problem:
            log.warning("Prefect event for champion %s kept pending: %s; retried later", entry.version, problem)
        return state

    def retry_pending(self) -> bool:
        """Send the event about the current champion if it is still pending (an older pending one is
        stale: a later move superseded it); returns whether one was sent."""
        entries = history_entries(self.client, self.model)
        latest = entries[-1] if entries else None
        if latest is None or latest.prefect_event != "pending" or latest.version is None:
            return False
        if self.announce(latest) != "emitted":
            return False
        log.info("Prefect event for champion %s sent (it was pending)", latest.version)
        return True


def field_problem(key: str, data: dict[str, Any]) -> str | None:
    """What is wrong with a required payload field (None when nothing): absent, null, not a name,
    or (``version``) not a version number."""
    if key not in data:
        return f"payload lacks {key}"
    value = data[key]
    if value is None:
        return f"payload field {key} is null"
    if key == "version":
        return None if str(value).isdigit() and not isinstance(value, bool) else f"version {value!r} is not a number"
    if not isinstance(value, str) or not value.strip():
        return f"payload field {key} is not a name ({value!r})"
    return None
