"""Readers for every form ``data.source`` may take.

Each reader returns ``{split: DataFrame}`` with the columns

- ``text``: the review (``None`` when its bytes could not be decoded as UTF-8),
- ``label``: the raw label as stored (mapped and checked later by the ingest stage),
- ``origin``: where the row came from (``file.csv row 7``, ``train/pos/12_9.txt``) for messages,
- optionally ``rating`` and ``review_id`` (IMDB's star rating and file id, when known).

Split names are ``train`` and ``test``; a source with one table returns ``{"all": ...}`` and the
ingest stage splits it. Every failure is a :class:`PipelineError` naming the file.
"""

from __future__ import annotations

import csv
import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import track

from imdb_mlops.common.errors import PipelineError, first_line
from imdb_mlops.common.hub import OFFLINE_HINT, ensure_hub_reachable, local_path
from imdb_mlops.config import DataConfig, HubConfig

SOURCE_SPLITS = ("train", "test")
_ACL_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_SURROGATE = re.compile("[\udc80-\udcff]")
_TABLE_SUFFIXES = {".csv", ".tsv", ".parquet", ".pq"}
_TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def detect_format(source: str, path: Path | None) -> str:
    """The reader for ``source``: hub, parquet_dir, aclimdb or table."""
    if path is None:
        return "hub"
    if path.is_dir():
        if _acl_root(path) is not None:
            return "aclimdb"
        if any(path.rglob("*.parquet")):
            return "parquet_dir"
        raise PipelineError(
            f"data.source: folder '{source}' holds neither parquet files (hub layout: "
            "plain_text/train-*.parquet) nor an aclImdb tree (train/pos/*.txt)"
        )
    name = path.name.lower()
    if name.endswith(_TARBALL_SUFFIXES):
        return "aclimdb"
    if path.suffix.lower() in _TABLE_SUFFIXES:
        return "table"
    raise PipelineError(
        f"data.source: cannot tell the format of '{source}' (expected a folder, .csv, .tsv, "
        ".parquet or aclImdb .tar.gz); set data.format"
    )


def read_source(data: DataConfig, hub: HubConfig) -> tuple[str, dict[str, pd.DataFrame]]:
    """Read ``data.source`` in its format; return (format, frames by split)."""
    path = local_path(data.source, "data.source")
    fmt = detect_format(data.source, path) if data.format == "auto" else data.format
    if fmt != "hub" and path is None:
        raise PipelineError(f"data.source: path '{data.source}' does not exist")
    if fmt == "hub":
        return fmt, read_hub(data, hub)
    assert path is not None
    if fmt in ("table", "parquet_dir") and (path.is_dir() != (fmt == "parquet_dir")):
        want = "a folder of parquet files" if fmt == "parquet_dir" else "a .csv, .tsv or .parquet file"
        raise PipelineError(f"data.format: '{fmt}' needs {want}, but data.source '{data.source}' is not one")
    if fmt == "parquet_dir":
        return fmt, read_parquet_dir(path, data)
    if fmt == "aclimdb":
        return fmt, read_aclimdb(path)
    return fmt, {"all": read_table(path, data)}


# --- hub ---------------------------------------------------------------------------------


def read_hub(data: DataConfig, hub: HubConfig) -> dict[str, pd.DataFrame]:
    import datasets

    ensure_hub_reachable("data.source", data.source, hub.timeout_s)
    try:
        loaded = datasets.load_dataset(data.source)
    except datasets.exceptions.DatasetNotFoundError:
        raise PipelineError(f"data.source: dataset '{data.source}' not found on the Hugging Face hub") from None
    except (ConnectionError, OSError) as exc:
        raise PipelineError(
            f"data.source: could not download '{data.source}': {first_line(exc, 300)}; {OFFLINE_HINT}"
        ) from None
    frames = {
        split: _select(loaded[split].to_pandas(), data, f"{data.source}[{split}]")
        for split in SOURCE_SPLITS
        if split in loaded
    }
    if not frames:
        first = next(iter(loaded))
        return {"all": _select(loaded[first].to_pandas(), data, f"{data.source}[{first}]")}
    return frames if "test" in frames else {"all": frames["train"]}


# --- parquet folder in the hub's layout --------------------------------------------------


