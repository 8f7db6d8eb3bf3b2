"""Adapters from source file formats to one `Problem` row.

Every benchmark and problem source names its fields differently and encodes the
gold answer its own way (GSM8K's `#### 18`, Minerva's `\\boxed{}` inside the
solution, OlympiadBench's list of `$...$` strings, AMC's floats). Each adapter
knows one format; everything downstream sees only `Problem`.

Gold answers leave here as readable LaTeX that the grader (`cft.evaluate.answers`)
reads as the benchmark means it:

- Minerva and TheoremQA write numbers as Python does: `4.5e33` becomes
  `4.5 \\times 10^{33}` (math-verify would read `e` as Euler's number), `-1./3`
  becomes `-\\frac{1}{3}`;
- OlympiadBench: several answers are joined by ", ", which the grader takes as an
  unordered set (OlympiadBench's own judge pairs answers in any order, and some
  golds list them in another order than the question); the `unit` field is
  appended (`45 \\text{ minute}`, `4.2\\%`, `90^{\\circ}`), `%` becomes `\\%`;
- a source value that cannot be read this way is repaired only from the table
  `GOLD_REPAIRS` (each entry says why) or, for a file we do not ship, read as
  well as possible; either way `load_problems` reports it with file and line
  (`SourceNote`), so nothing changes silently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cft.data.ids import content_id
from cft.data.io import DataError, iter_records
from cft.evaluate.extract import last_boxed
from cft.evaluate.numbers import latex_number

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """One problem with its gold answer; `id` is a content hash of source and question."""

    id: str
    source: str
    question: str
    gold_answer: str
    solution: str | None


class RowError(ValueError):
    """A row lacks a field or has a bad value; `load_problems` adds file and line."""


@dataclass(frozen=True)
class SourceNote:
    """A source value that could not be read as it stands, and the gold answer used instead."""

    path: str
    line: int
    field: str
    original: str
    gold: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: field '{self.field}' {self.original!r}: {self.reason}; gold answer {self.gold!r}"


# (question, gold answer, reference solution or None[, repairs: (field, original, reason) ...])
ParsedRow = tuple[str, str, str | None] | tuple[str, str, str | None, tuple[tuple[str, str, str], ...]]

# Source values that cannot be read as they stand, keyed by (format, value): the
# gold answer to use and why. Matched on the exact value, so a corrected source
# stops using its entry.
GOLD_REPAIRS: dict[tuple[str, str], tuple[str, str]] = {
    ("olympiadbench", "$221,$8$"): (
        "221, 8",
        "unbalanced '$' (the question asks for m and n with m/n = 221/8; read as the two answers)",
    ),
    (
        "olympiadbench",
        "$f(x)=a x+b$, where $b$ is an arbitrary integer, and $a$ is an arbitrary positive integer with $\\mho(a)=0$",
    ): (
        "f(x)=a x+b",
        "prose between the '$' spans (conditions on a and b) cannot be graded; the formula is kept",
    ),
    ("minerva_math", "np.arcsin(10/13)"): ("\\arcsin\\left(\\frac{10}{13}\\right)", "a NumPy call, not LaTeX"),
}


@dataclass(frozen=True)
class Adapter:
    """A named row parser; `options` lists the keyword options it accepts."""

    name: str
    parse_row: Callable[..., ParsedRow]
    options: tuple[str, ...] = ()
    required_options: tuple[str, ...] = ()


# --- field helpers -----------------------------------------------------------


def _field(row: dict[str, Any], name: str) -> Any:
    if row.get(name) is None:
        raise RowError(f"missing required field '{name}'")
    return row[name]


def _text(row: dict[str, Any], name: str) -> str:
    """A non-blank string field, stripped."""
    value = _field(row, name)
    if not isinstance(value, str):
        raise RowError(f"field '{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RowError(f"field '{name}' is empty")
    return value.strip()


def _optional_text(row: dict[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, list):  # OlympiadBench: alternative solutions; keep the first
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
        return value.strip() if value else None
    if not isinstance(value, str):
        raise RowError(f"field '{name}' must be a string, got {type(value).__name__}")
    return value.strip()


def format_number(value: float | int) -> str:
    """27.0 -> "27", 2.5 -> "2.5": integral floats lose the ".0" a model never writes."""
    if isinstance(value, bool):
        raise RowError(f"expected a number, got {value!r}")
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _answer_text(row: dict[str, Any], name: str) -> str:
    """A gold answer given as a string or a number."""
    value = _field(row, name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise RowError(f"field '{name}' is empty or not a string/number: {value!r}")


def _join(first: str, second: str) -> str:
    """Join SVAMP/ASDiv body and question with exactly one space."""
    return f"{first.strip()} {second.strip()}"


# --- benchmark adapters ------------------------------------------------------


def _math(row: dict[str, Any]) -> ParsedRow:
    # MATH-500 and the MATH validation split: problem / solution / answer (LaTeX).
    return _text(row, "problem"), _text(row, "answer"), _optional_text(row, "solution")


def _gsm8k(row: dict[str, Any]) -> ParsedRow:
    answer = _text(row, "answer")
    if "####" not in answer:
        raise RowError("field 'answer' has no '#### <number>' line")
    gold = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not gold:
        raise RowError("field 'answer' has an empty '####' answer")
    return _text(row, "question"), gold, answer


_STRAY_DOLLARS = re.compile(r"\$\s*\$")


def _minerva(row: dict[str, Any]) -> ParsedRow:
    solution = _text(row, "solution")
    boxed = last_boxed(solution)
    if not boxed or not boxed.strip():
        raise RowError("field 'solution' has no \\boxed{} answer")
    boxed = boxed.strip()
    repairs = []
    if ("minerva_math", boxed) in GOLD_REPAIRS:
        gold, reason = GOLD_REPAIRS["minerva_math", boxed]
        repairs.append(("solution", boxed, reason))
    elif _STRAY_DOLLARS.search(boxed):
        gold = _STRAY_DOLLARS.sub(" ", boxed)
        repairs.append(("solution", boxed, "'$ $' inside the boxed answer (a line break in the source) removed"))
    else:
        gold = latex_number(boxed)
    return _text(row, "problem"), gold, solution, tuple(repairs)


_DOLLAR_SPAN = re.compile(r"\$([^$]*)\$")
_DOLLAR_SPANS = re.compile(r"\s*\$[^$]*\$\s*(?:,\s*\$[^$]*\$\s*)*\.?\s*")  # "$69$,$84$", "$(0,1)$."
_EDGE_SPACING = re.compile(r"^(?:\\q?quad\s*)+|(?:\s*\\q?quad)+$")
_UNIT_WORD = re.compile(r"([A-Za-z][A-Za-z/ ]*?)\s*(\^\{?\d\}?)?")


def _olympiad_parts(item: str) -> tuple[list[str], str | None]:
    """(answers, why it could not be parsed or None) of one final_answer string."""
    if "$" not in item:
        return [item.strip()], None
    if _DOLLAR_SPANS.fullmatch(item):
        return [s.strip() for s in _DOLLAR_SPAN.findall(item) if s.strip()], None
    spans = [s.strip() for s in _DOLLAR_SPAN.findall(item) if s.strip()]
    return (spans or [item.replace("$", "").strip()]), "not a list of $...$ answers; read the $...$ spans only"


def _with_unit(answer: str, unit: str | None) -> str:
    """OlympiadBench's `unit` field on the answer, as a model would write it."""
    if not unit:
        return answer
    unit = unit.strip().strip("$").strip()
    if unit == "%":
        return answer if answer.endswith("%") else f"{answer}\\%"
    if unit in ("^{\\circ}", "^\\circ", "\\circ"):
        return answer if "\\circ" in answer else f"{answer}^{{\\circ}}"
    match = _UNIT_WORD.fullmatch(unit)
    if match is None:
        raise RowError(f"field 'unit' is not a unit: {unit!r}")
    power = match.group(2) or ""
    return f"{answer} \\text{{ {match.group(1).strip()}}}{power}"


