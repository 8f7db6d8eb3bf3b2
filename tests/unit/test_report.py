"""Metrics (accuracy, pass@k, majority vote, summary) and the Table-2 style report."""

import json
import math

import pytest

from cft.evaluate.metrics import accuracy, majority_vote, pass_at_k, summarise
from cft.evaluate.report import comparison_table, report_chart, results_from_summaries

PAPER_LIKE = {
    "base": {"math-500": 55.4, "minerva_math": 13.6, "gsm8k": 91.6, "olympiadbench": 16.1, "aime24": 10.0, "amc23": 40.0},
    "SFT": {"math-500": 62.0, "minerva_math": 20.2, "gsm8k": 84.0, "olympiadbench": 25.5, "aime24": 3.3, "amc23": 45.0},
    "CFT": {"math-500": 79.4, "minerva_math": 38.2, "gsm8k": 88.8, "olympiadbench": 41.6, "aime24": 6.7, "amc23": 62.5},
}


def test_accuracy():
    assert accuracy([True, False, True, True]) == 0.75
    with pytest.raises(ValueError):
        accuracy([])


def test_pass_at_k():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert math.isclose(pass_at_k(10, 3, 1), 0.3)
    assert math.isclose(pass_at_k(5, 2, 2), 1 - math.comb(3, 2) / math.comb(5, 2))
    assert pass_at_k(4, 2, 3) == 1.0  # fewer wrong samples than k
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 0)


def test_majority_vote():
    assert majority_vote(["1", "2", "2", None]) == "2"
    assert majority_vote(["\\frac{1}{2}", "\\dfrac{1}{2}", "3"]) == "\\frac{1}{2}"  # same after normalising
    assert majority_vote(["4", "5"]) == "4"  # tie: first seen
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None


def test_summarise():
    summary = summarise({"gsm8k": [True, True, False, False], "math-500": [True]})
    assert summary["benchmarks"] == {"gsm8k": {"accuracy": 50.0, "n": 4}, "math-500": {"accuracy": 100.0, "n": 1}}
    assert summary["average"] == 75.0  # unweighted over benchmarks, not over rows
    with pytest.raises(ValueError):
        summarise({})


def test_comparison_table_layout():
    table = comparison_table(PAPER_LIKE)
    lines = table.strip().splitlines()
    assert lines[0] == "| Model | MATH500 | Minerva-Math | GSM8K | OlympiadBench | AIME24 | AMC23 | Avg |"
    assert lines[1].count("|") == 9
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["base", "SFT", "CFT"]
    cft_row = lines[4]
    assert "**79.4**" in cft_row  # best per column in bold
    assert cft_row.rstrip(" |").endswith("**52.9**")  # (79.4+38.2+88.8+41.6+6.7+62.5)/6


def test_comparison_table_missing_cells_and_order():
    table = comparison_table({"a": {"gsm8k": 50.0, "math-500": 40.0, "custom": 1.0}, "b": {"gsm8k": 60.0}})
    header, _, row_a, row_b = table.strip().splitlines()
    assert header == "| Model | MATH500 | GSM8K | custom | Avg |"
    assert row_b == "| b | - | **60.0** | - | - |"  # no Avg over a partial row
    assert row_a.endswith("| **30.3** |")


def test_results_from_summaries():
    summary = summarise({"gsm8k": [True, False]})
    assert results_from_summaries({"m": summary}) == {"m": {"gsm8k": 50.0}}


def test_report_chart_with_benchmarks_only_writes_png(tmp_path):
    path = report_chart(tmp_path / "plots" / "compare.png", PAPER_LIKE, curves={}, critic={}, self_critique={})
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000


def test_report_stage_shows_heldout_loss_and_critic_metrics(tmp_path):
    from cft.stages.report import loss_curves, write_report

    critic = {"n": 10, "accuracy": 0.6, "balanced_accuracy": 0.55, "f1_wrong": 0.7, "no_verdict_rate": 0.1}
    silent = {"n": 10, "accuracy": 0.0, "balanced_accuracy": 0.0, "f1_wrong": None, "no_verdict_rate": 1.0}
    zeros = {"benchmarks": {"gsm8k": {"accuracy": 0.0, "n": 5}}, "average": 0.0}
    zeros["run_group"] = "heldout-0123456789ab"
    evaluations = {"base": {**zeros, "critic": silent, "self_critique": silent},
                   "cft": {**zeros, "critic": critic, "self_critique": silent}}
    history = [{"step": 0, "eval_loss": 8.3}, {"step": 5, "loss": 6.0}, {"step": 10, "loss": 4.0, "eval_loss": 4.5}]
    trainings = {"cft": {"heldout_loss_start": 8.3, "heldout_loss_final": 4.5, "log_history": history}}

    table = write_report(evaluations, trainings, tmp_path)
    header, _, base, cft = table.strip().splitlines()
    assert header.startswith("| Model | GSM8K | Avg | Held-out loss, before | Held-out loss, after | Critic bal. acc.")
    assert base.split("|")[4].strip() == "-" and "**4.500**" in cft and "8.300" in cft and "**8.300**" not in cft
    assert loss_curves(history) == {"train": [(5, 6.0), (10, 4.0)], "heldout": [(0, 8.3), (10, 4.5)]}
    assert "`cft.run_group` = `heldout-0123456789ab`" in (tmp_path / "comparison.md").read_text()
    assert (tmp_path / "comparison.png").stat().st_size > 20_000
    assert set(json.loads((tmp_path / "comparison.json").read_text())["models"]) == {"base", "cft"}
