"""The offline reference student: known-good answers, some of them deliberately broken.

The embedded default has no model that can solve problems, so on its own every response
is wrong and nothing separates a good critic from one that always says "wrong". This
student answers with the problem's reference solution (or, without one, a one-line
answer) and, for a seeded `error_rate` share of rows, the same text with its final answer
changed. The respond stage grades every row as usual, so `correct` is the grader's
verdict, not this module's intent. Pure: no model, no randomness beyond the row's seed.
"""

from __future__ import annotations

import re

from cft.data.ids import content_id
from cft.evaluate.extract import last_boxed

_LAST_INTEGER = re.compile(r"(\d+)(?!.*\d)", re.DOTALL)


def is_wrong(row_key: str, error_rate: float) -> bool:
    """Whether this row gets a broken answer: a uniform draw fixed by the row's key."""
    return int(content_id("reference-student", row_key), 16) / 16 ** 16 < error_rate


def perturb(answer: str, row_key: str) -> str:
    """Another answer: the last integer in it moved by 1-9, or "+1" appended when it has none."""
    shift = 1 + int(content_id("shift", row_key), 16) % 9
    match = _LAST_INTEGER.search(answer)
    if match is None:
        return f"{answer}+1"
    return f"{answer[: match.start()]}{int(match.group(1)) + shift}{answer[match.end():]}"


def reference_response(gold: str, solution: str | None, row_key: str, error_rate: float) -> str:
    """The response text for one row (see the module docstring)."""
    wrong = is_wrong(row_key, error_rate)
    boxed = last_boxed(solution) if solution else None
    if solution and boxed is not None:
        span = "\\boxed{" + boxed + "}"
        at = solution.rfind(span)
        if at >= 0:
            if not wrong:
                return solution
            return f"{solution[:at]}\\boxed{{{perturb(boxed, row_key)}}}{solution[at + len(span):]}"
    answer = perturb(gold, row_key) if wrong else gold
    return f"Working through the problem step by step gives the result.\n\nThe final answer is \\boxed{{{answer}}}."
