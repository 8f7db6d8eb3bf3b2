"""Per-row checks Great Expectations cannot express, and the column values it needs.

Pure functions: the conclusion check (parse, normalise or reject), the values
handed to GX per row, and resolving which duplicate of a group is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cft.critique.verdict import parse_verdict

CONCLUSION_POLICIES = ("normalize", "reject")
CONSISTENCY_POLICIES = ("drop", "keep", "tag")
IMPORTED_TEACHER_PREFIX = "imported:"


@dataclass(frozen=True)
class ConclusionCheck:
    """The outcome of the conclusion check on one critique."""

    text: str | None  # the critique to validate and keep (normalised when the policy allows)
    label: str | None  # right / wrong as parsed from `text`, None when absent or ambiguous
    failed: tuple[str, ...]  # issue codes that quarantine the row
    normalized_from: tuple[str, ...]  # issue codes fixed by rewriting the final line


def check_conclusion(critique: Any, policy: str) -> ConclusionCheck:
    """Parse the final conclusion; with 'normalize' rewrite the variants that can be fixed."""
    if policy not in CONCLUSION_POLICIES:
        raise ValueError(f"conclusion_policy must be one of {CONCLUSION_POLICIES}, got {policy!r}")
    if not isinstance(critique, str):
        return ConclusionCheck(None, None, (), ())  # reported as missing_field / wrong_type
    parsed = parse_verdict(critique)
    if not parsed.issues:
        return ConclusionCheck(critique, parsed.label, (), ())
    if policy == "normalize" and parsed.normalized is not None:
        return ConclusionCheck(parsed.normalized, parsed.label, (), parsed.issues)
    return ConclusionCheck(critique, parsed.label, parsed.issues, ())


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def dedup_key(row: dict[str, Any], position: int) -> tuple[str, str, str, str]:
    """What makes two rows the same critique job: (question, response, teacher[, critique]).

    An imported file's teacher is only its file name and may stand for several
    real teachers (DSR-CFT-p0 has 7 critiques per response), so there the
    critique text joins the key. A row without text fields gets a key of its own:
    it is quarantined for that already.
    """
    question, response = row.get("question"), row.get("response")
    if not isinstance(question, str) or not isinstance(response, str):
        return (f"\0row{position}", "", "", "")
    teacher = row.get("teacher")
    teacher = teacher if isinstance(teacher, str) else ""
    critique = row.get("critique")
    by_critique = teacher.startswith(IMPORTED_TEACHER_PREFIX) and isinstance(critique, str)
    return (question, response, teacher, critique if by_critique else "")


def resolve_duplicates(
    flagged: set[int], keys: Sequence[tuple[str, ...]], other_failures: Sequence[Sequence[str]]
) -> dict[int, int]:
    """Positions to quarantine as `duplicate` (mapped to the kept row) among rows GX found non-unique.

    In each group of equal keys the first row that passes every other check is
    kept; rows after it are duplicates. Rows before it failed something else and
    are quarantined for that, not as duplicates of a later row.
    """
    groups: dict[tuple[str, ...], list[int]] = {}
    for position in sorted(flagged):
        groups.setdefault(tuple(keys[position]), []).append(position)
    duplicates: dict[int, int] = {}
    for positions in groups.values():
        kept = next((p for p in positions if not other_failures[p]), None)
        if kept is not None:
            duplicates.update((p, kept) for p in positions if p > kept)
    return duplicates
