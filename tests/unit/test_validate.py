"""Critique validation with real Great Expectations: quarantine reasons, policies, bad input."""

import json

import pytest

from cft.critique.verdict import parse_verdict
from cft.data.io import DataError
from cft.validate import ValidationFailed, validate_critiques, validate_file

OPTIONS = {"min_chars": 20, "max_chars": 20_000}
DSR = "sources/critiques/dsr-cft-p0.jsonl"
BODY = "The student computes k = 1/256 and then V^3 = 2048, which is right. "


def _row(i, critique=None, **extra):
    row = {
        "id": f"c{i}",
        "question": f"Question {i}?",
        "response": f"Response {i}",
        "teacher": "t1",
        "prompt_version": "v1",
        "critique": critique if critique is not None else BODY + "\n\nConclusion: right [END]",
        "verdict": "right",
        "gold_answer": "12",
        "response_correct": None,
    }
    row.update(extra)
    return row


def _checks(result):
    return [(q["row"]["id"] if isinstance(q["row"], dict) else None, q["failed_checks"]) for q in result.quarantine]


@pytest.fixture(scope="module")
def dsr_normalized(repo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("dsr")
    result = validate_file(repo_root / DSR, out, conclusion_policy="normalize", consistency_policy="tag", min_pass_rate=0.9, **OPTIONS)
    return result, out


def test_dsr_quarantines_rows_without_a_proper_conclusion(dsr_normalized):
    result, out = dsr_normalized
    s = result.summary
    assert len(result.clean) + len(result.quarantine) == s["n_input"] == 600
    assert (s["n_clean"], s["n_quarantined"]) == (598, 2)
    by_line = {q["source"]["line"]: q["failed_checks"] for q in result.quarantine}
    assert by_line == {20: ["not_at_end"], 146: ["no_conclusion"]}
    assert s["failures"] == {"no_conclusion": 1, "not_at_end": 1}
    # normalisable variants pass, rewritten and tagged
    assert s["normalized"] == {"rows": 145, "by_issue": {"markdown": 144, "multiple_conclusions": 1}}
    tagged = [r for r in result.clean if "normalized_from" in r]
    assert len(tagged) == 145
    assert all(parse_verdict(r["critique"]).issues == () for r in result.clean)
    assert all(r["verdict"] in ("right", "wrong") for r in result.clean)
    assert s["verdict_balance"]["right"] + s["verdict_balance"]["wrong"] == 598
    assert 0.9 < s["verdict_balance"]["fraction_right"] < 0.95
    # outputs
    assert len((out / "clean.jsonl").read_text(encoding="utf-8").splitlines()) == 598
    assert len((out / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()) == 2
    assert json.loads((out / "summary.json").read_text())["n_input"] == 600
    assert json.loads((out / "validation_summary.json").read_text())["n_clean"] == 598


def test_data_docs_are_built(dsr_normalized):
    result, out = dsr_normalized
    assert result.docs_index == out / "data_docs" / "index.html"
    assert result.docs_index.exists()
    pages = list((out / "data_docs" / "validations").rglob("*.html"))
    page = pages[0].read_text(encoding="utf-8")
    assert "must match this regular expression" in page and "2 unexpected values found" in page
    assert result.summary["docs_index"] == str(result.docs_index)


def test_reject_policy_quarantines_every_variant(repo_root, tmp_path):
    result = validate_file(repo_root / DSR, tmp_path, conclusion_policy="reject", consistency_policy="tag", **OPTIONS)
    s = result.summary
    assert len(result.clean) + len(result.quarantine) == 600
    assert s["n_quarantined"] == 147
    assert s["failures"] == {"markdown": 144, "multiple_conclusions": 1, "no_conclusion": 1, "not_at_end": 1}
    assert all("normalized_from" not in r for r in result.clean)


def test_variants_normalize_or_reject(tmp_path):
    rows = [
        _row(0),
        _row(1, BODY + "\n\nConclusion: correct [END]"),
        _row(2, BODY + "\n\nConclusion: wrong", verdict=None),
        _row(3, BODY + "\n\n**Conclusion: right [END]**"),
        _row(4, BODY + "\n\nConclusion: right [END]\n\nConclusion: wrong [END]"),
        _row(5, BODY + "\n\nConclusion: right [END] but maybe not"),
        _row(6, BODY),
    ]
    normalized = validate_critiques(rows, conclusion_policy="normalize", consistency_policy="keep", report_dir=tmp_path / "n", **OPTIONS)
    assert [r["id"] for r in normalized.clean] == ["c0", "c1", "c2", "c3"]
    assert [r.get("normalized_from") for r in normalized.clean] == [None, ["label_variant"], ["missing_end"], ["markdown"]]
    assert normalized.clean[2]["verdict"] == "wrong"  # re-parsed from the critique
    assert normalized.clean[1]["critique"].endswith("\n\nConclusion: right [END]")
    assert _checks(normalized) == [("c4", ["multiple_conclusions"]), ("c5", ["not_at_end"]), ("c6", ["no_conclusion"])]

    rejected = validate_critiques(rows, conclusion_policy="reject", consistency_policy="keep", report_dir=tmp_path / "r", **OPTIONS)
    assert [r["id"] for r in rejected.clean] == ["c0"]
    assert _checks(rejected)[:3] == [("c1", ["label_variant"]), ("c2", ["missing_end"]), ("c3", ["markdown"])]


def test_duplicates_keep_the_first_passing_row(tmp_path):
    rows = [
        _row(0, BODY),  # no conclusion: the next copy is kept instead
        {**_row(1), "question": "Question 0?", "response": "Response 0"},
        {**_row(2), "question": "Question 0?", "response": "Response 0"},
        {**_row(3), "question": "Question 0?", "response": "Response 0", "teacher": "t2"},  # other teacher
        _row(4),
    ]
    result = validate_critiques(rows, conclusion_policy="normalize", consistency_policy="keep", report_dir=tmp_path, **OPTIONS)
    assert [r["id"] for r in result.clean] == ["c1", "c3", "c4"]
    assert _checks(result) == [("c0", ["no_conclusion"]), ("c2", ["duplicate"])]
    assert result.quarantine[1]["details"]["duplicate_of"] == {"position": 1}
    assert result.summary["failures"] == {"duplicate": 1, "no_conclusion": 1}


@pytest.mark.parametrize("policy", ["drop", "keep", "tag"])
def test_consistency_policies(tmp_path, policy):
    wrong = BODY + "\n\nConclusion: wrong [END]"
    rows = [
        _row(0, response_correct=True),  # right & correct: consistent
        _row(1, response_correct=False),  # right but graded wrong
        _row(2, wrong, response_correct=True),  # wrong but graded correct
        _row(3, wrong, response_correct=False),
        _row(4),  # correctness unknown: never flagged
    ]
    result = validate_critiques(rows, conclusion_policy="normalize", consistency_policy=policy, report_dir=tmp_path, **OPTIONS)
    assert len(result.clean) + len(result.quarantine) == 5
    assert result.summary["consistency"] == {"policy": policy, "known": 4, "flagged": 2}
    clean = {r["id"]: r for r in result.clean}
    if policy == "drop":
        assert _checks(result) == [("c1", ["verdict_inconsistent"]), ("c2", ["verdict_inconsistent"])]
        assert result.quarantine[0]["details"] == {"verdict": "right", "response_correct": False}
    elif policy == "keep":
        assert set(clean) == {"c0", "c1", "c2", "c3", "c4"}
        assert all("verdict_consistent" not in r for r in result.clean)
        assert clean["c1"] == rows[1]  # untouched
    else:
        assert {i: r.get("verdict_consistent") for i, r in clean.items()} == {
            "c0": True, "c1": False, "c2": False, "c3": True, "c4": None,
        }


def test_bad_input_file_every_kind_of_bad_line(tmp_path):
    good = _row(0)
    lines = [
        json.dumps(good).encode(),  # 1 clean
        b'{"question": "unterminated',  # 2
        b"\xc3\x28 bad utf-8",  # 3
        json.dumps({k: v for k, v in _row(4).items() if k != "critique"}).encode(),  # 4
        json.dumps(_row(5, question=42)).encode(),  # 5
        json.dumps(_row(6, BODY * 200_000 + "\n\nConclusion: right [END]")).encode(),  # 6: ~14 MB critique
        b'["a", "list"]',  # 7
        b"",  # blank lines are skipped, not rows
        json.dumps(_row(9, response_correct="yes")).encode(),  # 9
        json.dumps({**_row(10), "critique": None, "response": None}).encode(),  # 10
        json.dumps(_row(11, BODY.upper())).encode(),  # 11
        json.dumps(_row(12, "Conclusion: wrong [END]"[:19])).encode(),  # 12: "Conclusion: wrong [" is 19 chars
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = validate_file(path, tmp_path / "out", conclusion_policy="normalize", consistency_policy="drop", **OPTIONS)
    by_line = {q["source"]["line"]: q["failed_checks"] for q in result.quarantine}
    assert by_line == {
        2: ["malformed_json"],
        3: ["not_utf8"],
        4: ["missing_field:critique"],
        5: ["wrong_type:question"],
        6: ["too_long"],
        7: ["not_an_object"],
        9: ["wrong_type:response_correct"],
        10: ["missing_field:response", "missing_field:critique"],
        11: ["no_conclusion"],
        12: ["missing_end", "not_at_end", "too_short"],
    }
    assert [r["id"] for r in result.clean] == ["c0"]
    assert result.summary["n_input"] == 11
    assert result.quarantine[0]["row"] == '{"question": "unterminated'
    assert "malformed JSON" in result.quarantine[0]["details"]["error"]
    assert result.quarantine[1]["source"] == {"file": str(path), "line": 3}
    saved = [json.loads(line) for line in (tmp_path / "out/quarantine.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(saved) == 10
    docs = result.docs_index.parent.rglob("*.html")
    assert max(p.stat().st_size for p in docs) < 2_000_000  # the 14 MB critique is not copied into the docs


def test_min_pass_rate_failure_still_writes_outputs(tmp_path):
    path = tmp_path / "mostly_bad.jsonl"
    path.write_text("\n".join([json.dumps(_row(0)), "{oops", json.dumps(_row(2, BODY))]) + "\n", encoding="utf-8")
    with pytest.raises(ValidationFailed, match=r"pass rate 33\.3% is below the minimum 90\.0%") as info:
        validate_file(path, tmp_path / "out", min_pass_rate=0.9, **OPTIONS)
    assert isinstance(info.value, DataError)
    assert str(path) in str(info.value) and "malformed_json" in str(info.value)
    assert (tmp_path / "out/quarantine.jsonl").exists() and (tmp_path / "out/summary.json").exists()


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.jsonl.*empty"):
        validate_file(path, tmp_path / "out", **OPTIONS)


def test_alpaca_file_is_imported_then_validated(tmp_path):
    rows = [
        {
            "instruction": "Please critique whether the following solution to the question is correct.",
            "input": f"Question:\nQ{i}?\n\nSolution:\nS{i}",
            "output": f"Critique:\n{BODY}\n\n**Conclusion: {'correct' if i else 'incorrect'} [END]**",
        }
        for i in range(3)
    ]
    rows.append({"instruction": "no markers", "input": "", "output": "x"})
    path = tmp_path / "webinstruct.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = validate_file(path, tmp_path / "out", **OPTIONS)
    assert [r["verdict"] for r in result.clean] == ["wrong", "right", "right"]
    assert result.clean[0]["normalized_from"] == ["label_variant", "markdown"]
    assert result.clean[0]["teacher"] == "imported:webinstruct"
    assert _checks(result) == [(None, ["unrecognised_row"])]
    assert result.quarantine[0]["source"] == {"file": str(path), "line": 4}


def test_bad_options_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="conclusion_policy"):
        validate_critiques([], conclusion_policy="fix", consistency_policy="keep", report_dir=tmp_path, **OPTIONS)
    with pytest.raises(ValueError, match="consistency_policy"):
        validate_critiques([], conclusion_policy="reject", consistency_policy="ignore", report_dir=tmp_path, **OPTIONS)


def test_parquet_critique_rows_and_non_object_rows(tmp_path):
    import pandas as pd

    path = tmp_path / "critiques.parquet"
    pd.DataFrame([_row(0), _row(1, BODY + "\n\n### Conclusion: wrong [END]")]).to_parquet(path)
    result = validate_file(path, tmp_path / "out", **OPTIONS)
    assert [(r["id"], r["verdict"], r.get("normalized_from")) for r in result.clean] == [
        ("c0", "right", None),
        ("c1", "wrong", ["markdown"]),
    ]
    odd = validate_critiques([_row(0), "just text", None], report_dir=tmp_path / "odd", **OPTIONS)
    assert [q["failed_checks"] for q in odd.quarantine] == [["not_an_object"], ["not_an_object"]]
    assert odd.summary["n_input"] == 3 and len(odd.clean) == 1
