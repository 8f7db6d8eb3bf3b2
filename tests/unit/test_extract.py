"""Final-answer extraction: boxed forms first, then the fallbacks in order; linear time."""

import pytest

from cft.evaluate.extract import clean_answer, extract_answer, last_boxed, normalise_answer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $\\boxed{5}$.", "5"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed 5", "5"),
        ("$\\boxed 42$", "42"),
        ("\\fbox{7}", "7"),
        ("\\boxed {x+1}", "x+1"),
        ("no box here", None),
        ("\\boxed{1} and a truncated \\boxed{\\frac{2}", "1"),  # last well-formed one
        ("\\boxedfoo", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 3. So \\boxed{4}.", "4"),  # boxed beats every fallback
        ("$\\boxed{\\$ 5}$", "\\$ 5"),
        ("Thus the final answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("The answer is 27.", "27"),
        ("The answer is: 2.5.", "2.5"),
        ("So the answer is 12 apples. Done 99", "12 apples"),
        ("Final Answer: 17", "17"),
        ("The answer isn't obvious; try 8", "8"),
        ("Janet makes 9*2 = 18\n#### 18", "18"),
        ("#### 1,600", "1600"),
        ("I computed 3 then 4.5 finally -7", "-7"),
        ("total 1,234,567 units", "1234567"),
        ("no digits at all", None),
        ("", None),
        ("\\boxed{}  and later 3", "3"),  # an empty box is no answer
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_answer_is_beats_hashes_and_numbers():
    assert extract_answer("answer is 5\n#### 6\n7") == "5"
    assert extract_answer("#### 6\nthen 7") == "6"


def test_clean_answer_strips_delimiters_and_period():
    assert clean_answer(" $12$. ") == "12"
    assert clean_answer("\\(x^2\\)") == "x^2"
    assert clean_answer("58,500") == "58500"
    assert clean_answer("(1,2)") == "(1,2)"  # tuples keep their commas
    assert clean_answer("1,2,3") == "1,2,3"


def test_normalise_answer():
    assert normalise_answer("\\dfrac{1}{2}") == normalise_answer("\\frac{1}{2}")
    assert normalise_answer("\\text{True}") == "true"
    assert normalise_answer("\\left( 1, 2 \\right)") == "(1,2)"
    assert normalise_answer("90^\\circ") == "90"


@pytest.mark.parametrize(
    "text, expected",
    [
        # issue 12: markdown around the final answer
        ("Work...\n**Final Answer:** 130", "130"),
        ("Work...\n**Final Answer**: 130", "130"),
        ("The answer is **130**.", "130"),
        ("Work 1 2 3\n## Final Answer\n\n130\n", "130"),
        ("Work 1 2 3\n### Final Answer\n$$\n\\frac{3}{4}\n$$", "\\frac{3}{4}"),
        ("Work 1 2 3\n**Final Answer**\n\n$12$ square units.", "12"),
        # issue 12: Minerva's own format, even after an earlier box or "Answer:"
        ("Final Answer: The final answer is $25$. I hope it is correct.", "25"),
        ("The final answer is $\\boxed{25}$. I hope it is correct.", "25"),
        ("so \\boxed{3}... Final Answer: The final answer is 4.5 \\times 10^{33}. I hope it is correct.", "4.5 \\times 10^{33}"),
        # issue 12: several answers in several boxes
        ("The solutions are $\\boxed{2}$ and $\\boxed{5}$.", "2, 5"),
        ("$x = \\boxed{2}$, $y = \\boxed{-3}$", "2, -3"),
        ("a = \\boxed{-2}, b = \\boxed{-2}", "-2, -2"),  # a repeated value is still an answer
        ("first \\boxed{1}. Then we find that the total is \\boxed{2}", "2"),  # prose between: only the last
        ("\\boxed{\\boxed{5}}", "5"),
        # boxes, bold and lettered answers
        ("\\boxed{\\textbf{(073)}}", "\\textbf{(073)}"),
        ("\\framebox[1.2\\width]{9}", "9"),
        ("Hence the answer is $\\$32.50$.", "\\$32.50"),  # an escaped dollar is not the closing one
    ],
)
def test_model_answer_forms(text, expected):
    assert extract_answer(text) == expected


PATHOLOGICAL = {
    # 1.6M characters: the old period-stripping took 9 s at 400K and grew 4x per doubling
    "periods in a box": "\\boxed{5" + " ." * 800_000 + "}",
    "periods after a marker": "The answer is 5" + " ." * 200_000,
    "spaces after a marker": "answer" + " " * 400_000 + "x",
    "markers": "final answer is " * 25_000,
    "unclosed boxes": "\\boxed{" * 57_000,
    "chained boxes": "\\boxed{1} and " * 28_000,
    "header lines": "answer\n" * 57_000,
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_extraction_is_linear_on_pathological_text(name):
    # Extraction runs in the parent before any time limit applies. A hang guard, not a
    # timing: bench/bench_grading.py --only extraction prints the growth ratios.
    text = PATHOLOGICAL[name]
    answer = extract_answer(text)
    assert normalise_answer(answer or text) is not None


def test_long_text_is_fast():
    # Extraction runs in the parent process for every response: it must be linear-ish.
    text = "\\boxed{1}" + "\\boxed{" * 5000 + "x " * 100000
    assert last_boxed(text) == "1"
