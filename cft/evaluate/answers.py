"""Answer text: cleaning, several answers in one, comparison keys and the equivalence rules.

Pure (regexes and `numbers.py`, no sympy): these functions run in the parent
process on model output, so each is linear in its input, and text longer than
`MAX_ANSWER_CHARS` skips the shortcuts (worker processes decide it under a
deadline). Symbolic equivalence (math-verify) is passed in as a function, so
the rules here decide everything they can without it.

Rules, in order (`answers_match`):

1. same comparison key (`normalise_answer`: spacing, `\\dfrac`, `\\left`,
   `\\text{}` wrappers, thousands separators, numbers by value);
2. a gold of several answers (`2, 5`, or `1 \\pm \\sqrt{2}`) is a multiset: the
   prediction must give the same number of answers, each matching one (any
   order; several `\\boxed{}` arrive here joined by ", ");
3. one answer: a lettered choice (`(C)`) matches its letter; True/False also
   match yes/no; `x = 5` matches `5` when only one side names a variable;
   numbers (units, `%`, `^\\circ`, `\\$` aside) match by `numbers_close`;
   tuples, lists and sets compare element by element (sets in any order);
4. everything else goes to math-verify (`symbolic`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cft.evaluate.numbers import numbers_close, parse_number

MAX_ANSWER_CHARS = 2000

Symbolic = Callable[[str, str], bool]


class NeedsSymbolic(Exception):
    """Raised when a rule needs math-verify and none was given (the parent's shortcut pass)."""


# --- cleaning -----------------------------------------------------------------

_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def strip_thousands(answer: str) -> str:
    """ "1,600" -> "1600"; "(1,2)" and "1,2,3" are left alone."""
    return answer.replace(",", "") if _THOUSANDS.fullmatch(answer) else answer


def _strip_periods(answer: str) -> str:
    """Drop whitespace and a sentence's final period(s) ("27." -> "27"), not an ellipsis.

    Walks back with an index: slicing in a loop made this quadratic on long runs of ". . .".
    """
    end = len(answer)
    while True:
        while end and answer[end - 1].isspace():
            end -= 1
        if end and answer[end - 1] == "." and not (end >= 2 and answer[end - 2] == "."):
            end -= 1
            continue
        break
    start = 0
    while start < end and answer[start].isspace():
        start += 1
    return answer[start:end]


def clean_answer(answer: str) -> str:
    """Strip whitespace, surrounding math delimiters and a trailing period."""
    answer = _strip_periods(answer)
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) >= len(left) + len(right):
            answer = answer[len(left) : len(answer) - len(right)].strip()
    return strip_thousands(_strip_periods(answer.strip("$")))


_UNICODE = {
    "\u2212": "-",
    "\u2013": "-",
    "\u00d7": "\\times ",
    "\u22c5": "\\cdot ",
    "\u00b7": "\\cdot ",
    "\u00b0": "^\\circ",
    "\u03c0": "\\pi ",
    "\u221e": "\\infty ",
    "\u2264": "\\le ",
    "\u2265": "\\ge ",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))
_SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|biggl|biggr|bigg|Bigg)(?![A-Za-z])")
_SPACING = re.compile(r"(?<!\\)\\[,;: ]|~|\\displaystyle(?![A-Za-z])|\\textstyle(?![A-Za-z])")
_DEGREE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\degree(?![A-Za-z])")
_GE_LE = re.compile(r"\\(geq?slant|leq?slant|geq|leq)(?![A-Za-z])")
_WHITESPACE = re.compile(r"\s+")
# NumPy spellings, as in one Minerva gold ("np.arcsin(10/13)"): read as LaTeX, never run.
_NUMPY = re.compile(r"\bnp\.(arcsin|arccos|arctan|sinh|cosh|tanh|sin|cos|tan|exp|log|sqrt|pi)\b")
_MATH_DOLLAR = re.compile(r"(?<!\\)\$")  # a math delimiter left inside: "5$ and $6"; "\\$" is money


def prepare(answer: str) -> str:
    """One LaTeX spelling of an answer: delimiters, sizing, spacing, \\dfrac, degrees, unicode, `np.`."""
    answer = _MATH_DOLLAR.sub(" ", clean_answer(answer))
    answer = answer.replace(",\\!", "{,}").replace("\\!", "")
    answer = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], answer)
    answer = _NUMPY.sub(r"\\\1 ", answer)
    answer = _SIZING.sub("", answer)
    answer = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    answer = _SPACING.sub(" ", answer)
    answer = _DEGREE.sub("^\\\\circ", answer)
    answer = _GE_LE.sub(lambda m: "\\ge" if m.group(1).startswith("ge") else "\\le", answer)
    return _WHITESPACE.sub(" ", answer).strip()


