"""JSONL / Parquet reading and atomic writing.

Readers never lose a row silently: a line that is not valid UTF-8 or not a JSON
object comes back as a `Record` with an `error` naming file and line, and the
caller decides whether that is fatal or a quarantine entry.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class DataError(ValueError):
    """Bad input data; the message names the file, line and field."""


@dataclass(frozen=True)
class Record:
    """One input line: `data` when it parsed, else `error` and the raw text."""

    path: str
    line: int
    data: dict[str, Any] | None
    error: str | None = None
    raw: str | None = None


def iter_records(path: str | Path) -> Iterator[Record]:
    """Yield every line of a JSONL file (or every row of a Parquet file) as a Record."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield Record(str(path), i, row)
        return
    with path.open("rb") as fh:
        for i, raw_bytes in enumerate(fh, start=1):
            if not raw_bytes.strip():
                continue
            try:
                text = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as exc:
                raw = raw_bytes.decode("utf-8", errors="replace").rstrip("\n")
                yield Record(str(path), i, None, f"{path}:{i}: not valid UTF-8 ({exc.reason} at byte {exc.start})", raw)
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Record(str(path), i, None, f"{path}:{i}: malformed JSON ({exc.msg}, column {exc.colno})", text.rstrip("\n"))
                continue
            if not isinstance(obj, dict):
                yield Record(str(path), i, None, f"{path}:{i}: expected a JSON object, got {type(obj).__name__}", text.rstrip("\n"))
                continue
            yield Record(str(path), i, obj)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL (or Parquet) file strictly: the first bad line raises DataError."""
    rows = []
    for rec in iter_records(path):
        if rec.error:
            raise DataError(rec.error)
        rows.append(rec.data)
    return rows


def require_fields(row: dict[str, Any], fields: Iterable[str], where: str) -> None:
    """Raise DataError naming `where` (file:line) and the first missing field."""
    for field in fields:
        if row.get(field) is None:
            raise DataError(f"{where}: missing required field '{field}'")


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically; returns the number written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj: Any) -> None:
    """Write a JSON document atomically (metrics, summaries)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