def _olympiad_gold(items: Any, unit: Any) -> tuple[str, tuple[tuple[str, str, str], ...]]:
    if not isinstance(items, list) or not items:
        raise RowError("field 'final_answer' must be a non-empty list")
    if unit is not None and not isinstance(unit, str):
        raise RowError(f"field 'unit' must be a string, got {type(unit).__name__}")
    parts, repairs = [], []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise RowError(f"field 'final_answer' holds a bad entry: {item!r}")
        if ("olympiadbench", item) in GOLD_REPAIRS:
            gold, reason = GOLD_REPAIRS["olympiadbench", item]
            repairs.append(("final_answer", item, reason))
            parts.append(gold)
            continue
        answers, problem = _olympiad_parts(item)
        if problem:
            repairs.append(("final_answer", item, problem))
        for answer in answers:
            answer = _EDGE_SPACING.sub("", answer).strip()
            answer = re.sub(r"(?<!\\)%", r"\\%", latex_number(answer))
            parts.append(_with_unit(answer, unit))
    return ", ".join(parts), tuple(repairs)


def _olympiadbench(row: dict[str, Any]) -> ParsedRow:
    gold, repairs = _olympiad_gold(_field(row, "final_answer"), row.get("unit"))
    return _text(row, "question"), gold, _optional_text(row, "solution"), repairs


def _aime24(row: dict[str, Any]) -> ParsedRow:
    gold = _answer_text(row, "answer")
    if gold.isdigit():
        gold = str(int(gold))  # "025" -> "25": models answer without the zero padding
    return _text(row, "problem"), gold, _optional_text(row, "solution")