# --- units ----------------------------------------------------------------------

_UNIT_MACROS = ("\\text", "\\mathrm", "\\mbox", "\\textrm", "\\textnormal", "\\operatorname", "\\rm")
_POWER_SUFFIX = re.compile(r"\^\s*(?:\{\s*-?\d\s*\}|-?\d)$")
_UNIT_WORDS = re.compile(r"(?<=[\d}%]) +([A-Za-z]{2,}(?:[ /][A-Za-z]+){0,3})(?:\^\{?-?\d\}?)?$")
_MATH_WORDS = frozenset("pi sqrt sin cos tan cot sec csc log ln exp lg arcsin arccos arctan sinh cosh tanh mod and or".split())


def _trailing_group_start(text: str) -> int | None:
    """Index of the "{" matching a final "}", scanning back (linear in the group's length)."""
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        if text[i] == "}":
            depth += 1
        elif text[i] == "{":
            depth -= 1
            if depth == 0:
                return i
    return None


def _strip_unit_macro(text: str) -> str | None:
    """`12 \\text{ cm}^2` -> `12`; None if `text` does not end with a text-like group."""
    body = _POWER_SUFFIX.sub("", text).rstrip()
    if not body.endswith("}"):
        return None
    start = _trailing_group_start(body)
    if start is None:
        return None
    head = body[:start].rstrip()
    macro = next((m for m in _UNIT_MACROS if head.endswith(m)), None)
    content = body[start + 1 : -1]
    if macro is None or not re.search(r"[A-Za-z$]", content):
        return None
    rest = head[: -len(macro)].rstrip()
    return rest if rest else None


def strip_units(answer: str) -> str:
    """An answer without trailing units: `\\text{ cm}^2`, `\\mathrm{~m/s}`, ` apples`, ` km/h`."""
    for _ in range(4):  # "5 \\mathrm{kg} \\, \\mathrm{m}" has a few
        stripped = _strip_unit_macro(answer)
        if stripped is None:
            match = _UNIT_WORDS.search(answer)
            if match and not any(w.lower() in _MATH_WORDS for w in re.split(r"[ /]", match.group(1))):
                stripped = answer[: match.start()].rstrip()
        if not stripped or stripped == answer:
            break
        answer = stripped
    return answer


# --- several answers --------------------------------------------------------------

_LOOSE_SEPARATORS = re.compile(
    r"\\(?:text|textrm|mbox|mathrm)\s*\{\s*(?:and|or|,)\s*\}|\\q?quad(?![A-Za-z])| and | or |;"
)
_LINE_BREAK = re.compile(r"\\\\")


def _top_level_split(text: str, separators: str = ",;") -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch in separators and depth == 0 and not (i and text[i - 1] == "\\"):
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _expand_plus_minus(part: str) -> list[str]:
    """`1 \\pm \\sqrt{2}` -> `1 + \\sqrt{2}`, `1 - \\sqrt{2}` (one top-level \\pm only)."""
    for sign in ("\\pm", "\\mp"):
        if part.count(sign) == 1 and not re.search(re.escape(sign) + "[A-Za-z]", part):
            first, second = ("+", "-") if sign == "\\pm" else ("-", "+")
            return [part.replace(sign, first), part.replace(sign, second)]
    return [part]


def split_answers(answer: str, *, loose: bool = False) -> list[str]:
    """The answers in one prepared answer string, in order.

    Top-level commas and semicolons separate answers (not those inside brackets
    or a thousands-separated number); `loose` (model output) also splits on
    "and", "or", `\\quad` and `\\\\`. A single `\\pm` stands for two answers.
    """
    if len(answer) > MAX_ANSWER_CHARS or parse_number(answer) is not None:
        return [answer]
    if loose:
        answer = _LOOSE_SEPARATORS.sub(",", answer)
        if "\\begin" not in answer:  # "\\\\" separates rows of a matrix, and answers elsewhere
            answer = _LINE_BREAK.sub(",", answer)
    parts = []
    for part in _top_level_split(answer):
        parts.extend(_expand_plus_minus(part))
    return parts or [answer]


