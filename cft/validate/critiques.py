"""Validate critique rows: every row ends in exactly one of clean or quarantine.

Column-level expectations run in Great Expectations (`suite.critique_suite`
through `gx_adapter`); the conclusion parse, normalisation, policies and the
choice of which duplicate to keep are plain Python (`checks`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cft.data.io import DataError, Record, write_json, write_jsonl
from cft.validate import checks
from cft.validate.quarantine import entry_from_failure, failure_counts, quarantine_entry, write_quarantine
from cft.validate.suite import CRITIQUE_TEXT, DEDUP_KEY, RESPONSE_CORRECT, VERDICT, critique_suite

SUITE_NAME = "critiques"


class ValidationFailed(DataError):
    """Too few rows passed validation; the message names the file, the rate and the top reasons."""


@dataclass
class ValidationResult:
    """Clean rows (critique normalised, verdict re-parsed), quarantine entries, summary, Data Docs index."""

    clean: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    summary: dict[str, Any]
    docs_index: Path | None = None


def _check_options(conclusion_policy: str, consistency_policy: str, min_chars: int, max_chars: int) -> None:
    if conclusion_policy not in checks.CONCLUSION_POLICIES:
        raise ValueError(f"conclusion_policy must be one of {checks.CONCLUSION_POLICIES}, got {conclusion_policy!r}")
    if consistency_policy not in checks.CONSISTENCY_POLICIES:
        raise ValueError(f"consistency_policy must be one of {checks.CONSISTENCY_POLICIES}, got {consistency_policy!r}")
    if not 0 <= min_chars <= max_chars:
        raise ValueError(f"need 0 <= min_chars <= max_chars, got {min_chars} and {max_chars}")


def validate_critiques(
    rows: Sequence[dict[str, Any]],
    *,
    min_chars: int,
    max_chars: int,
    conclusion_policy: str = "normalize",
    consistency_policy: str = "tag",
    report_dir: str | Path,
    sources: Sequence[dict[str, Any] | None] | None = None,
    prequarantined: Sequence[dict[str, Any]] = (),
    build_docs: bool = True,
) -> ValidationResult:
    """Split critique rows into clean and quarantined, write the summary and Data Docs.

    `sources` gives {file, line} per row when known; `prequarantined` are entries
    for input that never became a row (malformed lines): they count as input.
    Data Docs go to report_dir/data_docs/ unless build_docs is False.
    """
    _check_options(conclusion_policy, consistency_policy, min_chars, max_chars)
    report_dir = Path(report_dir)
    sources = list(sources) if sources is not None else [None] * len(rows)
    if len(sources) != len(rows):
        raise ValueError(f"got {len(sources)} sources for {len(rows)} rows")

    quarantine: list[dict[str, Any]] = list(prequarantined)
    objects = [(row, src) for row, src in zip(rows, sources, strict=True) if isinstance(row, dict)]
    for row, src in zip(rows, sources, strict=True):
        if not isinstance(row, dict):
            quarantine.append(quarantine_entry(row, src, ["not_an_object"], {"type": type(row).__name__}))

    clean, row_entries, stats, docs_index = _validate_objects(
        [r for r, _ in objects],
        [s for _, s in objects],
        min_chars=min_chars,
        max_chars=max_chars,
        conclusion_policy=conclusion_policy,
        consistency_policy=consistency_policy,
        docs_dir=report_dir / "data_docs" if build_docs else None,
    )
    quarantine += row_entries
    n_input = len(rows) + len(prequarantined)
    # The one promise of this stage: no row is lost and none is counted twice.
    assert len(clean) + len(quarantine) == n_input, (len(clean), len(quarantine), n_input)

    summary = _summary(clean, quarantine, n_input, stats, conclusion_policy, consistency_policy, min_chars, max_chars)
    summary["docs_index"] = str(docs_index) if docs_index else None
    write_json(report_dir / "validation_summary.json", summary)
    return ValidationResult(clean, quarantine, summary, docs_index)


def _validate_objects(
    rows: list[dict[str, Any]],
    sources: list[dict[str, Any] | None],
    *,
    min_chars: int,
    max_chars: int,
    conclusion_policy: str,
    consistency_policy: str,
    docs_dir: Path | None,
) -> tuple[list[dict], list[dict], dict[str, Any], Path | None]:
    n = len(rows)
    if n == 0:
        return [], [], {"normalized": {}, "consistency_flagged": 0, "consistency_known": 0, "gx": None}, None
    from cft.validate.gx_adapter import run_suite

    conclusions = [checks.check_conclusion(row.get("critique"), conclusion_policy) for row in rows]
    keys = [checks.dedup_key(row, i) for i, row in enumerate(rows)]
    columns: dict[str, list[Any]] = {
        "question": [row.get("question") for row in rows],
        "response": [row.get("response") for row in rows],
        "critique": [row.get("critique") for row in rows],
        "response_correct_raw": [row.get("response_correct") for row in rows],
        CRITIQUE_TEXT: [c.text for c in conclusions],
        VERDICT: [c.label for c in conclusions],
        RESPONSE_CORRECT: [checks.bool_or_none(row.get("response_correct")) for row in rows],
    }
    for j, name in enumerate(DEDUP_KEY):
        columns[name] = [key[j] for key in keys]
    specs = critique_suite(min_chars=min_chars, max_chars=max_chars)
    outcome = run_suite(columns, specs, suite_name=SUITE_NAME, docs_dir=docs_dir)

    failed: list[list[str]] = [[] for _ in range(n)]
    details: list[dict[str, Any]] = [{} for _ in range(n)]
    inconsistent = outcome.failures.get("verdict_inconsistent", set())
    for spec in specs:
        if spec.check == "duplicate":
            continue  # resolved last: which row of a group is kept depends on the other checks
        for i in sorted(outcome.failures.get(spec.check, ())):
            if spec.check == "verdict_inconsistent":
                details[i]["verdict"] = conclusions[i].label
                details[i]["response_correct"] = rows[i].get("response_correct")
                if consistency_policy != "drop":
                    continue
            if spec.check == "conclusion_format" and conclusions[i].failed:
                continue  # the parse already names the precise issue(s)
            if spec.check in ("too_short", "too_long"):
                details[i]["critique_chars"] = len(conclusions[i].text or "")
            if spec.check.startswith("wrong_type:"):
                name = spec.check.split(":", 1)[1]
                details[i][f"{name}_type"] = type(rows[i].get(name)).__name__
            failed[i].append(spec.check)
    for i, conclusion in enumerate(conclusions):
        if conclusion.failed:
            failed[i][:0] = list(conclusion.failed)
            details[i]["conclusion_issues"] = list(conclusion.failed)
        elif conclusion.text is not None and conclusion.label is None and "verdict_label" not in failed[i]:
            failed[i].append("verdict_label")  # cannot happen with parse_verdict; never pass a row without a label
    for i, kept in checks.resolve_duplicates(outcome.failures.get("duplicate", set()), keys, failed).items():
        failed[i].append("duplicate")
        details[i]["duplicate_of"] = sources[kept] or {"position": kept}

    clean: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    normalized: Counter[str] = Counter()
    for i, row in enumerate(rows):
        if failed[i]:
            quarantine.append(quarantine_entry(row, sources[i], failed[i], details[i]))
            continue
        out = dict(row)
        conclusion = conclusions[i]
        out["critique"] = conclusion.text
        out["verdict"] = conclusion.label
        if conclusion.normalized_from:
            out["normalized_from"] = list(conclusion.normalized_from)
            normalized.update(conclusion.normalized_from)
        if consistency_policy == "tag" and checks.bool_or_none(row.get("response_correct")) is not None:
            out["verdict_consistent"] = i not in inconsistent
        clean.append(out)
    stats = {
        "normalized": dict(sorted(normalized.items())),
        "normalized_rows": sum(1 for c in clean if "normalized_from" in c),
        "consistency_flagged": len(inconsistent),
        "consistency_known": sum(v is not None for v in columns[RESPONSE_CORRECT]),
        "gx": {"statistics": outcome.statistics, "expectations": outcome.expectation_results},
    }
    return clean, quarantine, stats, outcome.docs_index


def _summary(clean, quarantine, n_input, stats, conclusion_policy, consistency_policy, min_chars, max_chars) -> dict:
    labels = Counter(row.get("verdict") for row in clean)
    n_labelled = labels["right"] + labels["wrong"]
    return {
        "n_input": n_input,
        "n_clean": len(clean),
        "n_quarantined": len(quarantine),
        "pass_rate": len(clean) / n_input if n_input else 0.0,
        "failures": failure_counts(quarantine),
        "verdict_balance": {
            "right": labels["right"],
            "wrong": labels["wrong"],
            "fraction_right": labels["right"] / n_labelled if n_labelled else None,
        },
        "consistency": {
            "policy": consistency_policy,
            "known": stats.get("consistency_known", 0),
            "flagged": stats.get("consistency_flagged", 0),
        },
        "normalized": {"rows": stats.get("normalized_rows", 0), "by_issue": stats.get("normalized", {})},
        "options": {
            "min_chars": min_chars,
            "max_chars": max_chars,
            "conclusion_policy": conclusion_policy,
            "consistency_policy": consistency_policy,
        },
        "great_expectations": stats.get("gx"),
    }


def load_critique_rows(in_path: str | Path) -> tuple[list[dict], list[dict | None], list[dict]]:
    """Rows of any critique file (critique-row contract, messages or Alpaca), their sources, and
    quarantine entries for lines that never became a row. Raises DataError on an empty file."""
    from cft.data.importers import detect_format, import_records, read_source_records, record_failure_check

    in_path = Path(in_path)
    records: list[Record] = list(read_source_records(in_path))
    if not records:
        raise DataError(f"{in_path}: no rows to validate (the file is empty)")
    first = next((r.data for r in records if r.data is not None), None)
    file_format = detect_format(first) if first is not None else None
    if file_format in ("messages", "alpaca"):
        rows, failures = import_records(records, format=file_format, teacher=f"imported:{in_path.stem}")
        sources = [row.pop("_source") for row in rows]
        return rows, sources, [entry_from_failure(f) for f in failures]
    rows, sources, rejected = [], [], []
    for record in records:
        source = {"file": record.path, "line": record.line}
        if record.data is None:
            rejected.append(quarantine_entry(record.raw, source, [record_failure_check(record)], {"error": record.error}))
        else:
            rows.append(record.data)
            sources.append(source)
    return rows, sources, rejected


def validate_file(
    in_path: str | Path,
    out_dir: str | Path,
    *,
    min_chars: int,
    max_chars: int,
    conclusion_policy: str = "normalize",
    consistency_policy: str = "tag",
    min_pass_rate: float = 0.0,
    report_dir: str | Path | None = None,
) -> ValidationResult:
    """Validate any critique file; write clean.jsonl, quarantine.jsonl and summary.json to out_dir.

    Bad lines become quarantine entries, never exceptions. Raises DataError for an
    empty or missing file and ValidationFailed when the pass rate is below min_pass_rate
    (after writing the outputs, so the quarantine can be inspected).
    """
    _check_options(conclusion_policy, consistency_policy, min_chars, max_chars)
    if not 0.0 <= min_pass_rate <= 1.0:
        raise ValueError(f"min_pass_rate must be within [0, 1], got {min_pass_rate}")
    out_dir = Path(out_dir)
    rows, sources, rejected = load_critique_rows(in_path)
    result = validate_critiques(
        rows,
        min_chars=min_chars,
        max_chars=max_chars,
        conclusion_policy=conclusion_policy,
        consistency_policy=consistency_policy,
        report_dir=report_dir if report_dir is not None else out_dir,
        sources=sources,
        prequarantined=rejected,
    )
    result.summary["input"] = str(in_path)
    result.summary["min_pass_rate"] = min_pass_rate
    write_jsonl(out_dir / "clean.jsonl", result.clean)
    write_quarantine(out_dir / "quarantine.jsonl", result.quarantine)
    write_json(out_dir / "summary.json", result.summary)
    if result.summary["pass_rate"] < min_pass_rate:
        top = sorted(result.summary["failures"].items(), key=lambda kv: -kv[1])[:5]
        reasons = ", ".join(f"{name}: {count}" for name, count in top) or "none"
        raise ValidationFailed(
            f"{in_path}: pass rate {result.summary['pass_rate']:.1%} is below the minimum {min_pass_rate:.1%} "
            f"({result.summary['n_clean']} of {result.summary['n_input']} rows clean; top failures: {reasons}); "
            f"see {out_dir / 'quarantine.jsonl'}"
        )
    return result
