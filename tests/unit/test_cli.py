"""The `cft` command line: bad input ends in one clear message and a non-zero exit."""

import json

from typer.testing import CliRunner

from cft.cli import app

runner = CliRunner()


def test_validate_on_a_users_file(repo_root, tmp_path):
    result = runner.invoke(app, ["validate", str(repo_root / "sources/critiques/dsr-cft-p0.jsonl"), "--out-dir", str(tmp_path / "out"),
                                 "--report-dir", str(tmp_path / "report"), "--no-mlflow", "--params", str(repo_root / "params.yaml")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["n_input"] == 600 and summary["n_clean"] + summary["n_quarantined"] == 600


def test_validate_below_min_pass_rate_fails_cleanly(repo_root, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"question": "q", "response": "r", "critique": "no verdict here at all, none"}\n{not json\n\xff\n')
    result = runner.invoke(app, ["validate", str(bad), "--out-dir", str(tmp_path / "out"), "--report-dir", str(tmp_path / "report"),
                                 "--no-mlflow", "--params", str(repo_root / "params.yaml")])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
    quarantine = [json.loads(line) for line in (tmp_path / "out/quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == 3  # every input row is accounted for


def test_bad_params_stop_with_the_key(repo_root, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((repo_root / "params.yaml").read_text().replace("max_length: 512", "max_length: lots"))
    result = runner.invoke(app, ["ingest", "--out", str(tmp_path / "p.jsonl"), "--params", str(params)])
    assert result.exit_code == 2
    assert "train.sft.max_length" in result.output
