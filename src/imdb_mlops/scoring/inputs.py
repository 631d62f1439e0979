"""New reviews to score, cut into pieces: the unit that batch scoring reads, scores and writes as
one output part, and that a rerun skips when its part is already there.

Inputs: one file or a folder of files (searched recursively) in any of

- parquet (a Spark/Dask dataset folder is read through its part files): one review per row, in
  column ``scoring.text_column``; a piece is a run of whole row groups of about
  ``scoring.rows_per_part`` rows, so memory is bounded by the largest row group;
- JSONL: one review per line; a piece is a byte range of about ``rows_per_part`` lines;
- CSV: one piece per file (a quoted review may span lines, so a file is not cut);
- ``.txt``: one review per file (as in aclImdb), ``rows_per_part`` files a piece; a single ``.txt``
  file given directly holds one review per non-empty line, cut like JSONL.

Pieces are planned from file metadata alone (parquet footers, line offsets): the same input gives
the same pieces, which is what makes a rerun resumable. Empty and whitespace-only reviews are not
scored.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from imdb_mlops.common.errors import PipelineError, first_line

FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".txt": "txt"}


@dataclass(frozen=True)
class Piece:
    """Rows of the input read as one unit: ``files`` (one, or several ``.txt`` reviews) and, within
    a parquet file, row groups ``[start, stop)``; within a JSONL or text file, bytes ``[start, stop)``."""

    kind: str
    files: tuple[str, ...]
    start: int = 0
    stop: int = 0
    lines: bool = False  # a .txt file read line by line

    def key(self, salt: str) -> str:
        """What identifies this piece's output: its rows, the files' sizes and times, and ``salt``
        (the model version and scoring settings)."""
        stats = [(f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in self.files]
        payload = json.dumps([asdict(self), stats, salt], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def input_files(path: Path) -> list[Path]:
    """The review files under ``path`` (or ``path`` itself), sorted; clear errors when there are none."""
    if not path.exists():
        raise PipelineError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in FORMATS:
            raise PipelineError(f"{path}: unsupported format (expected {', '.join(FORMATS)})")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in FORMATS and p.is_file())
    if not files:
        raise PipelineError(f"{path}: no reviews found (no {', '.join(FORMATS)} files)")
    return files


def plan_pieces(path: Path, text_column: str, rows_per_part: int) -> list[Piece]:
    """The pieces of ``path`` in reading order (files sorted, rows in file order)."""
    files = input_files(path)
    pieces: list[Piece] = []
    texts: list[str] = []  # .txt reviews of a folder, grouped
    for file in files:
        kind = FORMATS[file.suffix.lower()]
        if kind == "txt" and path.is_dir():
            texts.append(str(file))
            if len(texts) == rows_per_part:
                pieces.append(Piece("txt", tuple(texts)))
                texts = []
            continue
        if texts:
            pieces.append(Piece("txt", tuple(texts)))
            texts = []
        if kind == "parquet":
            pieces += _parquet_pieces(file, text_column, rows_per_part)
        elif kind == "csv":
            _check_csv_header(file, text_column)
            pieces.append(Piece("csv", (str(file),)))
        else:
            pieces += [
                Piece(kind, (str(file),), start, stop, lines=kind == "txt")
                for start, stop in _line_ranges(file, rows_per_part)
            ]
    if texts:
        pieces.append(Piece("txt", tuple(texts)))
    return pieces


def read_piece(piece: Piece, text_column: str) -> pd.DataFrame:
    """``source`` and ``text`` of the non-empty reviews of ``piece``; clear errors for unusable rows."""
    if piece.kind == "txt" and not piece.lines:
        frame = pd.DataFrame({"source": list(piece.files), "text": [_read_text(Path(f)) for f in piece.files]})
    elif piece.kind == "txt":
        lines = _read_range(Path(piece.files[0]), piece.start, piece.stop).splitlines()
        frame = pd.DataFrame({"source": piece.files[0], "text": lines})
    else:
        frame = _read_table(piece, text_column)
    frame = frame.astype({"source": "object", "text": "object"})
    return frame[frame["text"].map(lambda text: bool(text.strip()))].reset_index(drop=True)


def read_new_reviews(path: Path, text_column: str, rows_per_part: int = 10_000) -> pd.DataFrame:
    """Every non-empty review under ``path`` in one frame (``source``, ``text``): for small inputs
    and checks; batch scoring streams the pieces instead."""
    frames = [read_piece(piece, text_column) for piece in plan_pieces(path, text_column, rows_per_part)]
    reviews = pd.concat(frames, ignore_index=True)
    if reviews.empty:
        raise PipelineError(f"{path}: no reviews found (every text is empty)")
    return reviews


def _parquet_pieces(file: Path, text_column: str, rows_per_part: int) -> list[Piece]:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(file).metadata
    except Exception as exc:
        raise PipelineError(f"{file}: cannot read as parquet ({type(exc).__name__}: {first_line(exc, 150)})") from None
    columns = meta.schema.to_arrow_schema().names
    if text_column not in columns:
        raise _no_column(file, text_column, columns)
    pieces, start, rows = [], 0, 0
    for group in range(meta.num_row_groups):
        rows += meta.row_group(group).num_rows
        if rows >= rows_per_part:
            pieces.append(Piece("parquet", (str(file),), start, group + 1))
            start, rows = group + 1, 0
    if start < meta.num_row_groups or not pieces:
        pieces.append(Piece("parquet", (str(file),), start, meta.num_row_groups))
    return pieces


def _line_ranges(file: Path, rows_per_part: int) -> list[tuple[int, int]]:
    """Byte ranges of ``rows_per_part`` lines each (one range for an empty file)."""
    ranges, start, count, offset = [], 0, 0, 0
    with file.open("rb") as handle:
        for line in handle:
            offset += len(line)
            count += 1
            if count == rows_per_part:
                ranges.append((start, offset))
                start, count = offset, 0
    if count or not ranges:
        ranges.append((start, offset))
    return ranges


def _check_csv_header(file: Path, text_column: str) -> None:
    try:
        columns = list(pd.read_csv(file, nrows=0, dtype=object).columns)
    except pd.errors.EmptyDataError:
        columns = []
    except Exception as exc:
        raise PipelineError(f"{file}: cannot read as csv ({type(exc).__name__}: {first_line(exc, 150)})") from None
    if text_column not in columns:
        raise _no_column(file, text_column, columns)


def _no_column(file: Path, text_column: str, columns: list[str]) -> PipelineError:
    return PipelineError(
        f"{file}: no text column '{text_column}' (columns: {', '.join(map(str, columns)) or 'none'}; "
        "set scoring.text_column)"
    )


def _read_table(piece: Piece, text_column: str) -> pd.DataFrame:
    file = Path(piece.files[0])
    first_row = 0
    try:
        if piece.kind == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(file)
            groups = list(range(piece.start, piece.stop))
            first_row = sum(parquet.metadata.row_group(g).num_rows for g in range(piece.start))
            texts = parquet.read_row_groups(groups, columns=[text_column]).column(0).to_pandas()
        elif piece.kind == "csv":
            texts = pd.read_csv(file, dtype=object, keep_default_na=False, usecols=[text_column])[text_column]
        else:
            content = _read_range(file, piece.start, piece.stop)
            frame = pd.read_json(io.StringIO(content), lines=True, dtype=False) if content.strip() else None
            if frame is not None and text_column not in frame.columns:
                raise _no_column(file, text_column, list(frame.columns))
            texts = frame[text_column] if frame is not None else pd.Series([], dtype=object)
    except PipelineError:
        raise
    except Exception as exc:
        raise PipelineError(
            f"{file}: cannot read as {piece.kind} ({type(exc).__name__}: {first_line(exc, 150)})"
        ) from None
    bad = [i for i, value in enumerate(texts) if not isinstance(value, str)]
    if bad:
        if piece.kind == "jsonl":
            first_row = _lines_before(file, piece.start)
        row = first_row + bad[0] + 1
        raise PipelineError(f"{file}: row {row}: '{text_column}' is not text ({texts.iloc[bad[0]]!r})")
    return pd.DataFrame({"source": str(file), "text": texts.tolist()})


def _lines_before(file: Path, offset: int) -> int:
    with file.open("rb") as handle:
        return handle.read(offset).count(b"\n")


def _read_range(file: Path, start: int, stop: int) -> str:
    with file.open("rb") as handle:
        handle.seek(start)
        data = handle.read(stop - start)
    return _decode(file, data, start)


def _read_text(file: Path) -> str:
    return _decode(file, file.read_bytes(), 0)


def _decode(file: Path, data: bytes, offset: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{file}: not UTF-8 text ({exc.reason} at byte {offset + exc.start})") from None
