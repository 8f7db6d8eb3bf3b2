"""Verdict parsing on synthetic variants and on the real DSR-CFT-p0 teacher output."""

import json
import re
import time

import pytest

from cft.critique.verdict import (
    CONCLUSION_RIGHT,
    CONCLUSION_WRONG,
    ISSUES,
    format_conclusion,
    parse_verdict,
)
from cft.validate.suite import CANONICAL_ENDING

BODY = "The student sets up P = kAV^3 and solves for k correctly.\n\n"


def test_format_conclusion():
    assert format_conclusion("right") == CONCLUSION_RIGHT == "Conclusion: right [END]"
    assert format_conclusion("wrong") == CONCLUSION_WRONG == "Conclusion: wrong [END]"
    with pytest.raises(ValueError):
        format_conclusion("correct")


@pytest.mark.parametrize("label", ["right", "wrong"])
def test_canonical_has_no_issues_and_is_its_own_normal_form(label):
    text = BODY + format_conclusion(label) + "\n\n"
    parsed = parse_verdict(text)
    assert (parsed.label, parsed.issues, parsed.normalized) == (label, (), text)
    assert parsed.canonical


@pytest.mark.parametrize(
    "ending, label, issues",
    [
        ("**Conclusion: right [END]**", "right", ("markdown",)),
        ("## Conclusion: wrong [END]", "wrong", ("markdown",)),
        ("## 3. Conclusion: right [END]", "right", ("markdown",)),
        ("- Conclusion: right [END]", "right", ("markdown",)),
        ("**Conclusion:** wrong [END]", "wrong", ("markdown",)),
        ("Conclusion: correct [END]", "right", ("label_variant",)),
        ("Conclusion: incorrect [END]", "wrong", ("label_variant",)),
        ("Conclusion: True [END]", "right", ("label_variant",)),
        ("Conclusion: false [END]", "wrong", ("label_variant",)),
        ("Conclusion: RIGHT [END]", "right", ("label_variant",)),
        ("CONCLUSION: right [END]", "right", ("label_variant",)),
        ("Conclusion: wrong[END]", "wrong", ("label_variant",)),
        ("Conclusion:  right [end]", "right", ("label_variant",)),
        ("Conclusion: right. [END]", "right", ("label_variant",)),
        ("Conclusion: right", "right", ("missing_end",)),
        ("Conclusion: wrong.", "wrong", ("missing_end",)),
        ("**Conclusion: incorrect**", "wrong", ("label_variant", "markdown", "missing_end")),
    ],
)
def test_normalisable_variants_are_named_and_rewritten(ending, label, issues):
    parsed = parse_verdict(BODY + ending + "\n")
    assert parsed.label == label
    assert parsed.issues == issues
    assert parsed.normalized == BODY + format_conclusion(label) + "\n"
    assert parse_verdict(parsed.normalized).issues == ()


def test_no_conclusion():
    for text in [BODY, BODY + "### Conclusion\n\nThe student's solution is right. [END]\n", ""]:
        parsed = parse_verdict(text)
        assert (parsed.label, parsed.issues, parsed.normalized) == (None, ("no_conclusion",), None)


def test_prose_after_conclusion_heading_is_not_a_conclusion():
    text = BODY + "3. Conclusion: The student's solution is correct.\n\n" + CONCLUSION_RIGHT
    assert parse_verdict(text).issues == ()
    text = BODY + "**Conclusion:**\nCorrect answers need units.\n\n" + CONCLUSION_WRONG
    assert parse_verdict(text).issues == ()


def test_keyword_inside_a_word_is_not_a_conclusion():
    parsed = parse_verdict(BODY + "Inconclusion: right [END]")
    assert parsed.issues == ("no_conclusion",)


def test_inline_canonical_conclusion_is_accepted():
    parsed = parse_verdict(BODY + "The student's solution is correct. Conclusion: right [END]")
    assert (parsed.label, parsed.issues) == ("right", ())


