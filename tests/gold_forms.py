"""Gold answers restated the way models write them, and perturbed into wrong ones.

The oracle for `test_benchmark_golds.py` and `bench/bench_grading.py`: every row
of the seven shipped benchmarks becomes model-style responses that must grade
correct (the gold in another spelling: LaTeX numbers, `\\times 10^{}`, units,
percent, boxed or not, markdown, Minerva's format, several boxes) and
responses that must grade wrong (another number, a dropped answer, another
choice). Written apart from the grader (its own small regexes, no import from
`cft.evaluate`), so a grader bug cannot hide behind the same bug here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

BENCHMARKS = ("math-500", "minerva_math", "gsm8k", "olympiadbench", "aime24", "amc23", "theoremqa")


@dataclass(frozen=True)
class Case:
    benchmark: str
    row: int
    gold: str
    form: str  # "<value form>/<wrapper>" or "wrong:<perturbation>/<wrapper>"
    response: str
    correct: bool  # what a right grader says


# --- reading a gold (only as much as restating needs) ---------------------------

_INT = re.compile(r"-?\d+")
_DEC = re.compile(r"-?\d+\.\d+")
_SCI = re.compile(r"(-?)(?:(\d+(?:\.\d+)?) \\times )?10\^\{(-?\d+)\}")
_FRAC = re.compile(r"(-?)\\frac\{(\d+)\}\{(\d+)\}")
_UNIT = re.compile(r"(.+?) \\text\{ ([^{}]+)\}(\^\d)?")
_CHOICE = re.compile(r"(?:\\text\{)?\(([A-Ea-e])\)\}?")
_TEXT = re.compile(r"\\text\{([A-Za-z ]+)\}")


def _top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _is_list(gold: str) -> bool:
    """Several answers: top-level commas, not a thousands-separated number."""
    number = gold.replace("\\!", "").replace(" ", "").removeprefix("\\$")
    return len(_top_level(gold)) > 1 and not re.fullmatch(r"-?\d{1,3}(,\d{3})+", number)


def _thousands(n: int, sep: str) -> str:
    return f"{n:,}".replace(",", sep)


def _fraction_latex(value: Fraction) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    return f"{sign}\\frac{{{value.numerator}}}{{{value.denominator}}}"


def _scientific(value: Fraction) -> tuple[str, int]:
    """(mantissa, exponent) with 4 significant digits, like a model rounding."""
    text = f"{float(value):.3e}"
    mantissa, exponent = text.split("e")
    return mantissa, int(exponent)


def _number_forms(text: str) -> list[tuple[str, str]]:
    """Model spellings of a plain number (integer, decimal, fraction, power of ten); [] if not one."""
    if _INT.fullmatch(text):
        n = int(text)
        forms = [("integer", text), ("latex_thousands", _thousands(n, "{,}")), ("decimal_point", f"{n}.0")]
        if abs(n) >= 1000:
            forms += [("comma_thousands", _thousands(n, ",")), ("thin_space", _thousands(n, "\\,"))]
        if abs(n) >= 10**5:
            mantissa, exponent = f"{n:.10e}".rstrip("0").split("e")
            forms.append(("times_ten", f"{mantissa.rstrip('.')} \\times 10^{{{int(exponent)}}}"))
        return forms
    if _DEC.fullmatch(text):
        value = Fraction(text)
        forms = [("decimal", text), ("trailing_zero", text + "0"), ("fraction", _fraction_latex(value))]
        if value != 0:
            mantissa, exponent = _scientific(value)
            if Fraction(mantissa) * Fraction(10) ** exponent == value:
                forms.append(("times_ten", f"{mantissa} \\times 10^{{{exponent}}}"))
        return forms
    if match := _SCI.fullmatch(text):
        sign, mantissa, exponent = match.group(1), match.group(2) or "1", match.group(3)
        forms = [
            ("times_ten", f"{sign}{mantissa}\\times10^{{{exponent}}}"),
            ("cdot_ten", f"{sign}{mantissa} \\cdot 10^{{{exponent}}}"),
            ("e_notation", f"{sign}{mantissa}e{exponent}"),
        ]
        value = Fraction(mantissa) * Fraction(10) ** int(exponent)
        if -4 <= int(exponent) <= 6:
            forms.append(("expanded", f"{sign}{float(value):.10g}"))
        return forms
    if match := _FRAC.fullmatch(text):
        sign, a, b = match.groups()
        value = Fraction(int(a), int(b))
        return [
            ("fraction", text),
            ("dfrac", f"{sign}\\dfrac{{{a}}}{{{b}}}"),
            ("slash", f"{sign}{a}/{b}"),
            ("decimal", f"{'-' if sign else ''}{float(value):.8g}"),
        ]
    return []


def restatements(gold: str) -> list[tuple[str, str]]:
    """(form, answer) pairs: the gold as a model might write it. The first is the gold itself."""
    forms = [("as_is", gold)]
    if _is_list(gold):
        parts = _top_level(gold)
        forms.append(("reversed_order", ", ".join(reversed(parts))))
        if not any(p.startswith(("(", "[")) for p in parts):
            forms.append(("set_braces", "\\{" + ", ".join(parts) + "\\}"))
        return forms
    if match := _CHOICE.fullmatch(gold):
        letter = match.group(1).upper()
        return forms + [("letter", letter), ("text_choice", f"\\text{{({letter})}}"), ("bold_choice", f"\\textbf{{({letter})}}")]
    if gold in ("True", "False"):
        return forms + [("text_bool", f"\\text{{{gold}}}"), ("lower_bool", gold.lower())]
    if match := _TEXT.fullmatch(gold):
        return forms + [("plain_text", match.group(1))]
    if match := _UNIT.fullmatch(gold):
        value, unit, power = match.group(1), match.group(2), match.group(3) or ""
        return forms + [("no_unit", value), ("mathrm_unit", f"{value}\\,\\mathrm{{{unit}}}{power}")]
    if gold.endswith("\\%"):
        value = gold[:-2].strip()
        forms += [("bare_percent", value), ("plain_percent", f"{value}%")]
        if _DEC.fullmatch(value) or _INT.fullmatch(value):
            forms.append(("fraction_of_one", f"{float(Fraction(value) / 100):.10g}"))
        return forms
    for degree in ("^{\\circ}", "^\\circ"):
        if gold.endswith(degree):
            value = gold[: -len(degree)]
            return forms + [("no_degree", value), ("degree_word", f"{value} \\text{{ degrees}}"), ("unicode_degree", f"{value}°")]
    if gold.startswith("\\$"):
        return forms + [("no_dollar", gold[2:])]
    if gold.startswith("(") and gold.endswith(")"):
        return forms + [("left_right", f"\\left({gold[1:-1]}\\right)"), ("spaced", gold.replace(",", ", "))]
    numbers = _number_forms(gold)
    if numbers:
        forms = numbers
        plain = numbers[0][1]
        forms += [("with_unit", f"{plain} \\text{{ units}}"), ("percent_sign", f"{plain}\\%")]
        if not plain.startswith("-"):
            forms.append(("dollars", f"\\${plain}"))
        return forms
    spelled = gold.replace("\\frac", "\\dfrac") if "\\frac" in gold else gold.replace(" ", "")
    forms.append(("respelled", spelled))
    if "=" not in gold and "\\in" not in gold and not gold.startswith(("(", "[", "\\{")):
        forms.append(("named", f"x = {gold}"))
    return forms


# --- wrong answers -----------------------------------------------------------------


def _bump_first_digit(text: str) -> str | None:
    """Another value: the first digit d becomes d+1 (9 -> 8)."""
    match = re.search(r"\d", text)
    if match is None:
        return None
    digit = int(match.group())
    new = str(digit + 1) if digit < 9 else "8"
    return text[: match.start()] + new + text[match.end() :]


def _swapped(parts: list[str]) -> list[str] | None:
    """The first two items swapped, when that changes the sequence."""
    if len(parts) < 2 or parts[0].replace(" ", "") == parts[1].replace(" ", ""):
        return None
    return [parts[1], parts[0], *parts[2:]]


def perturbations(gold: str) -> list[tuple[str, str]]:
    """(kind, answer) pairs that a right grader must mark wrong; the first is the test's."""
    if _is_list(gold):
        parts = _top_level(gold)
        out = [("dropped_answer", ", ".join(parts[:-1]))]
        changed = _bump_first_digit(parts[-1])
        if changed is not None and changed.replace(" ", "") not in {p.replace(" ", "") for p in parts}:
            out.append(("one_answer_changed", ", ".join([*parts[:-1], changed])))
        return out
    if gold.startswith("[") and gold.endswith("]") and len(_top_level(gold[1:-1])) > 1:
        parts = _top_level(gold[1:-1])
        out = [("dropped_answer", "[" + ", ".join(parts[:-1]) + "]")]
        if (swapped := _swapped(parts)) is not None:
            out.append(("swapped_order", "[" + ", ".join(swapped) + "]"))  # a list is ordered
        return out
    if gold.startswith("(") and gold.endswith(")") and len(_top_level(gold[1:-1])) > 1:
        parts = _top_level(gold[1:-1])
        out = [("other_number", _bump_first_digit(gold) or f"{gold} + 1")]
        if (swapped := _swapped(parts)) is not None:
            out.append(("swapped_order", "(" + ", ".join(swapped) + ")"))  # a tuple (or interval) is ordered
        return out
    if match := _CHOICE.fullmatch(gold):
        letter = match.group(1).lower()
        other = "b" if letter == "a" else "a"
        return [("other_choice", gold.replace(f"({match.group(1)})", f"({other if letter.islower() else other.upper()})"))]
    if gold in ("True", "False"):
        return [("negated", "False" if gold == "True" else "True")]
    if match := _TEXT.fullmatch(gold):
        return [("other_word", f"\\text{{not {match.group(1)}}}")]
    if _INT.fullmatch(gold):
        n = int(gold)  # off by one is the commonest slip; 1e-4 of a large integer is more than 1
        out = [("off_by_one", str(n + 1)), ("sign_flipped", str(-n))] if n else [("off_by_one", "1")]
        if abs(n) >= 2:
            out.append(("hundredth", f"{n / 100:g}"))  # not a percent: no % sign
        return out
    bumped = _bump_first_digit(gold)
    if bumped is not None:
        out = [("other_number", bumped)]
        if _DEC.fullmatch(gold) and Fraction(gold) != 0:
            out.append(("decimal_shifted", f"{float(Fraction(gold) * 10):.10g}"))
        return out
    return [("plus_one", f"{gold} + 1")]


