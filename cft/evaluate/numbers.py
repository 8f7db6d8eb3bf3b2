"""Numbers as benchmarks and models write them, read without evaluating anything.

math-verify reads `4.5e33` as 4.5 * e * 33 (Euler's number) and knows no
tolerance, `%` or Python's `-1./3`; sympy's `parse_expr` would read them but
evaluates Python, so model output never goes near it. This small parser (regexes
over a bounded string, exact `Fraction` arithmetic, exponents capped) reads the
forms below and nothing else:

    18   -3   +2   1,600   10{,}000   10\\,000   .5   2.   3.1416   073
    4.5e33   4e-05   4.5 \\times 10^{33}   4.5\\cdot10^{-3}   10^{-5}
    \\frac{1}{3}   -\\frac{1}{3}   \\frac12   1/3   -1./3   15\\frac{39}{40} (a mixed number)
    50\\%   \\$18.90   30^\\circ   (073)   \\textbf{(073)}   \\text{5}

Equality (`numbers_close`): exact when both sides are written exactly (integers,
fractions, powers of ten); otherwise within a relative tolerance of 1e-4, the
tolerance of Qwen2.5-Math's grader, which the CFT paper's numbers used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

REL_TOL = Fraction(1, 10_000)
MAX_CHARS = 400  # longer text is not a number anyone writes as an answer
MAX_EXPONENT = 400  # beyond float range; bounds the size of the Fraction


@dataclass(frozen=True)
class Number:
    """A parsed number: exact value, whether it was written exactly, and whether with a percent sign."""

    value: Fraction
    exact: bool
    percent: bool = False


_DECIMAL = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SIGNED = r"[+-]?" + _DECIMAL
_EXP = r"[+-]?\d{1,4}"
# 4.5e33 | 4.5 \times 10^{33} | 4.5\cdot10^3 | 4.5 x 10^33 (spaces around operators removed first)
_SCIENTIFIC = re.compile(
    r"(?P<sign>[+-]?)(?P<mant>" + _DECIMAL + r")"
    r"(?:[eE](?P<e>" + _EXP + r")|(?:\\times|\\cdot|\*|x)10\^(?:\{(?P<p>" + _EXP + r")\}|(?P<p1>[+-]?\d)))?"
)
_BARE_POWER = re.compile(r"(?P<sign>[+-]?)10\^(?:\{(?P<p>" + _EXP + r")\}|(?P<p1>[+-]?\d))")
_FRAC = re.compile(
    r"(?P<sign>[+-]?)\\frac(?:\{(?P<a>" + _SIGNED + r")\}\{(?P<b>" + _SIGNED + r")\}|(?P<a1>\d)(?P<b1>\d))"
)
_MIXED = re.compile(r"(?P<sign>[+-]?)(?P<whole>\d+)\\frac\{(?P<a>\d+)\}\{(?P<b>\d+)\}")  # 15\frac{39}{40}
_SLASH = re.compile(r"(?P<sign>[+-]?)(?P<a>" + _DECIMAL + r")/(?P<b>" + _SIGNED + r")")

# Thousands groups: 1,600  10{,}000  10,\!080  10\,000  10 000 (the separator is removed).
_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3})((?:(?:\{,\} ?|,\\! ?|,|\\,|\\ | )\d{3})+)(?!\d)")
_GROUP_SEPARATOR = re.compile(r"\{,\} ?|,\\! ?|,|\\,|\\ | ")
_AROUND_OPERATOR = re.compile(r"\s*(\\times|\\cdot|\*|/|\^|\{|\})\s*")
_WRAPPERS = ("\\text", "\\textbf", "\\textrm", "\\mathrm", "\\mathbf", "\\mbox", "\\boxed", "\\textnormal")
_PERCENT_SUFFIXES = ("\\%", "%", "\\text{%}", "\\text{\\%}", "percent", "\\text{ percent}", "\\text{percent}")
_DEGREE_SUFFIXES = ("^{\\circ}", "^\\circ", "\\circ", "\\degree", "°")
_CURRENCY_PREFIXES = ("\\$", "$", "\\text{\\$}")
_APPROX_PREFIXES = ("\\approx", "\\sim", "=")


def _outer_group(text: str) -> str | None:
    """Content of `\\macro{...}` or `{...}` when that group spans all of `text`."""
    for macro in ("", *_WRAPPERS):
        if not text.startswith(macro + "{") or not text.endswith("}"):
            continue
        depth = 0
        for i in range(len(macro), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[len(macro) + 1 : -1] if i == len(text) - 1 else None
    return None


def _strip_suffix(text: str, suffixes: tuple[str, ...]) -> tuple[str, bool]:
    for suffix in suffixes:
        if text.endswith(suffix):
            return text[: -len(suffix)].rstrip(), True
    return text, False


def _strip_prefix(text: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if text.startswith(prefix):
            return text[len(prefix) :].lstrip()
    return text


def _is_number_text(text: str) -> bool:
    return 0 < len(text) <= MAX_CHARS


def _unwrap(text: str) -> tuple[str, bool]:
    """Drop what does not change a number: \\text{..}, braces, (073), \\$, \\approx, degrees; note a percent sign."""
    percent = False
    for _ in range(6):  # a few layers at most: \\textbf{(\\text{073})}
        before = text
        text = text.strip()
        inner = _outer_group(text)
        if inner is not None:
            text = inner.strip()
        if len(text) >= 2 and text[0] == "(" and text[-1] == ")" and text.count("(") == 1:
            text = text[1:-1].strip()
        text = _strip_prefix(_strip_prefix(text, _CURRENCY_PREFIXES), _APPROX_PREFIXES)
        text, had_percent = _strip_suffix(text, _PERCENT_SUFFIXES)
        percent = percent or had_percent
        text, _ = _strip_suffix(text, _DEGREE_SUFFIXES)
        if text == before:
            break
    return text, percent


def _power(match: re.Match, name: str) -> int | None:
    raw = match.group(name) or match.group(name + "1")
    if raw is None:
        return None
    exponent = int(raw)
    return exponent if abs(exponent) <= MAX_EXPONENT else None


def _decimal(text: str) -> Fraction:
    return Fraction(text if not text.endswith(".") else text[:-1] or "0")


def _parse_plain(text: str) -> tuple[Fraction, bool] | None:
    """(value, exact) of a number without percent, units or wrappers; None if it is not one."""
    text = _THOUSANDS.sub(lambda m: m.group(1) + _GROUP_SEPARATOR.sub("", m.group(2)), text)
    text = _AROUND_OPERATOR.sub(r"\1", text).strip()
    text = re.sub(r"^([+-])\s+", r"\1", text)
    if match := _SCIENTIFIC.fullmatch(text):
        mantissa = match.group("mant")
        if len(mantissa) > MAX_EXPONENT:
            return None
        value = _decimal(mantissa)
        exact = "." not in mantissa and match.group("e") is None
        if match.group("e") is not None:
            exponent = int(match.group("e"))
            if abs(exponent) > MAX_EXPONENT:
                return None
            value *= Fraction(10) ** exponent
        elif match.group("p") is not None or match.group("p1") is not None:
            exponent = _power(match, "p")
            if exponent is None:
                return None
            value *= Fraction(10) ** exponent
        return (-value if match.group("sign") == "-" else value), exact
    if match := _BARE_POWER.fullmatch(text):
        exponent = _power(match, "p")
        if exponent is None:
            return None
        value = Fraction(10) ** exponent
        return (-value if match.group("sign") == "-" else value), True
    if match := _MIXED.fullmatch(text):
        whole, a, b = int(match.group("whole")), int(match.group("a")), int(match.group("b"))
        if 0 < a < b and len(match.group(0)) < MAX_EXPONENT:  # a mixed number, not 2 * 7/3
            value = whole + Fraction(a, b)
            return (-value if match.group("sign") == "-" else value), True
        return None
    for pattern in (_FRAC, _SLASH):
        if match := pattern.fullmatch(text):
            a = match.group("a") or match.group("a1") if pattern is _FRAC else match.group("a")
            b = match.group("b") or match.group("b1") if pattern is _FRAC else match.group("b")
            if len(a) + len(b) > MAX_EXPONENT:
                return None
            denominator = _decimal(b)
            if denominator == 0:
                return None
            value = _decimal(a) / denominator
            exact = "." not in a and "." not in b
            return (-value if match.group("sign") == "-" else value), exact
    return None


def parse_number(text: str) -> Number | None:
    """The number `text` spells (see the module doc), or None. Never evaluates anything."""
    if not _is_number_text(text):
        return None
    text, percent = _unwrap(text.replace("−", "-"))
    parsed = _parse_plain(text)
    if parsed is None:
        return None
    value, exact = parsed
    return Number(value, exact, percent)


def _close(a: Fraction, b: Fraction, exact: bool) -> bool:
    if exact:
        return a == b
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def numbers_close(pred: Number, gold: Number) -> bool:
    """Whether two numbers are the same answer.

    Exact equality when both are written exactly, else relative tolerance 1e-4.
    A percent sign on one side only also matches the value it stands for
    (`50\\%` is 50 and 0.5), so "what percent" golds written without it and
    probability golds written with it both grade right.
    """
    exact = pred.exact and gold.exact
    candidates = [gold.value]
    if pred.percent and not gold.percent:
        candidates.append(gold.value * 100)
    if gold.percent and not pred.percent:
        candidates.append(gold.value / 100)
    return any(_close(pred.value, c, exact) for c in candidates)


_E_NOTATION = re.compile(r"(?P<sign>[+-]?)(?P<mant>\d+(?:\.\d*)?|\.\d+)[eE](?P<exp>[+-]?\d+)")
_PY_DIVISION = re.compile(r"(?P<sign>[+-]?)(?P<a>\d+\.?\d*)/(?P<b>\d+\.?\d*)")


def _trim_point(text: str) -> str:
    """Python's "1." -> "1"."""
    return text.removesuffix(".")


def latex_number(text: str) -> str:
    """A gold written as a Python/e-notation literal, in LaTeX; anything else unchanged.

    "4.5e33" -> "4.5 \\times 10^{33}", "1e-05" -> "10^{-5}", "-1./3" -> "-\\frac{1}{3}".
    """
    stripped = text.strip()
    if match := _E_NOTATION.fullmatch(stripped):
        exponent = int(match.group("exp"))
        mantissa = _trim_point(match.group("mant"))
        power = f"10^{{{exponent}}}"
        body = power if mantissa in ("1", "1.0") else f"{mantissa} \\times {power}"
        return f"{'-' if match.group('sign') == '-' else ''}{body}"
    if match := _PY_DIVISION.fullmatch(stripped):
        a, b = _trim_point(match.group("a")), _trim_point(match.group("b"))
        return f"{'-' if match.group('sign') == '-' else ''}\\frac{{{a}}}{{{b}}}"
    return text
