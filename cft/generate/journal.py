"""The resumable store of a generation stage: an append-only JSONL journal keyed by `id`.

Every finished row is appended and flushed at once, so a killed process (even
SIGKILL) loses at most the row being written: the operating system has the rest.
fsync, which only matters if the machine itself goes down, is batched: an append
fsyncs only when `fsync_interval_s` has passed since the last fsync (one per row
would cap a stage at the disk's fsync rate: tens of rows a second on network
filesystems), and `close` fsyncs; a machine crash loses the rows written since the
last fsync, which are generated again. Reading forgives what a kill leaves behind:
a torn last line (one without its newline, even if it parses) is dropped (its row
is simply generated again) and a repeated id keeps its last row. `finalize` then
writes the stage output atomically: exactly the planned ids, in plan order, once
each, plus a failures file listing every planned id that has no row, with the
reason, so nothing is dropped silently. Failed rows are not journaled, so the next
run retries them.
`compact` rewrites the journal down to the rows an output holds (atomically: a
kill during it leaves the old journal whole).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cft.data.io import write_jsonl


def failures_path(out_path: str | Path) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".failures.jsonl")


class Journal:
    def __init__(self, path: str | Path, *, fsync_interval_s: float = 1.0):
        self.path = Path(path)
        self.fsync_interval_s = fsync_interval_s
        self.skipped_lines = 0  # unreadable lines seen by the last load (torn or corrupt)
        self._lines = 0  # row lines in the file (repeats included): what compaction could drop
        self._last_fsync = float("-inf")
        self._rows: dict[str, dict] | None = None
        self._failures: dict[str, dict] = {}
        self._fh = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    # -- reading ----------------------------------------------------------------------

    def rows(self) -> dict[str, dict]:
        """Every journaled row by id (last one wins); loaded once, then kept up to date."""
        if self._rows is None:
            self._rows = self._load()
        return self._rows

    def __contains__(self, row_id: str) -> bool:
        return row_id in self.rows()

    def _load(self) -> dict[str, dict]:
        rows: dict[str, dict] = {}
        self.skipped_lines = 0
        self._lines = 0
        if not self.path.exists():
            return rows
        with self.path.open("rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                if not raw.endswith(b"\n"):
                    # Torn even if it parses: the next append cuts it (`_cut_torn_tail`), so it must
                    # not be counted as done; compaction then rewrites the file without it.
                    self.skipped_lines += 1
                    continue
                try:
                    row = json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    self.skipped_lines += 1  # a torn write: regenerate that row
                    continue
                if isinstance(row, dict) and isinstance(row.get("id"), str):
                    rows.pop(row["id"], None)  # re-insert so the order is last-write order
                    rows[row["id"]] = row
                    self._lines += 1
                else:
                    self.skipped_lines += 1
        return rows

    # -- writing ----------------------------------------------------------------------

    def _open(self):
        if self._fh is None:
            self.rows()  # load before the first write so appends update the cache
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._cut_torn_tail()
            self._fh = open(self.path, "ab")
        return self._fh

    def _cut_torn_tail(self) -> None:
        """Drop a last line without its newline, or the next append would glue onto it."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("r+b") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            pos = size
            while pos > 0:
                step = min(65536, pos)
                fh.seek(pos - step)
                chunk = fh.read(step)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    pos = pos - step + cut + 1
                    break
                pos -= step
            if pos != size:
                fh.truncate(pos)
                fh.flush()
                os.fsync(fh.fileno())

    def append(self, row: dict[str, Any]) -> None:
        """Write one row durably (thread-safe)."""
        self.append_many([row])

    def append_many(self, rows: Iterable[dict[str, Any]]) -> int:
        """Write rows with one flush for all of them (thread-safe)."""
        rows = list(rows)
        for row in rows:
            if not isinstance(row.get("id"), str):
                raise ValueError(f"journal {self.path}: a row needs a string 'id', got keys {sorted(row)}")
        if not rows:
            return 0
        data = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in rows)
        with self._lock:
            fh = self._open()
            fh.write(data)
            fh.flush()  # in the OS from here on: a killed process loses nothing written
            now = time.monotonic()
            if now - self._last_fsync >= self.fsync_interval_s:
                os.fsync(fh.fileno())
                self._last_fsync = now
            for row in rows:
                self._rows.pop(row["id"], None)
                self._rows[row["id"]] = row
                self._failures.pop(row["id"], None)
            self._lines += len(rows)
        return len(rows)

    def record_failure(self, row_id: str, error: str, attempts: int, reason: str = "error") -> None:
        """Remember why a row failed this run; written out by `finalize`, retried next run.
        `reason` is short and machine-readable (e.g. `prompt_too_long`), `error` the message."""
        with self._lock:
            self._failures[row_id] = {"id": row_id, "reason": reason, "error": error, "attempts": attempts,
                                      "time": _now()}

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- output -----------------------------------------------------------------------

    def collect(self, ids_in_order: Iterable[str]) -> tuple[list[dict], list[dict]]:
        """(rows, failures) for the planned ids: each id once, in plan order.

        A planned id without a row and without a recorded failure (the run was cut
        short before it was tried) is a failure with reason `not_generated`.
        """
        rows = self.rows()
        seen: set[str] = set()
        ordered: list[dict] = []
        failures: list[dict] = []
        for row_id in ids_in_order:
            if row_id in seen:
                continue  # a plan may list an id twice; the output never does
            seen.add(row_id)
            if row_id in rows:
                ordered.append(rows[row_id])
            else:
                failures.append(self._failures.get(row_id) or {
                    "id": row_id, "reason": "not_generated",
                    "error": "not generated (run interrupted or never attempted)", "attempts": 0, "time": _now()})
        return ordered, failures

    def finalize(self, ids_in_order: Iterable[str], out_path: str | Path) -> dict:
        """Write the stage output (planned ids with a row, in order, once each) and its failures file."""
        ids = list(ids_in_order)
        ordered, failures = self.collect(ids)
        write_jsonl(out_path, ordered)
        write_jsonl(failures_path(out_path), failures)  # rewritten every run, empty when all done
        return {"rows": len(ordered), "failed": len(failures), "planned": len(ordered) + len(failures)}

    def compact(self, keep_ids: Iterable[str] | None = None) -> int:
        """Rewrite the journal without repeats (and only `keep_ids`, if given); returns rows kept.

        Nothing is rewritten when there is nothing to drop. The new journal is written
        beside the old one and renamed over it, so a kill at any moment leaves either
        the old journal or the new one, whole; a temp file a killed compaction left
        behind is removed by the next one.
        """
        from cft.data.io import atomic_path

        self.close()
        with self._lock:
            rows = self._rows if self._rows is not None else self._load()  # kept current by every append
            if keep_ids is not None:
                keep = set(keep_ids)
                rows = {k: v for k, v in rows.items() if k in keep}
            self._rows = rows
            if self._lines == len(rows) and self.skipped_lines == 0:
                return len(rows)
            for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                stale.unlink(missing_ok=True)
            with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
                for row in rows.values():
                    fh.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._lines = len(rows)
            self.skipped_lines = 0
        return len(rows)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
