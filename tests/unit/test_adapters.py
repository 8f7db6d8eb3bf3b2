"""Adapters on the real shipped files: counts, non-empty fields, known golds, gold normalisation,
reported repairs, strict errors."""

import json
import logging
import re

import pytest

from cft.data.adapters import ADAPTERS, BENCHMARK_FILES, GOLD_REPAIRS, PROBLEM_FILES, Problem, SourceNote, load_problems
from cft.data.ids import content_id
from cft.data.io import DataError

# Row counts from sources/README.md.
EXPECTED_ROWS = {
    "math-500": 500,
    "gsm8k": 1319,
    "minerva_math": 272,
    "olympiadbench": 675,
    "aime24": 30,
    "amc23": 40,
    "theoremqa": 800,
    "math": 500,
    "svamp": 1000,
    "asdiv": 2215,
}


def _path(repo_root, name):
    if name in BENCHMARK_FILES:
        return repo_root / "sources" / "benchmarks" / BENCHMARK_FILES[name]
    return repo_root / "sources" / "problems" / PROBLEM_FILES[name]


@pytest.fixture(scope="module")
def loaded(repo_root):
    return {name: load_problems(_path(repo_root, name), name, notes=[]) for name in EXPECTED_ROWS}


def test_every_shipped_file_has_an_adapter():
    assert set(BENCHMARK_FILES) | set(PROBLEM_FILES) == set(EXPECTED_ROWS)
    assert set(EXPECTED_ROWS) < set(ADAPTERS)
    assert len(BENCHMARK_FILES) == 7


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_row_counts_and_no_empty_fields(loaded, name):
    problems = loaded[name]
    assert len(problems) == EXPECTED_ROWS[name]
    for p in problems:
        assert isinstance(p, Problem)
        assert p.question.strip() and p.gold_answer.strip()
        assert p.gold_answer == p.gold_answer.strip()
        assert p.source == name
        assert p.id == content_id(name, p.question)


def test_problem_is_frozen(loaded):
    with pytest.raises(AttributeError):
        loaded["gsm8k"][0].gold_answer = "x"


def test_known_golds(loaded):
    assert loaded["gsm8k"][0].gold_answer == "18"
    assert loaded["gsm8k"][0].question.startswith("Janet")
    # GSM8K thousands separators are stripped: "#### 2,125" -> "2125".
    assert all("," not in p.gold_answer for p in loaded["gsm8k"])
    assert "2125" in {p.gold_answer for p in loaded["gsm8k"]}
    assert loaded["math-500"][0].gold_answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert loaded["minerva_math"][0].gold_answer == "1.6"  # from the solution's last \boxed{}
    assert loaded["minerva_math"][1].gold_answer == "4.5 \\times 10^{33}"  # "4.5e33" in the source
    assert loaded["olympiadbench"][0].gold_answer == "2"
    assert loaded["aime24"][0].gold_answer == "204"
    assert "25" in {p.gold_answer for p in loaded["aime24"]}  # "025" loses its padding
    assert [p.gold_answer for p in loaded["amc23"][:3]] == ["27", "36", "45"]  # 27.0 -> "27"
    assert loaded["theoremqa"][0].gold_answer == "11760"
    assert loaded["math"][0].gold_answer == "23"
    assert loaded["svamp"][0].gold_answer == "145"
    assert loaded["asdiv"][0].gold_answer == "9"  # "9 (apples)"


def test_olympiad_answers_lose_dollars_and_join(loaded):
    golds = {p.gold_answer for p in loaded["olympiadbench"]}
    assert not any("$" in g for g in golds)
    assert "69, 84" in golds  # "$69$,$84$"
    assert "(1,8,19), (2,7,13), (4,5,7)" in golds


