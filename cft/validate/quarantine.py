"""Quarantine entries: the row as it came in, where it came from, and why it was held back."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cft.data.io import write_jsonl


def quarantine_entry(
    row: Any, source: dict[str, Any] | None, failed_checks: Sequence[str], details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One quarantined row; `row` is the original row, or the raw text when it did not parse."""
    if not failed_checks:
        raise ValueError("a quarantined row needs at least one failed check")
    return {"row": row, "source": source, "failed_checks": list(failed_checks), "details": dict(details or {})}


def entry_from_failure(failure: dict[str, Any]) -> dict[str, Any]:
    """A quarantine entry from an importer failure (see cft.data.importers.failure)."""
    return quarantine_entry(
        failure.get("raw"),
        {"file": failure.get("file"), "line": failure.get("line")},
        [failure.get("check") or "unrecognised_row"],
        {"error": failure.get("error")},
    )


def failure_counts(entries: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Rows failing each check (a row with two failed checks counts under both)."""
    counts: Counter[str] = Counter()
    for entry in entries:
        counts.update(set(entry["failed_checks"]))
    return dict(sorted(counts.items()))


def write_quarantine(path: str | Path, entries: Iterable[dict[str, Any]]) -> int:
    return write_jsonl(path, entries)
