"""Final-answer extraction from model output (pure: regexes only, no sympy).

Order of preference, as in the paper's evaluation: the last `\\boxed{}` (or
`\\fbox{}`), then "final answer is X" / "answer is X", then GSM8K's `#### X`,
then the last number in the text.
"""

from __future__ import annotations

import re

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_ANSWER_IS = re.compile(r"\b(?:final answer|answer)\s*(?:is\b|:)\s*:?\s*(?P<rest>[^\n]*)", re.IGNORECASE)
_HASHES = re.compile(r"####\s*(?P<rest>[^\n]*)")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def _braced(text: str, open_at: int, stop: int) -> str | None:
    """Content of the balanced {...} group whose "{" is at `open_at`; None if not closed before `stop`."""
    depth = 0
    for i in range(open_at, stop):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


_BOX_ARGUMENT = re.compile(r"\s*(\{)|[ \t]+([^\s$]+)")


def last_boxed(text: str) -> str | None:
    """Content of the last well-formed `\\boxed{...}` / `\\fbox{...}` / `\\boxed X` in `text`."""
    # A group still open where a later unclosed group starts can never close
    # (the later one keeps the depth up), so each scan stops there: linear time.
    stop = len(text)
    for match in reversed(list(_BOX_COMMAND.finditer(text))):
        argument = _BOX_ARGUMENT.match(text, match.end())
        if argument is None:  # "\boxedx" is another macro, or the text ended
            continue
        if argument.group(2) is not None:  # "\boxed 5"
            return argument.group(2)
        content = _braced(text, argument.start(1), stop)
        if content is not None:
            return content
        stop = min(stop, argument.start(1))
    return None


def strip_thousands(answer: str) -> str:
    """ "1,600" -> "1600"; "(1,2)" and "1,2,3" are left alone."""
    return answer.replace(",", "") if _THOUSANDS.fullmatch(answer) else answer


def clean_answer(answer: str) -> str:
    """Strip whitespace, surrounding math delimiters and a trailing period."""
    answer = _strip_periods(answer)
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            answer = answer[len(left) : len(answer) - len(right)].strip()
    return strip_thousands(_strip_periods(answer.strip("$")))


def _strip_periods(answer: str) -> str:
    """Drop whitespace and a sentence's final period ("27." -> "27"), not an ellipsis."""
    answer = answer.strip()
    while answer.endswith(".") and not answer.endswith(".."):
        answer = answer[:-1].rstrip()
    return answer


def _answer_phrase(rest: str) -> str:
    """The answer after "answer is": a leading $...$ span, else the rest of the sentence."""
    rest = rest.strip()
    if rest.startswith("$"):
        end = rest.find("$", 1)
        if end > 0:
            return rest[: end + 1]
    sentence = re.split(r"\.(?:\s|$)", rest, maxsplit=1)[0]
    return sentence


def extract_answer(text: str) -> str | None:
    """The model's final answer in `text`, cleaned; None when there is none."""
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed is not None and clean_answer(boxed):
        return clean_answer(boxed)
    for pattern in (_ANSWER_IS, _HASHES):
        matches = list(pattern.finditer(text))
        for match in reversed(matches):
            phrase = match.group("rest")
            if pattern is _ANSWER_IS:
                phrase = _answer_phrase(phrase)
            answer = clean_answer(phrase)
            if answer:
                return answer
    numbers = _NUMBER.findall(text)
    if numbers:
        return clean_answer(numbers[-1])
    return None


_TEXT_MACRO = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad|\\left|\\right|\s+")


def normalise_answer(answer: str) -> str:
    """A canonical string form for exact comparison and majority voting (not for display)."""
    answer = clean_answer(answer)
    answer = _TEXT_MACRO.sub(r"\1", answer)
    answer = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    answer = answer.replace("^{\\circ}", "").replace("^\\circ", "")
    answer = _SPACING.sub("", answer)
    return strip_thousands(answer.strip("$").rstrip(".")).lower()