def test_python_and_e_notation_golds_become_latex(loaded):
    minerva = {p.gold_answer for p in loaded["minerva_math"]}
    theoremqa = {p.gold_answer for p in loaded["theoremqa"]}
    assert "-\\frac{1}{3}" in minerva and "-1./3" not in minerva
    assert "2.7778 \\times 10^{-6}" in minerva
    assert "4 \\times 10^{-5}" in theoremqa and "-6 \\times 10^{25}" in theoremqa
    # no gold is left as a float literal with an exponent, which math-verify reads as Euler's e
    literal = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")
    assert not [g for name in BENCHMARK_FILES for g in (p.gold_answer for p in loaded[name]) if literal.fullmatch(g)]


def test_olympiad_units_and_percent(loaded):
    golds = [p.gold_answer for p in loaded["olympiadbench"]]
    assert golds[137] == "45 \\text{ minute}"  # unit "minute"
    assert golds[224] == "166 \\text{ cm}^2"  # unit "$cm^2$"
    assert golds[316] == "4.2\\%"  # unit "%"
    assert golds[188] == "17.5\\%"  # "17.5%" in the source
    assert golds[31] == "\\angle B E A_{1}=90^{\\circ}, \\angle A E B_{1}=90^{\\circ}"  # unit "^{\\circ}", two answers


def test_unreadable_shipped_rows_are_reported_with_file_and_line(repo_root):
    notes: list[SourceNote] = []
    problems = load_problems(_path(repo_root, "olympiadbench"), "olympiadbench", notes=notes)
    by_line = {n.line: n for n in notes}
    assert set(by_line) == {74, 195}
    assert by_line[195].original == "$221,$8$" and by_line[195].gold == "221, 8" == problems[194].gold_answer
    assert "olympiadbench.jsonl:195: field 'final_answer' '$221,$8$'" in str(by_line[195])
    minerva: list[SourceNote] = []
    load_problems(_path(repo_root, "minerva_math"), "minerva_math", notes=minerva)
    assert sorted(n.line for n in minerva) == [6, 73]  # np.arcsin(...), a "$ $" inside the box
    assert all(n.reason for n in notes + minerva)
    for name in ("math-500", "gsm8k", "aime24", "amc23", "theoremqa"):
        clean: list[SourceNote] = []
        load_problems(_path(repo_root, name), name, notes=clean)
        assert clean == [], name


def test_reports_are_logged_when_not_collected(repo_root, caplog):
    with caplog.at_level(logging.WARNING, logger="cft.data.adapters"):
        load_problems(_path(repo_root, "olympiadbench"), "olympiadbench")
    assert any("olympiadbench.jsonl:195" in r.getMessage() for r in caplog.records)


def test_every_repair_is_used_by_a_shipped_row(loaded):
    used = {("olympiadbench", "221, 8"), ("olympiadbench", "f(x)=a x+b"), ("minerva_math", "\\arcsin\\left(\\frac{10}{13}\\right)")}
    assert {(fmt, gold) for (fmt, _), (gold, _) in GOLD_REPAIRS.items()} == used
    for fmt, gold in used:
        assert gold in {p.gold_answer for p in loaded[fmt]}


def test_a_users_unreadable_olympiad_row_is_reported_not_silently_changed(tmp_path):
    path = _write(tmp_path / "ob.jsonl", [
        {"question": "q1", "final_answer": ["$3$, or maybe $4$"]},
        {"question": "q2", "final_answer": ["$5$"], "unit": "km/h"},
    ])
    notes: list[SourceNote] = []
    problems = load_problems(path, "olympiadbench", notes=notes)
    assert [p.gold_answer for p in problems] == ["3, 4", "5 \\text{ km/h}"]
    assert [(n.line, n.field, n.original) for n in notes] == [(1, "final_answer", "$3$, or maybe $4$")]


def test_word_problems_join_body_and_question(loaded):
    svamp = loaded["svamp"][0]
    assert svamp.question.startswith("There are 87 oranges")
    assert svamp.question.endswith(" How big is each group of bananas?")
    asdiv = loaded["asdiv"][0]
    assert asdiv.question == "Seven red apples and two green apples are in the basket. How many apples are in the basket?"
    golds = {p.gold_answer for p in loaded["asdiv"]}
    assert "14" in golds and "-(1/3)" in golds  # "14  (seats)" and a parenthesised value


