"""Grade a JSONL file of model responses against gold answers (`cft grade`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cft.data.io import DataError, iter_records, write_jsonl
from cft.evaluate.grade import grade_responses

# The gold answer's usual names, in the order they are looked for when none is given.
GOLD_FIELDS = ("gold_answer", "gold", "answer")


def _gold_text(value: Any, where: str, field: str) -> str:
    # Gold answers arrive as strings or numbers (AMC's 27.0); both are fine, anything else is not.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: field '{field}' must be a string or number, got {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _gold_field(row: dict[str, Any], where: str, gold_field: str | None) -> str:
    candidates = (gold_field,) if gold_field else GOLD_FIELDS
    for field in candidates:
        if row.get(field) is not None:
            return field
    if gold_field:
        raise DataError(f"{where}: missing required field '{gold_field}'")
    raise DataError(f"{where}: no gold answer; looked for fields {', '.join(GOLD_FIELDS)} (name another with --gold-field)")


def grade_file(
    in_path: str | Path,
    out_path: str | Path,
    *,
    response_field: str = "response",
    gold_field: str | None = None,
    timeout_s: float = 5.0,
    workers: int | None = None,
) -> dict:
    """Write every row of `in_path` plus `extracted_answer`, `correct` and `grading_error` to `out_path` (atomically).

    The gold answer is `gold_field`, or else the first of `GOLD_FIELDS` a row has.
    `grading_error` says why a row could not be graded fully ("timeout",
    "unparseable answer: ...", a grader crash), null otherwise. Strict: a
    malformed line, or a row missing either field, raises DataError naming
    file, line and field before anything is written. Returns {"n", "correct",
    "accuracy", "errors"} (accuracy in [0, 1]; errors counts rows with a grading_error).
    """
    rows: list[dict[str, Any]] = []
    items: list[tuple[str, str]] = []
    for record in iter_records(in_path):
        if record.error:
            raise DataError(record.error)
        where = f"{record.path}:{record.line}"
        row = record.data
        if row.get(response_field) is None:
            raise DataError(f"{where}: missing required field '{response_field}'")
        if not isinstance(row[response_field], str):
            raise DataError(f"{where}: field '{response_field}' must be a string, got {type(row[response_field]).__name__}")
        field = _gold_field(row, where, gold_field)
        rows.append(row)
        items.append((row[response_field], _gold_text(row[field], where, field)))

    results = grade_responses(items, timeout_s=timeout_s, workers=workers)
    graded = [
        {**row, "extracted_answer": r.extracted, "correct": r.correct, "grading_error": r.error}
        for row, r in zip(rows, results)
    ]
    write_jsonl(out_path, graded)
    n_correct = sum(r.correct for r in results)
    return {
        "n": len(results),
        "correct": n_correct,
        "accuracy": n_correct / len(results) if results else 0.0,
        "errors": sum(r.error is not None for r in results),
    }
