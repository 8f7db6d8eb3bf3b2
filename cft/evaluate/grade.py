"""Answer equivalence with math-verify, bounded in time.

math-verify's own timeouts use `signal.alarm`: they only work on a process's
main thread and they cancel any outer alarm (docs/design.md, "Library facts"). So we call it
with its timeouts off and bound each comparison ourselves:

- in-process (`workers=0`, main thread only): an interval timer raises
  `GradingTimeout` and the caller's own timer is re-armed afterwards. It cannot
  interrupt a long C-level computation (sympy evaluating `7^{10^{8}}` is one
  uninterruptible big-int power), so:
- in worker processes (the default): the same timer inside each worker, plus a
  per-item deadline in the parent that kills a hung worker and starts a new one.

The rules that need no sympy (exact keys, numbers with a 1e-4 tolerance, several
answers, choices; `answers.py`) run first, in the parent where they decide alone;
math-verify, with a numeric tolerance added, decides the rest. Model output is
only ever parsed as LaTeX or by our own number parser (never with sympy's
`parse_expr`, which evaluates Python), so a response is data, not code.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from cft.evaluate.answers import answers_match, clean_answer
from cft.evaluate.extract import extract_answer
from cft.evaluate.numbers import REL_TOL

TIMEOUT_ERROR = "timeout"


@dataclass(frozen=True)
class GradeResult:
    """The answer found in a response, whether it matches the gold, and why not if grading failed."""

    extracted: str | None
    correct: bool
    error: str | None = None


class GradingTimeout(BaseException):
    """Raised by the timer; a BaseException so math-verify's `except Exception` cannot swallow it."""


def default_workers() -> int:
    """Worker processes used when none are asked for: min(4, CPU count)."""
    return max(1, min(4, os.cpu_count() or 1))


def on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def deadline(timeout_s: float) -> Iterator[None]:
    """Raise GradingTimeout in the block after `timeout_s` seconds (main thread only).

    Unlike math-verify's `signal.alarm`, a timer the caller had running is
    restored afterwards with the time it had left.
    """
    if not hasattr(signal, "setitimer"):  # no SIGALRM (Windows): only worker kills protect
        yield
        return

    def on_alarm(signum, frame):
        raise GradingTimeout()

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, timeout_s)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler if old_handler is not None else signal.SIG_DFL)
        if old_delay > 0:
            left = old_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), old_interval)


def _as_latex(answer: str) -> str:
    """Wrap a bare answer in `$...$` so math-verify's LaTeX extractor finds it."""
    answer = clean_answer(answer)
    return f"${answer}$"


def _latex_config():
    from math_verify.parser import LatexExtractionConfig

    # LaTeX only: the plain-expression extractor goes through sympy.parse_expr (eval).
    return [LatexExtractionConfig()]


def warm_up() -> None:
    """Import math-verify, silence its 'timeout disabled' warning and build its parser."""
    import math_verify.grader
    import math_verify.parser

    # We disable math-verify's signal timeouts on purpose and bound time ourselves.
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    _math_verify_equal("\\frac{1}{2}", "0.5")


class Unparseable(Exception):
    """math-verify found no expression in an answer (or in the gold)."""


def _constant(expr):
    """`expr` when it is one finite number (no symbols, sets or relations), else None."""
    import sympy

    if not isinstance(expr, sympy.Expr) or expr.free_symbols or not expr.is_number:
        return None
    return expr if expr.is_finite is not False else None


def _constants_equal(pred, gold) -> bool:
    """Two numeric constants: within REL_TOL when either was written with a decimal point, else to 40 digits.

    math-verify chops small differences to zero (10^{-24} "equals" 20^{-24}) and
    rounds floats to 6 places, so constants are compared here instead, at 50
    digits and relative to their size.
    """
    import sympy

    a, b = pred.evalf(50), gold.evalf(50)
    if not (a.is_finite and b.is_finite):
        return bool(pred == gold)
    scale = sympy.Max(abs(a), abs(b))
    if scale == 0:
        return True
    written_inexactly = pred.has(sympy.Float) or gold.has(sympy.Float)
    tolerance = sympy.Rational(REL_TOL.numerator, REL_TOL.denominator) if written_inexactly else sympy.Rational(1, 10**40)
    return bool(abs(a - b) <= tolerance * scale)


@functools.lru_cache(maxsize=4096)
def _parse(answer: str) -> tuple:
    """math-verify's parse: (expression, text), or just (text,) when no expression could be read.

    Cached: a gold is compared with every sample of its question (n samples, several
    answers), and sympy objects are immutable. A timeout interrupts before anything is stored.
    """
    from math_verify import parse

    return tuple(parse(_as_latex(answer), extraction_config=_latex_config(), parsing_timeout=None))