def test_conflicting_conclusions_are_never_normalised():
    parsed = parse_verdict(BODY + "Conclusion: right [END]\n\nWait, no.\n\nConclusion: wrong [END]")
    assert parsed.label is None
    assert parsed.issues == ("multiple_conclusions",)
    assert parsed.normalized is None


def test_agreeing_whole_line_conclusions_normalise_to_one():
    text = BODY + "Conclusion: right\n</think>\nMore analysis.\n\nConclusion: right [END]\n\n"
    parsed = parse_verdict(text)
    assert (parsed.label, parsed.issues) == ("right", ("multiple_conclusions",))
    assert parsed.normalized.count("Conclusion") == 1
    assert parsed.normalized.endswith("More analysis.\n\nConclusion: right [END]\n\n")


def test_agreeing_conclusion_inside_prose_is_not_normalised():
    text = BODY + "So the Conclusion: right is what I expect here.\n\nConclusion: right [END]"
    parsed = parse_verdict(text)
    assert (parsed.label, parsed.issues, parsed.normalized) == ("right", ("multiple_conclusions",), None)


def test_text_after_the_conclusion_is_not_at_end_and_kept():
    parsed = parse_verdict(BODY + "Conclusion: wrong [END]\n\nNote: the decimal form is fine too.")
    assert (parsed.label, parsed.issues, parsed.normalized) == ("wrong", ("not_at_end",), None)


def test_every_issue_code_is_reachable():
    seen = set()
    for text in [
        BODY,
        BODY + "Conclusion: right\nConclusion: wrong [END]",
        BODY + "Conclusion: correct [END]",
        BODY + "**Conclusion: right [END]**",
        BODY + "Conclusion: right",
        BODY + "Conclusion: right [END] and more",
    ]:
        seen.update(parse_verdict(text).issues)
    assert seen == set(ISSUES)


def test_real_teacher_output(repo_root):
    """DSR-CFT-p0: 600 real critiques from 7 teachers, with real variants in them."""
    lines = (repo_root / "sources/critiques/dsr-cft-p0.jsonl").read_text(encoding="utf-8").splitlines()
    critiques = [json.loads(line)["messages"][-1]["content"].removeprefix("Critique:\n") for line in lines]
    parsed = [parse_verdict(c) for c in critiques]
    by_issue = {code: [i for i, p in enumerate(parsed) if code in p.issues] for code in ISSUES}
    assert len(parsed) == 600
    assert by_issue["no_conclusion"] == [145]  # "The student's solution is right. [END]"
    assert by_issue["not_at_end"] == [19]  # a "Note:" paragraph after [END]
    assert by_issue["multiple_conclusions"] == [366]  # a leaked "Conclusion: right\n</think>"
    assert len(by_issue["markdown"]) == 144  # bold, headings and bullets
    assert sum(not p.issues for p in parsed) == 453
    assert parsed[19].label == "wrong" and parsed[366].label == "right"
    for p in parsed:
        if p.normalized is not None:
            again = parse_verdict(p.normalized)
            assert again.issues == () and again.label == p.label
            # what the parser calls canonical, the GX regex of the suite accepts too
            assert re.search(CANONICAL_ENDING, p.normalized)


MB10 = 10_000_000


@pytest.mark.parametrize(
    "text",
    [
        " " * MB10,
        "Conclusion" + "*" * MB10,
        "Conclusion:" + " \t" * (MB10 // 2) + "x",
        "Conclusion: right" + " " * MB10 + "x",
        "Conclusion: right [END]" + " " * MB10 + "*x",
        "Conclusion: right " * (MB10 // 18),
        "Conclusion: wrong [END]\n" * (MB10 // 24),
        "#" * MB10 + "Conclusion: right [END]",
        "Conclusion:" * (MB10 // 11),
    ],
    ids=["spaces", "stars", "colon-ws", "label-ws", "end-ws", "inline-repeat", "line-repeat", "hashes", "colons"],
)
def test_linear_time_on_10_mb(text):
    # Catastrophic backtracking takes minutes here; linear matching well under a second or two.
    start = time.perf_counter()
    parse_verdict(text)
    assert time.perf_counter() - start < 10
