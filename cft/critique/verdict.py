"""Parse the final verdict of a critique and detect the ways teachers get it wrong.

A canonical critique ends with exactly one `Conclusion: right [END]` or
`Conclusion: wrong [END]`. Real teacher output (sources/critiques/) also has
bold or heading markdown around it, label synonyms, a missing `[END]`, text after
it, two of them, or none. `parse_verdict` names each problem separately and, when
the variant can be fixed without guessing, returns the critique rewritten with one
canonical final line.

Matching stays linear on multi-megabyte input: the main regex starts with a
literal, no two of its whitespace runs are adjacent, and the look-around at each
match is bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Label = Literal["right", "wrong"]
LABELS: tuple[str, ...] = ("right", "wrong")

CONCLUSION_RIGHT = "Conclusion: right [END]"
CONCLUSION_WRONG = "Conclusion: wrong [END]"

# Issue codes, in the order they are reported.
NO_CONCLUSION = "no_conclusion"
MULTIPLE_CONCLUSIONS = "multiple_conclusions"
LABEL_VARIANT = "label_variant"  # correct/incorrect/true/false, or "CONCLUSION:", "right[END]", "[end]"
MARKDOWN = "markdown"
MISSING_END = "missing_end"
NOT_AT_END = "not_at_end"
ISSUES: tuple[str, ...] = (NO_CONCLUSION, MULTIPLE_CONCLUSIONS, LABEL_VARIANT, MARKDOWN, MISSING_END, NOT_AT_END)

_SYNONYMS = {"right": "right", "correct": "right", "true": "right", "wrong": "wrong", "incorrect": "wrong", "false": "wrong"}

# "Conclusion" + optional bold + ":" + a one-word label on the same line, then
# optional [END] and closing bold. Prose such as "Conclusion: The student's
# solution is correct." is not a conclusion statement (the label must follow the colon).
# The pattern starts after the keyword's "C" (checked in Python with the word
# boundary), so it begins with a literal and re's fast substring search does the
# scanning: ~15x faster than \b + IGNORECASE. Each optional piece owns its leading
# whitespace, so no two whitespace runs are adjacent: a run of n spaces costs O(n).
_AFTER_KEYWORD = (
    r"(?P<b1>\*+)?[ \t]*:(?:[ \t]*(?P<b2>\*+))?[ \t]*"
    r"(?P<label>(?i:right|wrong|correct|incorrect|true|false))\b"
    r"(?:[ \t]*\.)?(?:[ \t]*(?P<b3>\*+))?(?:[ \t]*(?P<end>(?i:\[end\])))?(?:[ \t]*(?P<b4>\*+))?"
)
_CONCLUSION = re.compile("onclusion" + _AFTER_KEYWORD)
_CONCLUSION_ANY_CASE = re.compile("onclusion" + _AFTER_KEYWORD, re.IGNORECASE)  # for "CONCLUSION:"
# What may stand between the start of the line and "Conclusion" for the line to
# still be a conclusion line: headings, bullets, bold, list numbers.
_LINE_PREFIX = re.compile(r"[ \t]*(?:(?:[#>*+\-]|\d{1,3}[.):])[ \t]*){0,12}")
_MAX_PREFIX = 80  # a longer prefix is prose, not markup; bounds the per-match work


@dataclass(frozen=True)
class VerdictParse:
    """The parsed verdict: label (None when absent or ambiguous), issues, and a fix if one exists."""

    label: Label | None
    issues: tuple[str, ...]
    normalized: str | None

    @property
    def canonical(self) -> bool:
        return not self.issues


@dataclass(frozen=True)
class _Match:
    start: int  # where the conclusion line's markup prefix starts (or the match, if inline)
    end: int
    label: str  # canonical right/wrong
    markdown: bool
    has_end: bool
    whole_line: bool  # nothing but markup before it on its line and nothing after it
    spelled_canonically: bool  # keyword, spacing and [END] exactly as in CONCLUSION_RIGHT/WRONG


def format_conclusion(label: str) -> str:
    """The canonical final line for a verdict label ('right' or 'wrong')."""
    if label == "right":
        return CONCLUSION_RIGHT
    if label == "wrong":
        return CONCLUSION_WRONG
    raise ValueError(f"verdict label must be 'right' or 'wrong', got {label!r}")


def _line_start(text: str, pos: int) -> int | None:
    """Where pos's line starts; None if further back than the look-behind (then it is prose)."""
    window = max(0, pos - _MAX_PREFIX)
    newline = text.rfind("\n", window, pos)
    if newline >= 0:
        return newline + 1
    return 0 if window == 0 else None