def _math_verify_equal(pred: str, gold: str) -> bool:
    """math-verify's verdict (numbers compared by `_constants_equal`), its own timeouts off; the caller bounds the time."""
    from math_verify import verify

    gold_parsed = _parse(gold)
    if len(gold_parsed) < 2:
        raise Unparseable(f"unparseable gold: {gold[:80]}")
    pred_parsed = _parse(pred)
    if len(pred_parsed) < 2:
        raise Unparseable(f"unparseable answer: {pred[:80]}")
    pred_constant, gold_constant = _constant(pred_parsed[0]), _constant(gold_parsed[0])
    if pred_constant is not None and gold_constant is not None:
        return _constants_equal(pred_constant, gold_constant)
    return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))


def verify_inline(pred: str, gold: str, timeout_s: float) -> tuple[bool, str | None]:
    """(correct, error) for one extracted answer, in this process; main thread only.

    The whole comparison runs under the deadline: the rules in `answers.py`
    and each math-verify call they make. An unparseable side is reported as the
    error of a wrong verdict (a later rule may still find the answer right).
    """
    problems: list[str] = []

    def symbolic(p: str, g: str) -> bool:
        try:
            return _math_verify_equal(p, g)
        except Unparseable as exc:
            problems.append(str(exc))
            return False

    try:
        with deadline(timeout_s):
            correct = bool(answers_match(pred, gold, symbolic))
    except GradingTimeout:
        return False, TIMEOUT_ERROR
    except Exception as exc:  # a grader crash marks one item, it does not stop the run
        return False, f"{type(exc).__name__}: {exc}"[:200]
    return correct, (None if correct or not problems else problems[-1])


def verify_pairs(
    pairs: Sequence[tuple[str, str]], *, timeout_s: float = 5.0, workers: int | None = None
) -> list[tuple[bool, str | None]]:
    """(correct, error) for each (extracted answer, gold) pair, in order.

    workers=0 grades in this process when on the main thread; otherwise (or
    from another thread) in worker processes.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if workers is None:
        workers = default_workers()
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    # What the rules decide without math-verify (exact keys, numbers, choices) needs no worker round trip.
    verdicts: list[tuple[bool, str | None] | None] = []
    for pred, gold in pairs:
        try:
            quick = answers_match(pred, gold)
        except Exception:  # a rule's bug: let the worker grade it and report the error
            quick = None
        verdicts.append(None if quick is None else (quick, None))
    todo = [i for i, verdict in enumerate(verdicts) if verdict is None]
    if not todo:
        return verdicts  # type: ignore[return-value]
    hard = [pairs[i] for i in todo]
    if workers == 0 and on_main_thread():
        warm_up()
        graded = [verify_inline(pred, gold, timeout_s) for pred, gold in hard]
    else:
        from cft.evaluate.pool import GradingPool

        with GradingPool(max(1, workers), timeout_s=timeout_s) as pool:
            graded = pool.verify(hard)
    for i, verdict in zip(todo, graded):
        verdicts[i] = verdict
    return verdicts  # type: ignore[return-value]


def is_equivalent(pred: str | None, gold: str, timeout_s: float = 5.0) -> bool:
    """Whether an extracted answer equals the gold answer (the rules of `answers.py`, then math-verify).

    Meant for a process's main thread; from another thread it grades in a
    worker process instead (slower, but correct).
    """
    if pred is None or not str(gold).strip():
        return False
    workers = 0 if on_main_thread() else 1
    return verify_pairs([(pred, str(gold))], timeout_s=timeout_s, workers=workers)[0][0]


def grade_responses(
    items: Sequence[tuple[str, str]], *, timeout_s: float = 5.0, workers: int | None = None
) -> list[GradeResult]:
    """Extract the final answer of each (response, gold) item and grade it; results keep item order.

    workers: None = min(4, CPU count) worker processes; 0 = in this process
    (falls back to one worker process off the main thread). An item that
    overruns `timeout_s` is wrong with error "timeout".
    """
    extracted = [extract_answer(response or "") for response, _ in items]
    todo = [i for i, pred in enumerate(extracted) if pred is not None and str(items[i][1]).strip()]
    verdicts = verify_pairs([(extracted[i], str(items[i][1])) for i in todo], timeout_s=timeout_s, workers=workers)
    results = [GradeResult(pred, False, None) for pred in extracted]
    for i, (correct, error) in zip(todo, verdicts):
        results[i] = GradeResult(extracted[i], correct, error)
    return results