def read_parquet_dir(root: Path, data: DataConfig) -> dict[str, pd.DataFrame]:
    frames: dict[str, pd.DataFrame] = {}
    for split in SOURCE_SPLITS:
        files = sorted(
            {*root.rglob(f"{split}-*.parquet"), *root.rglob(f"{split}.parquet"), *root.rglob(f"{split}/*.parquet")}
        )
        if files:
            frames[split] = pd.concat([_read_parquet(f, data) for f in files], ignore_index=True)
    if "train" not in frames:
        raise PipelineError(
            f"data.source: no train split in '{root}' (expected files named train-*.parquet, "
            "as in the hub layout plain_text/train-00000-of-00001.parquet)"
        )
    return frames if "test" in frames else {"all": frames["train"]}


def _read_parquet(path: Path, data: DataConfig) -> pd.DataFrame:
    try:
        schema = pq.read_schema(path)
        wanted = [data.text_column, data.label_column]
        _require_columns(path, list(schema.names), data)
        extra = [c for c in ("rating", "review_id") if c in schema.names and c not in wanted]
        frame = pq.read_table(path, columns=wanted + extra).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise PipelineError(f"{path}: not a readable parquet file ({first_line(exc, 300)})") from None
    return _select(frame, data, str(path))


# --- a single CSV / TSV / parquet table --------------------------------------------------