def _rest_of_line(text: str, pos: int) -> str | None:
    """Text from pos to the end of its line; None if the line runs past the look-ahead.

    Bounded so that many conclusions on one huge line stay linear, not quadratic.
    """
    end = text.find("\n", pos, pos + _MAX_PREFIX)
    if end >= 0:
        return text[pos:end]
    return text[pos:] if len(text) - pos <= _MAX_PREFIX else None


def _spelled_canonically(text: str, keyword_at: int, m: re.Match[str]) -> bool:
    """True if "Conclusion", the label and "[END]" read exactly as the canonical line (bold aside)."""
    if text[keyword_at : m.start("label")].replace("*", "") != "Conclusion: ":
        return False
    if m.group("end") is None:
        return m.group("label") in LABELS
    return text[m.start("label") : m.end("end")] in ("right [END]", "wrong [END]")


def _find_conclusions(text: str) -> list[_Match]:
    found = []
    pattern = _CONCLUSION_ANY_CASE if "ONCLUSION" in text else _CONCLUSION
    for m in pattern.finditer(text):
        keyword_at = m.start() - 1
        if keyword_at < 0 or text[keyword_at] not in "cC":
            continue
        if keyword_at > 0 and (text[keyword_at - 1].isalnum() or text[keyword_at - 1] == "_"):
            continue  # "inconclusion": not the keyword
        line_start = _line_start(text, keyword_at)
        before = text[line_start : keyword_at] if line_start is not None else None
        own_line = before is not None and _LINE_PREFIX.fullmatch(before) is not None
        rest = _rest_of_line(text, m.end())
        start = line_start if own_line and line_start is not None else keyword_at
        if not own_line:  # inline "... **Conclusion: right**": take the opening bold along
            while start > max(0, keyword_at - 3) and text[start - 1] == "*":
                start -= 1
        bold = (start < keyword_at and not own_line) or any(m.group(g) for g in ("b1", "b2", "b3", "b4"))
        markup_prefix = own_line and before.strip() != ""  # type: ignore[union-attr]
        found.append(
            _Match(
                start=start,
                end=m.end(),
                label=_SYNONYMS[m.group("label").lower()],
                markdown=bold or markup_prefix,
                has_end=m.group("end") is not None,
                whole_line=own_line and rest is not None and rest.strip() == "",
                spelled_canonically=_spelled_canonically(text, keyword_at, m),
            )
        )
    return found


def parse_verdict(critique: str) -> VerdictParse:
    """Parse the final `Conclusion: right|wrong [END]` of a critique (pure, linear time)."""
    found = _find_conclusions(critique)
    if not found:
        return VerdictParse(None, (NO_CONCLUSION,), None)

    last = found[-1]
    issues: list[str] = []
    fixable = True
    label: str | None = last.label
    if len(found) > 1:
        issues.append(MULTIPLE_CONCLUSIONS)
        if len({m.label for m in found}) > 1:
            label, fixable = None, False  # which one the teacher meant is a guess
        elif not all(m.whole_line for m in found[:-1]):
            fixable = False  # an earlier one sits inside prose; cutting it would mangle the text
    if not last.spelled_canonically:
        issues.append(LABEL_VARIANT)
    if last.markdown:
        issues.append(MARKDOWN)
    if not last.has_end:
        issues.append(MISSING_END)
    trailing = critique[last.end :]
    if trailing.strip():
        issues.append(NOT_AT_END)
        fixable = False  # the text after it may qualify the verdict; dropping it is a guess

    if not issues:
        return VerdictParse(last.label, (), critique)  # type: ignore[arg-type]
    if not fixable or label is None:
        return VerdictParse(label, tuple(issues), None)  # type: ignore[arg-type]
    return VerdictParse(label, tuple(issues), _rewrite(critique, found, label, trailing))  # type: ignore[arg-type]


def _rewrite(critique: str, found: list[_Match], label: str, trailing: str) -> str:
    """Drop earlier whole-line conclusions, replace the last with the canonical line."""
    parts, pos = [], 0
    for m in found[:-1]:
        parts.append(critique[pos : m.start])
        line_end = critique.find("\n", m.end)
        pos = len(critique) if line_end < 0 else line_end + 1
    last = found[-1]
    parts.append(critique[pos : last.start])
    body = "".join(parts)
    if last.whole_line or not body.strip():
        body = body.rstrip() + ("\n\n" if body.strip() else "")
    return body + format_conclusion(label) + trailing