def _amc23(row: dict[str, Any]) -> ParsedRow:
    return _text(row, "question"), _answer_text(row, "answer"), None


def _theoremqa(row: dict[str, Any]) -> ParsedRow:
    return _text(row, "problem"), latex_number(_answer_text(row, "answer")), None


# --- problem-source adapters -------------------------------------------------


def _svamp(row: dict[str, Any]) -> ParsedRow:
    return _join(_text(row, "Body"), _text(row, "Question")), _answer_text(row, "Answer"), None


_TRAILING_UNIT = re.compile(r"^(.*?\S)\s+\([^()]*\)$")


def _asdiv(row: dict[str, Any]) -> ParsedRow:
    answer = _answer_text(row, "answer")
    # "9 (apples)" -> "9"; "-(1/3)" has no space before "(" and stays.
    match = _TRAILING_UNIT.match(answer)
    gold = match.group(1).strip() if match else answer
    return _join(_text(row, "body"), _text(row, "question")), gold, None


def _generic_jsonl(
    row: dict[str, Any], *, question_field: str, answer_field: str, solution_field: str | None = None
) -> ParsedRow:
    solution = _optional_text(row, solution_field) if solution_field else None
    return _text(row, question_field), _answer_text(row, answer_field), solution


ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in [
        Adapter("math-500", _math),
        Adapter("gsm8k", _gsm8k),
        Adapter("minerva_math", _minerva),
        Adapter("olympiadbench", _olympiadbench),
        Adapter("aime24", _aime24),
        Adapter("amc23", _amc23),
        Adapter("theoremqa", _theoremqa),
        Adapter("math", _math),
        Adapter("svamp", _svamp),
        Adapter("asdiv", _asdiv),
        Adapter(
            "jsonl",
            _generic_jsonl,
            options=("question_field", "answer_field", "solution_field"),
            required_options=("question_field", "answer_field"),
        ),
    ]
}

# The seven evaluation sets, as file names under sources/benchmarks/.
BENCHMARK_FILES: dict[str, str] = {
    "math-500": "math-500.jsonl",
    "minerva_math": "minerva_math.jsonl",
    "gsm8k": "gsm8k.jsonl",
    "olympiadbench": "olympiadbench.jsonl",
    "aime24": "aime24.jsonl",
    "amc23": "amc23.jsonl",
    "theoremqa": "theoremqa.jsonl",
}

# The shipped problem sources, as file names under sources/problems/.
PROBLEM_FILES: dict[str, str] = {
    "math": "math-500-validation.jsonl",
    "svamp": "svamp.jsonl",
    "asdiv": "asdiv.jsonl",
}


def get_adapter(format: str) -> Adapter:
    """The adapter for `format`; ValueError listing the known ones otherwise."""
    try:
        return ADAPTERS[format]
    except KeyError:
        raise ValueError(f"unknown problem format '{format}'; known: {', '.join(sorted(ADAPTERS))}") from None


def load_problems(
    path: str | Path,
    format: str,
    limit: int | None = None,
    *,
    source: str | None = None,
    notes: list[SourceNote] | None = None,
    **field_options: str,
) -> list[Problem]:
    """Read a problem or benchmark file through the adapter for `format`.

    `limit` keeps the first N rows (file order, so deterministic). `source`
    names the rows' origin (default: the format name, or the file stem for the
    generic `jsonl` format). A bad row raises DataError naming file, line and field.
    A value read only after a repair (see `GOLD_REPAIRS`) is appended to `notes`
    as a `SourceNote` (file, line, field, value, reason), or logged as a warning
    when no list is given.
    """
    adapter = get_adapter(format)
    unknown = sorted(set(field_options) - set(adapter.options))
    if unknown:
        accepted = ", ".join(adapter.options) or "none"
        raise ValueError(f"format '{format}' does not take option(s) {', '.join(unknown)}; accepted: {accepted}")
    missing = [o for o in adapter.required_options if not field_options.get(o)]
    if missing:
        raise ValueError(f"format '{format}' needs option(s): {', '.join(missing)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    source = source or (Path(path).stem if format == "jsonl" else format)

    problems: list[Problem] = []
    if limit == 0:
        return problems
    for record in iter_records(path):
        if record.error:
            raise DataError(record.error)
        try:
            parsed = adapter.parse_row(record.data, **field_options)
        except RowError as exc:
            raise DataError(f"{record.path}:{record.line}: {exc}") from None
        question, gold, solution = parsed[:3]
        for field, original, reason in parsed[3] if len(parsed) > 3 else ():
            note = SourceNote(str(record.path), record.line, field, original, gold, reason)
            if notes is None:
                log.warning("%s", note)
            else:
                notes.append(note)
        problems.append(Problem(content_id(source, question), source, question, gold, solution))
        if limit is not None and len(problems) >= limit:
            break
    return problems
