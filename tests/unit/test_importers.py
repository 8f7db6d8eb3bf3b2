"""Importing existing critique datasets: messages (One-Shot-CFT) and Alpaca (WebInstruct-CFT)."""

import json

import pytest

from cft.data.ids import content_id
from cft.data.importers import CRITIQUE_INSTRUCTION, import_critiques, split_prompt

CONTRACT = {
    "id", "response_id", "problem_id", "question", "response", "teacher",
    "prompt_version", "critique", "verdict", "gold_answer", "response_correct",
}


def _user(question, solution):
    return f"{CRITIQUE_INSTRUCTION}\n\nQuestion:\n{question}\n\nSolution:\n{solution}\n\n"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_real_one_shot_cft_file_is_fully_recovered(repo_root):
    path = repo_root / "sources/critiques/dsr-cft-p0.jsonl"
    rows, failures = import_critiques(path)
    assert failures == []
    assert len(rows) == 600
    assert all(set(r) == CONTRACT for r in rows)
    assert len({r["id"] for r in rows}) == 600  # one response has up to 7 critiques: ids still unique
    assert len({r["response_id"] for r in rows}) == 95
    assert {r["teacher"] for r in rows} == {"imported:dsr-cft-p0"}
    assert {r["prompt_version"] for r in rows} == {"imported"}
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])["messages"]
    assert rows[0]["question"].startswith("The pressure")
    assert _user(rows[0]["question"], rows[0]["response"]) == first[0]["content"]
    assert "Critique:\n" + rows[0]["critique"] == first[1]["content"]
    assert sum(r["verdict"] == "right" for r in rows) == 558
    assert sum(r["verdict"] is None for r in rows) == 1  # the row with no conclusion


def _alpaca_rows():
    return [
        # question and solution in `input`, the instruction alone in `instruction`
        {
            "instruction": CRITIQUE_INSTRUCTION,
            "input": "Question:\nWhat is 2+2?\n\nSolution:\n2+2=5",
            "output": "Critique:\nThe sum is 4, not 5.\n\nConclusion: wrong [END]",
        },
        # everything in `instruction`, empty input
        {
            "instruction": _user("What is 3*3?", "3*3=9"),
            "input": "",
            "output": "It is 9.\n\nConclusion: right [END]",
        },
    ]


def test_alpaca_in_both_layouts(tmp_path):
    path = _write_jsonl(tmp_path / "webinstruct.jsonl", _alpaca_rows())
    rows, failures = import_critiques(path, format="alpaca")
    assert failures == []
    assert [(r["question"], r["response"], r["verdict"]) for r in rows] == [
        ("What is 2+2?", "2+2=5", "wrong"),
        ("What is 3*3?", "3*3=9", "right"),
    ]
    assert rows[0]["critique"] == "The sum is 4, not 5.\n\nConclusion: wrong [END]"
    assert rows[0]["teacher"] == "imported:webinstruct"
    assert rows[0]["response_id"] == content_id("What is 2+2?", "2+2=5")


def test_parquet_and_save_to_disk(tmp_path):
    import datasets
    import pandas as pd

    messages = [
        {"messages": [{"role": "user", "content": _user("Q1?", "S1")}, {"role": "assistant", "content": "Critique:\nok\nConclusion: right [END]"}]},
        {"messages": [{"role": "user", "content": _user("Q2?", "S2")}, {"role": "assistant", "content": "Critique:\nno\nConclusion: wrong [END]"}]},
    ]
    pd.DataFrame(_alpaca_rows()).to_parquet(tmp_path / "alpaca.parquet")
    rows, failures = import_critiques(tmp_path / "alpaca.parquet")
    assert failures == [] and [r["question"] for r in rows] == ["What is 2+2?", "What is 3*3?"]

    datasets.Dataset.from_list(messages).save_to_disk(str(tmp_path / "saved"))
    rows, failures = import_critiques(tmp_path / "saved")
    assert failures == []
    assert [(r["question"], r["response"], r["critique"], r["verdict"]) for r in rows] == [
        ("Q1?", "S1", "ok\nConclusion: right [END]", "right"),
        ("Q2?", "S2", "no\nConclusion: wrong [END]", "wrong"),
    ]
    assert rows[0]["teacher"] == "imported:saved"


def test_bad_rows_become_failures_not_exceptions(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = {"messages": [{"role": "user", "content": _user("Q?", "S")}, {"role": "assistant", "content": "Critique:\nConclusion: right [END]"}]}
    lines = [
        json.dumps(good).encode(),
        b'{"messages": [',
        b"\xff\xfe not utf-8",
        json.dumps({"messages": [{"role": "user", "content": "no markers"}, {"role": "assistant", "content": "x"}]}).encode(),
        json.dumps({"messages": "not a list"}).encode(),
        json.dumps({"something": "else"}).encode(),
        b"[1, 2]",
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows, failures = import_critiques(path)
    assert len(rows) == 1
    assert [(f["line"], f["check"]) for f in failures] == [
        (2, "malformed_json"),
        (3, "not_utf8"),
        (4, "unrecognised_row"),
        (5, "unrecognised_row"),
        (6, "unrecognised_row"),
        (7, "not_an_object"),
    ]
    assert all(f["file"] == str(path) and f["error"] and f["raw"] for f in failures)
    assert "Question" in failures[2]["error"]


def test_split_prompt_uses_first_solution_header():
    q, s = split_prompt(_user("Q?", "Step 1.\n\nSolution:\nrestated"))
    assert (q, s) == ("Q?", "Step 1.\n\nSolution:\nrestated")
    with pytest.raises(ValueError):
        split_prompt("Question:\n\n\nSolution:\nS")


def test_unknown_format_argument(tmp_path):
    with pytest.raises(ValueError):
        import_critiques(_write_jsonl(tmp_path / "a.jsonl", _alpaca_rows()), format="sharegpt")
