"""The offline reference critic: grades the response's final answer against the gold one.

It needs no teacher LLM, so the embedded default runs offline. Its critiques are
short but have exactly the CFT shape: reasoning, then one canonical conclusion line.
"""

from __future__ import annotations

from cft.critique.verdict import format_conclusion

PROMPT_VERSION = "reference-v1"


def reference_critique(extracted_answer: str | None, gold_answer: str, correct: bool) -> str:
    """A critique of one response given its graded final answer (pure)."""
    if extracted_answer is None:
        body = (
            "The solution never states a final answer, so it cannot be checked against "
            f"the correct answer, {gold_answer}. The solution is incomplete."
        )
    elif correct:
        body = (
            f"The solution's final answer is {extracted_answer}, which agrees with the "
            f"correct answer, {gold_answer}. The solution reaches the right result."
        )
    else:
        body = (
            f"The solution's final answer is {extracted_answer}, but the correct answer is "
            f"{gold_answer}. The solution contains an error and reaches the wrong result."
        )
    return f"{body}\n\n{format_conclusion('right' if correct else 'wrong')}"
