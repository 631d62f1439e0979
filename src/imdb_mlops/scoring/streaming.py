"""Scoring pieces of input on Ray Data: a dataset of :class:`~imdb_mlops.scoring.inputs.Piece`
(one block each) mapped by an actor pool whose actors load the registered model once and, per
piece, read it, score it and write its output part atomically. Only small aggregates travel back,
so memory stays bounded whatever the input size; Ray's streaming executor keeps the pool busy and
retries a piece whose actor or node died (a part is written whole or not at all, so a retry is
harmless).

Ray runs in this process's own local instance, sized to the machine, unless an address is given
(``--ray-address`` or ``RAY_ADDRESS``): then the same job runs on that cluster, whose nodes must
reach the tracking server and the artifact store, and the output folder (a shared file system).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import process_alive
from imdb_mlops.scoring.inputs import Piece, read_piece

AGGREGATES_KEY = b"imdb_mlops.aggregates"  # parquet metadata of each part: its drift aggregates
ACTOR_MEMORY = 2 * 1024**3  # a scoring actor with its model loaded, at most (MiniLM/DistilBERT + ONNX)


def write_part(path: Path, frame: pd.DataFrame, aggregates: dict[str, Any]) -> None:
    """``frame`` as the parquet file ``path``, with ``aggregates`` in its metadata; atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), AGGREGATES_KEY: json.dumps(aggregates)})
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C reached this actor mid-write: no half part left behind
        tmp.unlink(missing_ok=True)
        raise


def remove_unfinished_parts(parts_dir: Path, wait_s: float = 15) -> None:
    """Remove the temporary files of parts whose writer is gone (a job interrupted or killed). A
    writer still alive on this machine (an actor shutting down) gets up to ``wait_s`` to finish."""
    import time

    deadline = time.monotonic() + wait_s
    for tmp in parts_dir.glob(".part-*.tmp"):
        writer = tmp.suffixes[-2].lstrip(".") if len(tmp.suffixes) >= 2 else ""
        while writer.isdigit() and process_alive(int(writer)) and time.monotonic() < deadline:
            time.sleep(0.2)
        tmp.unlink(missing_ok=True)


def part_aggregates(path: Path) -> dict[str, Any] | None:
    """The aggregates a finished part carries, or None when the file is not a readable part."""
    import pyarrow.parquet as pq

    try:
        return json.loads(pq.read_schema(path).metadata[AGGREGATES_KEY])
    except Exception:  # a truncated or foreign file: scored again
        return None


class PartScorer:
    """A Ray actor: the registered model loaded once; scores pieces into their parts."""

    def __init__(
        self,
        model_uri: str,
        tracking_uri: str,
        reference_texts: list[str],
        text_column: str,
        chunk: int,
        truncate_chars: int,
    ) -> None:
        import mlflow
        import ray

        from imdb_mlops.registry.predict import served_choice
        from imdb_mlops.registry.versions import load_pyfunc
        from imdb_mlops.scoring.drift import unknown_counts

        mlflow.set_tracking_uri(tracking_uri)
        self.model = load_pyfunc(model_uri)
        self.tokenizer = self.model.unwrap_python_model().tokenizer
        self.text_column, self.chunk, self.truncate_chars = text_column, chunk, truncate_chars
        # carried by every part, so that a rerun with every part done still has them
        self.shared = {
            "reference_unknown": list(unknown_counts(self.tokenizer, reference_texts)),
            "served_variant": served_choice(self.model),
            "node": ray.get_runtime_context().get_node_id(),  # which machine wrote the part
        }

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        from imdb_mlops.registry.predict import predict_chunked
        from imdb_mlops.scoring.drift import text_aggregates

        done = []
        for piece_json, part in zip(batch["piece"], batch["part"], strict=True):
            reviews = read_piece(Piece(**_piece_fields(json.loads(piece_json))), self.text_column)
            texts = reviews["text"].tolist()
            predictions = predict_chunked(self.model, texts, self.chunk, self.truncate_chars, show_progress=False)
            aggregates = {**text_aggregates(texts, predictions["label"], self.tokenizer), **self.shared}
            write_part(Path(part), pd.concat([reviews, predictions], axis=1), aggregates)
            done.append(json.dumps(aggregates))
        return {"part": list(batch["part"]), "aggregates": done}