# --- responses ------------------------------------------------------------------------

PREAMBLE = "We set up the equations: 3x + 4 = 19, so x = 5, and 12 / 4 = 3 as a check.\n\n"


def _math(answer: str) -> str:
    return f"${answer}$"


def wrappers(answer: str, gold: str) -> list[tuple[str, str]]:
    """(wrapper, response) pairs: where and how the final answer sits in a response."""
    plain = bool(re.fullmatch(r"-?[\d.,]+", answer))
    out = [
        ("boxed", f"{PREAMBLE}Therefore the answer is $\\boxed{{{answer}}}$."),
        ("answer_is", f"{PREAMBLE}Hence, the answer is {_math(answer)}."),
        ("markdown", f"{PREAMBLE}**Final Answer:** {answer if plain else _math(answer)}"),
        ("header", f"{PREAMBLE}### Final Answer\n\n$$\n{answer}\n$$\n"),
        ("minerva", f"{PREAMBLE}Final Answer: The final answer is {_math(answer)}. I hope it is correct."),
        ("display_box", f"{PREAMBLE}\\[\n\\boxed{{{answer}}}\n\\]"),
    ]
    if plain:
        out.append(("gsm8k_hashes", f"{PREAMBLE}#### {answer}"))
    if _is_list(gold) and _is_list(answer):
        boxes = " and ".join(f"$\\boxed{{{p}}}$" for p in _top_level(answer))
        out.append(("several_boxes", f"{PREAMBLE}The solutions are {boxes}."))
    return out


