"""Final-answer extraction from model output (pure: regexes and index scans, no sympy).

Order of preference, as in the paper's evaluation:

1. Minerva's answer format, "The final answer is $X$. I hope it is correct."
   (its few-shot prompt asks for exactly this);
2. the last `\\boxed{}` (or `\\fbox{}`, `\\framebox{}`), together with the boxes
   just before it when only "and", commas or `x =` separate them: a question
   with several answers gets them all, joined by ", ";
3. the last "final answer is X" / "Answer: X", markdown or not
   (`**Final Answer:** 130`, a `## Final Answer` header over the answer);
4. GSM8K's `#### X`;
5. the last number in the text.

Every step is linear in the length of the text: this runs in the parent
process on every response, before any time limit applies.
"""

from __future__ import annotations

import re

from cft.evaluate.answers import clean_answer, normalise_answer, strip_thousands

__all__ = ["clean_answer", "extract_answer", "last_boxed", "normalise_answer", "strip_thousands"]

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox|framebox)")
_BOX_ARGUMENT = re.compile(r"(?:\[[^\]\n]{0,40}\])*\s*(\{)|[ \t]+([^\s$]+)")
_BOX_GAP = re.compile(
    r"[\s$,;:&]*"
    r"(?:(?:and|or|\\q?quad|\\text\{\s*(?:and|or|,)\s*\}|\\\\)[\s$,;:&]*)?"
    r"(?:\\?[A-Za-z]+(?:_\{?\w{1,4}\}?)?\s*=\s*)?"
)
MAX_BOX_GAP = 40
MAX_BOXES = 32  # answers in one chain of boxes; more is not a final answer
_MINERVA_END = re.compile(r"I hope it is correct", re.IGNORECASE)
_MINERVA_START = re.compile(r"final answer is", re.IGNORECASE)
_MARKER = re.compile(
    r"\b(?:final answer|answer)\s*(?:(?:\*\*|__)\s*)?(?:is\b|:)"
    r"|^[ \t]*(?:(?:#{1,6}|\*\*|__)[ \t]*)?(?:final answer|answer)[ \t*_:]*$",
    re.IGNORECASE | re.MULTILINE,
)
_HASHES = re.compile(r"####")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_MARKDOWN_EDGES = " \t*_:#"
MAX_TRIES = 5  # markers examined, latest first


def _braced(text: str, open_at: int, stop: int) -> int | None:
    """Index of the "}" closing the "{" at `open_at`; None if not closed before `stop`."""
    depth = 0
    for i in range(open_at, stop):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _boxes_from_last(text: str):
    """(start, end, content) of well-formed boxes, the last first.

    A group still open where a later unclosed group starts can never close
    (the later one keeps the depth up), so each scan stops there: linear time.
    """
    stop = len(text)
    for match in reversed(list(_BOX_COMMAND.finditer(text))):
        argument = _BOX_ARGUMENT.match(text, match.end())
        if argument is None:  # "\boxedx" is another macro, or the text ended
            continue
        if argument.group(2) is not None:  # "\boxed 5"
            yield match.start(), argument.end(), argument.group(2)
            continue
        close = _braced(text, argument.start(1), stop)
        if close is None:
            stop = min(stop, argument.start(1))
            continue
        yield match.start(), close + 1, text[argument.start(1) + 1 : close]


def last_boxed(text: str) -> str | None:
    """Content of the last well-formed `\\boxed{...}` / `\\fbox{...}` / `\\boxed X` in `text`."""
    return next((content for _, _, content in _boxes_from_last(text)), None)


def boxed_answers(text: str) -> list[str]:
    """The last box's content, preceded by those of boxes joined to it by "and", "," or `x =`."""
    chain: list[str] = []
    chain_start = None
    for start, end, content in _boxes_from_last(text):
        if chain_start is not None:
            if end > chain_start:  # a box around the chain: \boxed{\boxed{5}}
                break
            gap = text[end:chain_start]
            if len(gap) > MAX_BOX_GAP or not _BOX_GAP.fullmatch(gap):
                break
        answer = clean_answer(content)
        if answer:  # repeated values stay: "a = \\boxed{-2}, b = \\boxed{-2}"
            chain.insert(0, answer)
        chain_start = start
        if len(chain) >= MAX_BOXES:
            break
    return chain


def _find_closing(text: str, right: str, start: int) -> int:
    """Index of the first `right` at or after `start` that is not escaped (`\\$` is a dollar sign)."""
    while True:
        end = text.find(right, start)
        if end <= 0 or text[end - 1] != "\\" or right != "$":
            return end
        start = end + 1


def _display_block(rest: str) -> str | None:
    """The math at the start of `rest`: $...$, $$...$$, \\[...\\] or \\(...\\)."""
    for left, right in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if rest.startswith(left):
            end = _find_closing(rest, right, len(left))
            if end > 0:
                return rest[: end + len(right)]
    return None


def _answer_phrase(rest: str) -> str:
    """The answer after a marker: a leading math span, else the rest of the line up to the sentence's end."""
    rest = rest.lstrip(_MARKDOWN_EDGES + "\n")
    block = _display_block(rest)
    if block is not None:
        return block
    line = rest.split("\n", 1)[0]
    sentence = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]
    return sentence.strip(_MARKDOWN_EDGES)


def _after_marker(text: str, end: int) -> str:
    """Text after a marker; a marker alone on its line (a header) takes the next lines."""
    line_end = text.find("\n", end)
    line = text[end : line_end if line_end >= 0 else len(text)]
    if line.strip(_MARKDOWN_EDGES) or line_end < 0:
        return line
    return text[line_end + 1 :].lstrip()


def _from_markers(text: str) -> str | None:
    for match in list(_MARKER.finditer(text))[::-1][:MAX_TRIES]:
        answer = clean_answer(_answer_phrase(_after_marker(text, match.end())))
        if answer:
            return answer
    return None


def _minerva_answer(text: str) -> str | None:
    """X in Minerva's "The final answer is X. I hope it is correct." (the last one, on one line)."""
    ends = [m.start() for m in _MINERVA_END.finditer(text)]
    if not ends:
        return None
    starts = [m.end() for m in _MINERVA_START.finditer(text, 0, ends[-1])]
    if not starts or "\n" in text[starts[-1] : ends[-1]]:
        return None
    phrase = text[starts[-1] : ends[-1]].strip().rstrip(".").strip()
    boxed = last_boxed(phrase)  # "The final answer is $\\boxed{5}$. I hope it is correct."
    return clean_answer(boxed if boxed is not None else phrase) or None


def extract_answer(text: str) -> str | None:
    """The model's final answer in `text`, cleaned; None when there is none."""
    if not text:
        return None
    answer = _minerva_answer(text)
    if answer:
        return answer
    boxes = boxed_answers(text)
    if boxes:
        return ", ".join(boxes)
    answer = _from_markers(text)
    if answer:
        return answer
    for match in list(_HASHES.finditer(text))[::-1][:MAX_TRIES]:
        answer = clean_answer(_answer_phrase(_after_marker(text, match.end())))
        if answer:
            return answer
    numbers = _NUMBER.findall(text)
    if numbers:
        return clean_answer(numbers[-1])
    return None
