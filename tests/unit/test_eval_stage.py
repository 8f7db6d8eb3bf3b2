"""Evaluation pieces the stage adds on top of grading: sampled metrics and the comparison report."""

import json

import pytest

from cft.evaluate.metrics import sampled_metrics
from cft.stages.evaluate import compare_files


def test_sampled_metrics_pass_at_k_and_majority():
    samples = [
        [("4", True), ("5", False), ("4", True)],  # majority 4: right
        [("7", False), ("7", False), ("3", True)],  # majority 7: wrong, but pass@2 can hit
        [(None, False), (None, False), (None, False)],  # no answer at all
    ]
    metrics = sampled_metrics(samples, [1, 3])
    assert metrics["maj@3"] == pytest.approx(100 / 3)
    assert metrics["pass@3"] == pytest.approx(200 / 3)
    assert metrics["pass@1"] == pytest.approx(100 * (2 / 3 + 1 / 3) / 3)


def test_compare_files_lays_out_table_2(tmp_path):
    for name, (m500, gsm) in {"sft": (10.0, 20.0), "cft": (30.0, 40.0)}.items():
        summary = {"benchmarks": {"math-500": {"accuracy": m500, "n": 5}, "gsm8k": {"accuracy": gsm, "n": 5}}, "average": (m500 + gsm) / 2}
        (tmp_path / f"{name}.json").write_text(json.dumps(summary))
    table = compare_files({"sft": tmp_path / "sft.json", "cft": tmp_path / "cft.json"}, tmp_path / "report")
    header, _, sft_row, cft_row = table.strip().splitlines()
    assert header == "| Model | MATH500 | GSM8K | Avg |"
    assert sft_row.startswith("| sft | 10.0 | 20.0 | 15.0")
    assert "**35.0**" in cft_row
    assert (tmp_path / "report/comparison.png").read_bytes().startswith(b"\x89PNG")