def cases(benchmark: str, golds: list[str], *, full: bool = False) -> list[Case]:
    """Right and wrong responses for every gold.

    full=False (the test): per row one restatement and one perturbation, forms and
    wrappers rotated deterministically over the rows. full=True (the bench): every
    restatement under a rotated wrapper, every wrapper around a rotated
    restatement, and every perturbation.
    """
    out = []
    for row, gold in enumerate(golds):
        forms = restatements(gold)
        form, answer = forms[row % len(forms)]
        around = wrappers(answer, gold)
        right = {(form, around[(row // len(forms)) % len(around)])}
        wrong = perturbations(gold)[:1]
        if full:
            for i, (other_form, other_answer) in enumerate(forms):
                boxes = wrappers(other_answer, gold)
                right.add((other_form, boxes[(row + i) % len(boxes)]))
            right.update((form, box) for box in around)
            wrong = perturbations(gold)
        for form_name, (wrapper, response) in sorted(right):
            out.append(Case(benchmark, row, gold, f"{form_name}/{wrapper}", response, True))
        for kind, answer in wrong:
            boxes = wrappers(answer, gold)
            wrapper, response = boxes[row % len(boxes)]
            out.append(Case(benchmark, row, gold, f"wrong:{kind}/{wrapper}", response, False))
    return out