def _sequence(text: str) -> tuple[str, str, list[str]] | None:
    """(opening, closing, items) when `text` is one bracketed sequence: (1,2), [0, 5], \\{1,2\\}, (0,1]."""
    if len(text) < 2:
        return None
    if text.startswith("\\{") and text.endswith("\\}"):
        opening, closing, inner_start, inner_end = "\\{", "\\}", 2, len(text) - 2
    elif text[0] in "([" and text[-1] in ")]":
        opening, closing, inner_start, inner_end = text[0], text[-1], 1, len(text) - 1
    else:
        return None
    depth = 0
    for i in range(len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0 and i < len(text) - 1:
                return None  # "(1,2) \\cup (3,4)": the first group closes early
    items = _top_level_split(text[inner_start:inner_end], ",")
    return opening, closing, items


# --- keys -----------------------------------------------------------------------------

_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|textnormal|mathrm|mathbf|mbox|textit|mathit)\s*\{([^{}]*)\}")
_WORDS = re.compile(r"[A-Za-z][A-Za-z ]+")
_ONE_CHAR_GROUP = re.compile(r"([_^])\{(\w)\}")  # x^{2} -> x^2, E_{1} -> E_1
_CHOICE_GOLD = re.compile(r"\(([A-Ea-e])\)")
_CHOICE_PRED = re.compile(r"\(?([A-Ea-e])\)?")
_CHOICE_LABEL = re.compile(r"\(([A-E])\)\s*(\S.*)")
_SIMPLE_LHS = re.compile(r"(?:\\angle\s*)?(?:[A-Za-z]|\\[A-Za-z]+)(?:[A-Za-z0-9_'{}\s\\]|\([^()]*\))*")
_RELATION = re.compile(r"(?<![<>!=\\])=(?!=)|\\in(?![A-Za-z])")


def _unwrap_text(answer: str) -> str:
    for _ in range(3):
        unwrapped = _TEXT_WRAPPER.sub(r"\1", answer)
        if unwrapped == answer:
            break
        answer = unwrapped
    return answer.strip()


def _number_key(answer: str) -> str | None:
    number = parse_number(strip_units(answer))
    if number is None:
        return None
    value = number.value
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _single_key(answer: str) -> str:
    number = _number_key(answer)
    if number is not None:
        return number
    text = _unwrap_text(answer)
    if choice := _CHOICE_GOLD.fullmatch(text.replace(" ", "")):
        return f"({choice.group(1).lower()})"
    if _WORDS.fullmatch(text):
        return " ".join(text.lower().split())  # "True", "\\text{Evelyn}", "east"
    return _ONE_CHAR_GROUP.sub(r"\1\2", text.replace(" ", "").replace("^\\circ", ""))


def _key(answer: str) -> str:
    """Comparison key of a prepared answer; equal keys are the same answer."""
    if len(answer) > MAX_ANSWER_CHARS:
        return answer
    parts = split_answers(answer)
    if len(parts) > 1:
        return ", ".join(sorted(_single_key(p) for p in parts))
    return _single_key(answer)


def _sides(answer: str) -> tuple[str, str] | None:
    """(left, right) of an answer with exactly one `=` (or `\\in`); None otherwise."""
    relations = list(_RELATION.finditer(answer))
    if len(relations) != 1:
        return None
    lhs, rhs = answer[: relations[0].start()].strip(), answer[relations[0].end() :].strip()
    return (lhs, rhs) if lhs and rhs else None


def _rhs(answer: str) -> str | None:
    """`x = 5` -> `5` when the left side only names something (x, f(x), \\angle ABC); else None."""
    sides = _sides(answer)
    if sides is None or len(sides[0]) > 40 or not _SIMPLE_LHS.fullmatch(sides[0]):
        return None
    return sides[1]


def normalise_answer(answer: str) -> str:
    """The key majority votes count: equivalent spellings of one answer get one key.

    `\\boxed{25}`'s 25, "25.0", "\\frac{50}{2}", "x = 25" and "25 \\text{ cm}" share a key;
    several answers are keyed in sorted order.
    """
    answer = prepare(answer)
    if len(answer) > MAX_ANSWER_CHARS:
        return answer
    rhs = _rhs(answer)
    return _key(rhs if rhs is not None else answer)


# --- equivalence -------------------------------------------------------------------------


def _choice_letter(answer: str) -> str | None:
    text = _unwrap_text(answer).replace(" ", "")
    if match := _CHOICE_PRED.fullmatch(text):
        return match.group(1).lower()
    if match := _CHOICE_LABEL.fullmatch(_unwrap_text(answer)):
        return match.group(1).lower()
    return None


def _drop_choice_label(answer: str) -> str:
    """`\\textbf{(C) } 27` -> `27`: AMC answers often carry their letter."""
    match = _CHOICE_LABEL.fullmatch(_unwrap_text(answer))
    return match.group(2) if match else answer


_BOOLEAN = {"true": "true", "yes": "true", "false": "false", "no": "false"}