def _piece_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "files": tuple(fields["files"])}


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray connected to ``address`` (a cluster), or a local instance for this job (stopped after)."""
    ray = _ray_without_auto_connect()
    if ray.is_initialized():
        yield
        return
    quiet = {"include_dashboard": False, "configure_logging": True, "logging_level": "warning"}
    try:
        if address:
            ray.init(address=address, log_to_driver=True, logging_level="warning")
        else:
            # a new instance of its own (not a cluster started on this machine); the object store
            # holds pieces' descriptions and aggregates only: a small one will do
            ray.init("local", num_cpus=os.cpu_count() or 1, object_store_memory=256 * 1024**2, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PipelineError(f"ray: cannot connect to {address or 'a local instance'} ({exc})") from None
    try:
        yield
    finally:
        ray.shutdown()


def _ray_without_auto_connect() -> Any:
    """The ``ray`` module, with its auto-connect off in this process. Otherwise a Ray Data thread still
    running after ``ray.shutdown()`` (the job interrupted) calls ``ray.init()`` by itself, which joins
    the cluster last started on this machine (``/tmp/ray/ray_current_cluster``: often the instance just
    stopped) and hangs the exit waiting for it."""
    import ray
    from ray._private import auto_init_hook

    # the flag RAY_ENABLE_AUTO_CONNECT=0 sets at import, set here whether or not ray was imported before
    auto_init_hook.enable_auto_connect = False
    return ray


def pool_size(requested: int | None, pieces: int) -> int:
    """Scoring actors: ``requested``, else one per CPU of the cluster that its memory can hold."""
    import ray

    if requested:
        return max(1, min(requested, pieces))
    resources = ray.available_resources()
    by_memory = int(resources.get("memory", ACTOR_MEMORY) // ACTOR_MEMORY)
    return max(1, min(int(resources.get("CPU", 1)), by_memory, pieces))


def score_pieces(
    todo: list[tuple[Piece, Path]],
    model_uri: str,
    tracking_uri: str,
    settings: dict[str, Any],
    workers: int | None,
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(part, aggregates) for each scored piece, as the parts are written. ``settings``:
    ``reference_texts`` (the drift reference), ``text_column``, ``chunk`` (texts per model call),
    ``truncate_chars``."""
    import ray

    items = [{"piece": json.dumps(piece.__dict__), "part": str(part)} for piece, part in todo]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    size = pool_size(workers, len(items))
    scored = dataset.map_batches(
        PartScorer,
        fn_constructor_kwargs={"model_uri": model_uri, "tracking_uri": tracking_uri, **settings},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=size),
        num_cpus=1,
    )
    with _interrupt_noted() as interrupted:
        try:
            for row in scored.iter_rows():
                yield Path(row["part"]), json.loads(row["aggregates"])
        except ray.exceptions.RayError as exc:
            _release_stopped_iterators(exc)
            if interrupted:  # Ctrl-C reached the actors too (same process group): an interruption, not a failure
                raise KeyboardInterrupt from None
            raise _pipeline_error(exc) from None
        except BaseException as exc:  # KeyboardInterrupt above all
            _release_stopped_iterators(exc)
            raise


def _release_stopped_iterators(exc: BaseException) -> None:
    """Free what the frames of an interrupted or failed iteration hold (Ray Data's executor), so that
    it stops now, while Ray is up. Kept alive by the exception, it would stop at exit, after
    ``ray.shutdown()``, and print a traceback under the job's last line."""
    traceback.clear_frames(exc.__traceback__)  # the frames still running (this one) are left as they are
    gc.collect()


@contextlib.contextmanager
def _interrupt_noted() -> Iterator[list[bool]]:
    """A list that holds True once SIGINT arrived here (Python's default handler still raises
    KeyboardInterrupt); an ignored SIGINT (``nohup``) or another handler is left alone."""
    import signal
    import threading

    noted: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield noted
        return

    def note(signum: int, frame: Any) -> None:
        noted.append(True)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def _pipeline_error(exc: BaseException) -> BaseException:
    """The PipelineError a Ray task raised (a bad row, a missing model), as the user's one line."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, PipelineError):
            return PipelineError(str(exc))
        cause = getattr(exc, "cause", None) or exc.__cause__
        if cause is None:
            break
        exc = cause
    return PipelineError(f"ray: scoring failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