def test_solutions_where_the_source_has_them(loaded):
    for name in ("math-500", "math", "minerva_math", "aime24", "gsm8k", "olympiadbench"):
        assert all(p.solution for p in loaded[name]), name
    for name in ("amc23", "theoremqa", "svamp", "asdiv"):
        assert all(p.solution is None for p in loaded[name]), name


def test_limit_takes_first_rows(repo_root):
    first = load_problems(_path(repo_root, "gsm8k"), "gsm8k", limit=3)
    assert len(first) == 3
    assert first == load_problems(_path(repo_root, "gsm8k"), "gsm8k")[:3]
    assert load_problems(_path(repo_root, "gsm8k"), "gsm8k", limit=0) == []


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_bad_row_names_file_line_and_field(tmp_path):
    path = _write(tmp_path / "g.jsonl", [{"question": "q1", "answer": "x #### 1"}, {"question": "q2"}])
    with pytest.raises(DataError, match=r"g\.jsonl:2: missing required field 'answer'"):
        load_problems(path, "gsm8k")


def test_malformed_line_and_empty_field(tmp_path):
    path = _write(tmp_path / "m.jsonl", ['{"problem": "p"', {"problem": "p", "answer": "1"}])
    with pytest.raises(DataError, match=r"m\.jsonl:1: malformed JSON"):
        load_problems(path, "math-500")
    path = _write(tmp_path / "e.jsonl", [{"problem": "  ", "answer": "1"}])
    with pytest.raises(DataError, match=r"e\.jsonl:1: field 'problem' is empty"):
        load_problems(path, "math-500")


def test_format_specific_errors(tmp_path):
    gsm = _write(tmp_path / "g.jsonl", [{"question": "q", "answer": "no marker"}])
    with pytest.raises(DataError, match=r"g\.jsonl:1: .*####"):
        load_problems(gsm, "gsm8k")
    minerva = _write(tmp_path / "mi.jsonl", [{"problem": "q", "solution": "no box"}])
    with pytest.raises(DataError, match=r"mi\.jsonl:1: .*boxed"):
        load_problems(minerva, "minerva_math")
    olympiad = _write(tmp_path / "o.jsonl", [{"question": "q", "final_answer": []}])
    with pytest.raises(DataError, match=r"o\.jsonl:1: .*final_answer"):
        load_problems(olympiad, "olympiadbench")


def test_unknown_format_lists_known(tmp_path):
    with pytest.raises(ValueError, match="known: .*gsm8k.*svamp"):
        load_problems(tmp_path / "x.jsonl", "nope")


def test_generic_jsonl_adapter(tmp_path):
    path = _write(
        tmp_path / "mine.jsonl",
        [{"q": "What is 1+1?", "a": 2.0, "s": "1+1=2"}, {"q": "What is 1/2?", "a": "\\frac{1}{2}"}],
    )
    problems = load_problems(path, "jsonl", question_field="q", answer_field="a", solution_field="s")
    assert [(p.question, p.gold_answer, p.solution) for p in problems] == [
        ("What is 1+1?", "2", "1+1=2"),
        ("What is 1/2?", "\\frac{1}{2}", None),
    ]
    assert problems[0].source == "mine"
    assert load_problems(path, "jsonl", source="custom", question_field="q", answer_field="a")[0].source == "custom"
    with pytest.raises(ValueError, match="needs option"):
        load_problems(path, "jsonl", question_field="q")
    with pytest.raises(ValueError, match="does not take"):
        load_problems(path, "gsm8k", question_field="q")
    with pytest.raises(DataError, match=r"mine\.jsonl:1: missing required field 'question'"):
        load_problems(path, "jsonl", question_field="question", answer_field="a")
