"""Grade a JSONL file of model responses against gold answers (`cft grade`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cft.data.io import DataError, iter_records, write_jsonl
from cft.evaluate.grade import grade_responses


def _gold_text(value: Any, where: str, field: str) -> str:
    # Gold answers arrive as strings or numbers (AMC's 27.0); both are fine, anything else is not.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: field '{field}' must be a string or number, got {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def grade_file(
    in_path: str | Path,
    out_path: str | Path,
    *,
    response_field: str = "response",
    gold_field: str = "gold_answer",
    timeout_s: float = 5.0,
    workers: int | None = None,
) -> dict:
    """Write every row of `in_path` plus `extracted_answer` and `correct` to `out_path` (atomically).

    Strict: a malformed line, or a row missing either field, raises DataError
    naming file, line and field before anything is written. Returns
    {"n", "correct", "accuracy", "errors"} (accuracy in [0, 1]; errors counts
    items whose grading timed out or failed).
    """
    rows: list[dict[str, Any]] = []
    items: list[tuple[str, str]] = []
    for record in iter_records(in_path):
        if record.error:
            raise DataError(record.error)
        where = f"{record.path}:{record.line}"
        row = record.data
        for field in (response_field, gold_field):
            if row.get(field) is None:
                raise DataError(f"{where}: missing required field '{field}'")
        if not isinstance(row[response_field], str):
            raise DataError(f"{where}: field '{response_field}' must be a string, got {type(row[response_field]).__name__}")
        rows.append(row)
        items.append((row[response_field], _gold_text(row[gold_field], where, gold_field)))

    results = grade_responses(items, timeout_s=timeout_s, workers=workers)
    graded = [{**row, "extracted_answer": r.extracted, "correct": r.correct} for row, r in zip(rows, results)]
    write_jsonl(out_path, graded)
    n_correct = sum(r.correct for r in results)
    return {
        "n": len(results),
        "correct": n_correct,
        "accuracy": n_correct / len(results) if results else 0.0,
        "errors": sum(r.error is not None for r in results),
    }