def read_table(path: Path, data: DataConfig) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return _read_parquet(path, data)
    sep = "\t" if suffix == ".tsv" else ","
    try:
        # surrogateescape keeps undecodable bytes as lone surrogates, so the row can be
        # reported and dropped instead of failing the whole file.
        frame = pd.read_csv(
            path,
            sep=sep,
            encoding=data.encoding,
            encoding_errors="surrogateescape",
            keep_default_na=False,
            quoting=csv.QUOTE_NONE if data.quoting == "none" else csv.QUOTE_MINIMAL,
            dtype={data.text_column: object},  # str dtype cannot hold the escapes
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise PipelineError(f"{path}: not a readable CSV file ({first_line(exc, 300)})") from None
    _require_columns(path, list(frame.columns), data)
    if data.quoting == "minimal":
        _refuse_merged_rows(path, frame, data, sep)
    return _select(frame, data, str(path))


def _refuse_merged_rows(path: Path, frame: pd.DataFrame, data: DataConfig, sep: str) -> None:
    """A text that spans lines which themselves look like rows (``<sep><label>`` at their end or
    ``<label><sep>`` at their start) is a quote opened by a review starting with ``"`` and read on
    to the next one: rows were merged. Refuse, naming the row, rather than lose them silently."""
    labels = {str(v).strip() for v in frame[data.label_column].unique()[:50]} - {""}
    if not labels:
        return
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    row_like = re.compile(rf"(?:{re.escape(sep)}\s*(?:{alternatives})\s*$)|(?:^\s*(?:{alternatives}){re.escape(sep)})")
    for index, text in enumerate(frame[data.text_column]):
        if not isinstance(text, str) or "\n" not in text:
            continue
        swallowed = sum(bool(row_like.search(line)) for line in text.splitlines())
        if swallowed:
            raise PipelineError(
                f"{path} row {index + 1}: its text runs over {text.count(chr(10))} more lines that look like "
                f"rows ({swallowed} ending or starting with a label): a field starting with '\"' opened a quote "
                "that swallowed them; if the file's quotes are part of the texts, set data.quoting: none"
            )


def _require_columns(path: Path | str, columns: list[str], data: DataConfig) -> None:
    for role, column in (("text", data.text_column), ("label", data.label_column)):
        if column not in columns:
            key = f"data.{role}_column"
            raise PipelineError(
                f"{path}: missing {role} column '{column}' (columns: {', '.join(map(str, columns))}); set {key}"
            )


def _select(frame: pd.DataFrame, data: DataConfig, where: str) -> pd.DataFrame:
    _require_columns(where, list(frame.columns), data)
    texts = frame[data.text_column]
    out = pd.DataFrame(
        {
            "text": [_decoded_or_none(t) for t in texts],
            "label": frame[data.label_column].to_numpy(),
            "origin": [f"{where} row {i + 1}" for i in range(len(frame))],
        }
    )
    for extra in ("rating", "review_id"):
        if extra in frame.columns and extra not in (data.text_column, data.label_column):
            out[extra] = frame[extra].to_numpy()
    return out


def _decoded_or_none(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = value if isinstance(value, str) else str(value)
    return None if _SURROGATE.search(text) else text


# --- the original Stanford aclImdb folder or tarball -------------------------------------


def _acl_root(folder: Path) -> Path | None:
    for candidate in (folder, folder / "aclImdb"):
        if (candidate / "train" / "pos").is_dir() or (candidate / "test" / "pos").is_dir():
            return candidate
    return None


def read_aclimdb(path: Path) -> dict[str, pd.DataFrame]:
    if path.is_dir():
        root = _acl_root(path)
        if root is None:
            raise PipelineError(f"{path}: not an aclImdb folder (no train/pos or test/pos inside)")
        files = sorted(p for p in root.glob("*/*/*.txt") if _ACL_MEMBER.search(p.relative_to(root).as_posix()))
        odd = [p for p in files if not p.is_file()]
        if odd:
            kind = "a dangling link" if odd[0].is_symlink() and not odd[0].exists() else "not a file"
            raise PipelineError(f"{odd[0]}: {kind}; an aclImdb tree holds one review per .txt file")
        rows = (
            (f.relative_to(root).as_posix(), f.read_bytes())
            for f in track(files, description="Reading aclImdb reviews", transient=True)
        )
        return _acl_frames(rows, str(path))
    return _acl_frames(_tar_members(path), str(path))


def _tar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.isfile() and _ACL_MEMBER.search(member.name):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield member.name, handle.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise PipelineError(f"{path}: not a readable tar archive ({first_line(exc, 300)})") from None


def _acl_frames(members: Iterable[tuple[str, bytes]], where: str) -> dict[str, pd.DataFrame]:
    records: dict[str, list[dict[str, object]]] = {split: [] for split in SOURCE_SPLITS}
    for name, payload in members:
        match = _ACL_MEMBER.search(name)
        assert match is not None
        split, polarity, review_id, rating = match.groups()
        try:
            text: str | None = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        records[split].append(
            {
                "text": text,
                "label": 1 if polarity == "pos" else 0,
                "origin": f"{where}:{name}",
                "rating": int(rating),
                "review_id": int(review_id),
            }
        )
    if not any(records.values()):
        raise PipelineError(f"{where}: not an aclImdb archive (no train/pos/*_*.txt or test/neg/*_*.txt reviews in it)")
    frames = {
        split: pd.DataFrame(rows).sort_values(["label", "review_id"], kind="stable", ignore_index=True)
        for split, rows in records.items()
        if rows
    }
    if "train" not in frames:
        raise PipelineError(f"{where}: aclImdb source has no train/ reviews")
    return frames if "test" in frames else {"all": frames["train"]}


# --- unlabelled reviews (the generator's extra training text) ----------------------------


def read_unlabelled(data: DataConfig, hub: HubConfig, n: int, seed: int) -> list[str]:
    """``n`` reviews (seeded sample) of the source's unlabelled split (``unsupervised`` in IMDB),
    with HTML line breaks turned into newlines as the ingest stage does."""
    from imdb_mlops.data.sampling import sample_texts

    key = "generation.finetune.unlabelled_samples"
    path = local_path(data.source, "data.source")
    if path is None:
        import datasets

        ensure_hub_reachable("data.source", data.source, hub.timeout_s)
        try:
            texts = datasets.load_dataset(data.source, split="unsupervised")[data.text_column]
        except (ValueError, KeyError, OSError) as exc:
            raise PipelineError(f"{key}: '{data.source}' has no unsupervised split ({first_line(exc, 120)})") from None
    else:
        files = sorted(path.rglob("unsupervised-*.parquet")) if path.is_dir() else []
        if not files:
            raise PipelineError(
                f"{key}: no unlabelled reviews in '{data.source}' "
                "(expected unsupervised-*.parquet, as in the hub layout); set it to 0"
            )
        texts = pd.concat([pd.read_parquet(f, columns=[data.text_column]) for f in files])[data.text_column].tolist()
    chosen = sample_texts(texts, n, seed)
    return [clean_html(text) for text in chosen] if data.clean_html else chosen


BR_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_html(text: str) -> str:
    """HTML line breaks (``<br />``, as in IMDB reviews) as newlines."""
    return BR_TAG.sub("\n", text)
