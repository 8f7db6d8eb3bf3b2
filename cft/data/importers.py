"""Import existing critique datasets (One-Shot-CFT, WebInstruct-CFT) at the critique stage.

Two layouts are understood, both built on the CFT training prompt (docs/design.md, "The CFT recipe"):

- chat `messages`: user = "Please critique whether the following solution to the
  question is correct.\\n\\nQuestion:\\n{q}\\n\\nSolution:\\n{s}\\n\\n",
  assistant = "Critique:\\n{critique}" (One-Shot-CFT);
- Alpaca `instruction` / `input` / `output` (WebInstruct-CFT): the question and
  solution may sit in `input` or in `instruction`, so both are read as one text.

Rows come out in the critique-row contract, so imported data goes through the same
validation as generated data. A row that cannot be recovered is returned as a
failure (file, line, error, raw row, check), never raised and never dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cft.critique.verdict import parse_verdict
from cft.data.ids import content_id
from cft.data.io import DataError, Record, iter_records

FORMATS = ("auto", "messages", "alpaca")
CRITIQUE_INSTRUCTION = "Please critique whether the following solution to the question is correct."
PROMPT_VERSION = "imported"
_QUESTION = "Question:\n"
_SOLUTION = "\n\nSolution:\n"
_CRITIQUE_PREFIX = "Critique:\n"


def read_source_records(path: str | Path) -> Iterator[Record]:
    """Records of a JSONL file, a Parquet file, or a `datasets.Dataset.save_to_disk` folder."""
    path = Path(path)
    if not path.is_dir():
        yield from iter_records(path)
        return
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # a folder that is not a saved dataset: say so, with the path
        raise DataError(f"{path}: not a dataset saved with save_to_disk ({exc})") from exc
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    for split, dataset in splits:
        where = str(path) if split is None else f"{path}[{split}]"
        for i, row in enumerate(dataset, start=1):
            yield Record(where, i, dict(row))


def detect_format(row: dict[str, Any]) -> str | None:
    """'messages', 'alpaca', 'critique' (already in the critique-row contract) or None."""
    if "messages" in row:
        return "messages"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "critique" in row:
        return "critique"
    return None


def split_prompt(text: str) -> tuple[str, str]:
    """(question, solution) from the CFT user prompt; ValueError if the markers are missing."""
    q_at = text.find(_QUESTION)
    if q_at < 0:
        raise ValueError("no 'Question:' section in the prompt")
    # The first "Solution:" header after the question: solutions quote "Solution:" more often than questions do.
    s_at = text.find(_SOLUTION, q_at + len(_QUESTION))
    if s_at < 0:
        raise ValueError("no 'Solution:' section after the question")
    question = text[q_at + len(_QUESTION) : s_at].strip()
    solution = text[s_at + len(_SOLUTION) :].strip()
    if not question:
        raise ValueError("empty question")
    if not solution:
        raise ValueError("empty solution")
    return question, solution


def strip_critique_prefix(text: str) -> str:
    text = text.lstrip()
    return text[len(_CRITIQUE_PREFIX) :] if text.startswith(_CRITIQUE_PREFIX) else text


def _from_messages(row: dict[str, Any]) -> tuple[str, str, str]:
    messages = row.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError("'messages' is not a list of {role, content} objects")
    user = [m.get("content") for m in messages if m.get("role") == "user"]
    assistant = [m.get("content") for m in messages if m.get("role") == "assistant"]
    if len(user) != 1 or len(assistant) != 1:
        raise ValueError(f"expected one user and one assistant turn, got {len(user)} and {len(assistant)}")
    if not isinstance(user[0], str) or not isinstance(assistant[0], str):
        raise ValueError("message content is not text")
    question, solution = split_prompt(user[0])
    return question, solution, strip_critique_prefix(assistant[0])


def _from_alpaca(row: dict[str, Any]) -> tuple[str, str, str]:
    parts = [row.get("instruction"), row.get("input")]
    if not isinstance(row.get("output"), str) or not all(p is None or isinstance(p, str) for p in parts):
        raise ValueError("'instruction', 'input' and 'output' must be text")
    question, solution = split_prompt("\n\n".join(p for p in parts if p))
    return question, solution, strip_critique_prefix(row["output"])


def critique_row(question: str, response: str, critique: str, teacher: str) -> dict[str, Any]:
    """A row in the critique-row contract, for a critique that was not generated here."""
    return {
        # The critique is part of the id: an imported file merges critiques from
        # several unnamed teachers, so (question, response, teacher) is not unique.
        "id": content_id(question, response, teacher, critique),
        "response_id": content_id(question, response),
        "problem_id": content_id(question),
        "question": question,
        "response": response,
        "teacher": teacher,
        "prompt_version": PROMPT_VERSION,
        "critique": critique,
        "verdict": parse_verdict(critique).label,
        "gold_answer": None,
        "response_correct": None,
    }


def failure(record: Record, error: str, check: str) -> dict[str, Any]:
    """A row that could not be imported: where it was, why, and the raw row."""
    raw = record.raw if record.data is None else json.dumps(record.data, ensure_ascii=False, default=str)
    return {"file": record.path, "line": record.line, "error": error, "check": check, "raw": raw}


def record_failure_check(record: Record) -> str:
    """The quarantine reason of a record that did not parse (see cft.data.io.iter_records)."""
    error = record.error or ""
    if "not valid UTF-8" in error:
        return "not_utf8"
    if "expected a JSON object" in error:
        return "not_an_object"
    return "malformed_json"


def import_records(records: Iterable[Record], *, format: str, teacher: str) -> tuple[list[dict], list[dict]]:
    """Convert records; returns (rows, failures). Each row carries `_source` {file, line} for the caller to pop."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    rows: list[dict] = []
    failures: list[dict] = []
    for record in records:
        if record.data is None:
            failures.append(failure(record, record.error or "unreadable row", record_failure_check(record)))
            continue
        row_format = detect_format(record.data) if format == "auto" else format
        try:
            if row_format == "messages":
                question, response, critique = _from_messages(record.data)
            elif row_format == "alpaca":
                question, response, critique = _from_alpaca(record.data)
            else:
                raise ValueError("neither 'messages' nor 'instruction'/'input'/'output' fields")
        except ValueError as exc:
            failures.append(failure(record, f"{record.path}:{record.line}: {exc}", "unrecognised_row"))
            continue
        row = critique_row(question, response, critique, teacher)
        row["_source"] = {"file": record.path, "line": record.line}
        rows.append(row)
    return rows, failures


def import_critiques(path: str | Path, format: str = "auto") -> tuple[list[dict], list[dict]]:
    """Import a critique dataset (JSONL, Parquet or save_to_disk folder) without generation.

    Returns (rows in the critique-row contract, failures each with file, line, error, raw, check).
    """
    path = Path(path)
    rows, failures = import_records(read_source_records(path), format=format, teacher=f"imported:{path.stem}")
    for row in rows:
        row.pop("_source")
    return rows, failures
