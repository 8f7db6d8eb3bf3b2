"""The critique suite as plain data: which column expectation stands for which check.

Kept free of Great Expectations so the suite can be read, tested and reused
without the library; `gx_adapter` turns each spec into a GX expectation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cft.critique.verdict import LABELS

# Columns of the frame handed to GX (built by cft.validate.critiques).
REQUIRED_TEXT_FIELDS = ("question", "response", "critique")
CRITIQUE_TEXT = "critique_text"  # the critique to check (normalised when allowed); None if not text
VERDICT = "verdict"  # the label parsed from critique_text
RESPONSE_CORRECT = "response_correct"  # True/False, None when unknown or not a bool
DEDUP_KEY = ("key_question", "key_response", "key_teacher", "key_critique")

# A canonical critique ends with the conclusion line (trailing whitespace allowed).
# Starts at a literal and the only quantifier is \s* before \Z: linear on huge input.
CANONICAL_ENDING = r"Conclusion: (?:right|wrong) \[END\]\s*\Z"


@dataclass(frozen=True)
class ExpectationSpec:
    """One column-level expectation and the quarantine check name its failures map to."""

    check: str
    kind: str  # not_null | of_type | in_set | match_regex | length_between | pair_in_set | compound_unique
    columns: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def critique_suite(*, min_chars: int, max_chars: int) -> list[ExpectationSpec]:
    """The column-level expectations of a critique file."""
    specs: list[ExpectationSpec] = []
    for name in REQUIRED_TEXT_FIELDS:
        specs.append(ExpectationSpec(f"missing_field:{name}", "not_null", (name,)))
        specs.append(ExpectationSpec(f"wrong_type:{name}", "of_type", (name,), {"type_": "str"}))
    specs += [
        ExpectationSpec("wrong_type:response_correct", "of_type", ("response_correct_raw",), {"type_": "bool"}),
        ExpectationSpec("too_short", "length_between", (CRITIQUE_TEXT,), {"min_value": min_chars}),
        ExpectationSpec("too_long", "length_between", (CRITIQUE_TEXT,), {"max_value": max_chars}),
        ExpectationSpec("conclusion_format", "match_regex", (CRITIQUE_TEXT,), {"regex": CANONICAL_ENDING}),
        ExpectationSpec("verdict_label", "in_set", (VERDICT,), {"value_set": list(LABELS)}),
        ExpectationSpec(
            "verdict_inconsistent",
            "pair_in_set",
            (VERDICT, RESPONSE_CORRECT),
            {"value_pairs_set": [("right", True), ("wrong", False)], "ignore_row_if": "either_value_is_missing"},
        ),
        ExpectationSpec("duplicate", "compound_unique", DEDUP_KEY),
    ]
    return specs