def _symbolic(pred: str, gold: str, symbolic: Symbolic | None) -> bool:
    if symbolic is None:
        raise NeedsSymbolic
    return symbolic(pred, gold)


def _same_items(pred: list[str], gold: list[str], ordered: bool, symbolic: Symbolic | None) -> bool:
    if len(pred) != len(gold):
        return False
    if ordered:
        return all(_single(p, g, symbolic) for p, g in zip(pred, gold))
    left = list(pred)
    unmatched = []
    for g in gold:  # cheap pass first: equal keys
        key = _key(g)
        hit = next((i for i, p in enumerate(left) if _key(p) == key), None)
        if hit is None:
            unmatched.append(g)
        else:
            left.pop(hit)
    for g in unmatched:
        hit = next((i for i, p in enumerate(left) if _single(p, g, symbolic)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def _single(pred: str, gold: str, symbolic: Symbolic | None) -> bool:
    """One predicted answer against one gold answer (rule 3, then math-verify)."""
    if _key(pred) == _key(gold):
        return True
    gold_text = _unwrap_text(gold).replace(" ", "")
    if _CHOICE_GOLD.fullmatch(gold_text):
        return _choice_letter(pred) == gold_text[1].lower()
    gold_key = _key(gold)
    if gold_key in ("true", "false"):
        return _BOOLEAN.get(_key(pred)) == gold_key
    pred_rhs, gold_rhs = _rhs(pred), _rhs(gold)
    pred_sides, gold_sides = _sides(pred), _sides(gold)
    if (pred_rhs is None) != (gold_rhs is None) and (pred_sides is None) != (gold_sides is None):
        pred, gold = pred_rhs or pred, gold_rhs or gold  # "x = 5" against "5"
        if _key(pred) == _key(gold):
            return True
    elif pred_sides and gold_sides and _key(pred_sides[0]) == _key(gold_sides[0]):
        # The same left side (`y' + r y = 0` against `y' + r y = 1`): the equations
        # agree when what it equals does; no need for sympy to solve them.
        return _single(pred_sides[1], gold_sides[1], symbolic)
    gold_number = parse_number(strip_units(gold))
    if gold_number is not None:
        pred_number = parse_number(strip_units(_drop_choice_label(pred)))
        if pred_number is not None:
            return numbers_close(pred_number, gold_number)
    gold_seq = _sequence(gold)
    pred_items = split_answers(pred, loose=True)
    if gold_seq is None and len(pred_items) > 1:
        # One answer given several ways ("\\boxed{15\\frac{39}{40}} or \\boxed{\\frac{639}{40}}") is
        # right; different answers for one (a hedge) are not.
        return all(_single(item, gold, symbolic) for item in pred_items)
    if gold_seq is not None and len(gold_seq[2]) >= 2:
        opening, closing, gold_items = gold_seq
        pred_seq = _sequence(pred)
        if pred_seq is not None and pred_seq[:2] == (opening, closing):
            return _same_items(pred_seq[2], gold_items, opening != "\\{", symbolic)
        if pred_seq is None and (opening, closing) in (("(", ")"), ("\\{", "\\}")):
            if len(pred_items) >= 2:  # "3, \\frac{\\pi}{2}" for the point (3, pi/2)
                return _same_items(pred_items, gold_items, opening == "(", symbolic)
    return _symbolic(pred, gold, symbolic)


def _as_items(pred: str, gold_items: list[str]) -> list[str]:
    """A prediction split into answers; a bracketed list or set of n items counts as n answers."""
    rhs = _rhs(pred)
    if rhs is not None and _sequence(rhs) is not None:
        pred = rhs  # "x \\in \\{2, 5\\}"
    items = split_answers(pred, loose=True)
    if len(items) == 1 and len(gold_items) > 1 and not any(_sequence(g) for g in gold_items):
        seq = _sequence(items[0])
        if seq is not None and len(seq[2]) == len(gold_items):
            return seq[2]
    return items


def answers_match(pred: str, gold: str, symbolic: Symbolic | None = None) -> bool | None:
    """Whether an extracted answer matches the gold answer (rules in the module doc).

    Without `symbolic`, returns None when only math-verify could decide.
    """
    if not pred or not gold or not str(gold).strip():
        return False
    if symbolic is None and (len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS):
        return None
    pred, gold = prepare(pred), prepare(gold)
    try:
        if _key(pred) == _key(gold):
            return True
        gold_items = split_answers(gold)
        if len(gold_items) > 1:
            return _same_items(_as_items(pred, gold_items), gold_items, False, symbolic)
        return _single(pred, gold, symbolic)
    except NeedsSymbolic:
        return None
