"""`cft grade` and `cft validate` on a user's own files, run from a folder outside any project."""

import json

from typer.testing import CliRunner

from cft.cli import app

runner = CliRunner()


def test_grade_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    rows = [
        {"response": "Final Answer: The final answer is $4.5 \\times 10^{33}$. I hope it is correct.", "answer": "4.5e33"},
        {"response": "**Final Answer:** 131", "answer": 130},
    ]
    (tmp_path / "preds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = runner.invoke(app, ["grade", "preds.jsonl", "--out", "graded.jsonl", "--workers", "0"])
    assert result.exit_code == 0, result.output
    graded = [json.loads(line) for line in (tmp_path / "graded.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(g["extracted_answer"], g["correct"], g["grading_error"]) for g in graded] == [
        ("4.5 \\times 10^{33}", True, None),
        ("131", False, None),
    ]


def test_grade_names_the_gold_fields_it_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "preds.jsonl").write_text(json.dumps({"response": "\\boxed{1}", "label": "1"}) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["grade", "preds.jsonl", "--workers", "0"])
    assert result.exit_code == 2
    assert "looked for fields gold_answer, gold, answer" in result.output and "Traceback" not in result.output


def test_validate_from_any_folder_without_params(repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the README offers it "on any critique file you have"
    critiques = repo_root / "sources/critiques/dsr-cft-p0.jsonl"
    result = runner.invoke(app, ["validate", str(critiques), "--out-dir", "out"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["n_clean"] + summary["n_quarantined"] == summary["n_input"] == 600
    assert not (tmp_path / "mlruns.db").exists() and not (tmp_path / "mlruns").exists()  # no project, no MLflow run
