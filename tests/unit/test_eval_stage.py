"""Evaluation pieces the stage adds on top of grading: sampled metrics and the comparison report."""

import json

import pytest

from cft.evaluate.metrics import sampled_metrics
from cft.stages.report import compare_files


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


def test_evaluate_stage_scores_benchmarks_and_the_model_as_critic(tmp_path, repo_root):
    """One real (tiny, random) model: benchmark predictions, held-out critic (a sample across
    problem sources) and self-critique, every critique kept with its parsed verdict and the truth
    it is scored against; the MLflow run tagged with the held-out data's run group."""
    import yaml
    from registry_helpers import build_checkpoint

    from cft.config import parse_params
    from mlflow import MlflowClient

    from cft.data.io import read_jsonl, write_jsonl
    from cft.registry.tracking import RUN_GROUP_TAG, resolve_tracking_uri, run_group
    from cft.stages import evaluate

    model = build_checkpoint(tmp_path / "tiny")
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["evaluate"].update(benchmarks=[{"name": "gsm8k", "limit": 3}, {"name": "math-500", "limit": 2}],
                            max_new_tokens=8, critic={"limit": 4, "max_new_tokens": 8})
    data["register"].update(tracking_uri=f"sqlite:///{tmp_path}/mlruns.db", artifact_location=str(tmp_path / "mlartifacts"))
    params = parse_params(data)
    heldout = tmp_path / "heldout/critic.jsonl"
    # In ingest order, as the build stage writes it: four rows of one source, then two of another.
    write_jsonl(heldout, [{"id": f"r{i}", "source": "gsm8k" if i < 4 else "math", "question": f"What is {i}+{i}?",
                           "response": f"\\boxed{{{2 * i + i % 2}}}", "correct": i % 2 == 0} for i in range(6)])

    metrics = evaluate.run(params, str(model), "tiny", tmp_path / "out", tmp_path / "m.json", heldout)

    assert metrics["name"] == "tiny" and set(metrics["benchmarks"]) == {"gsm8k", "math-500"}
    assert metrics["critic"]["n"] == 4 and metrics["critic"]["wrong_fraction"] == 0.5
    assert metrics["self_critique"]["n"] == 4  # spread over both benchmarks
    assert len(read_jsonl(tmp_path / "out/predictions.jsonl")) == 5
    critiques = read_jsonl(tmp_path / "out/critiques.jsonl")
    assert [c["kind"] for c in critiques] == ["heldout"] * 4 + ["self"] * 4
    assert {c["id"] for c in critiques if c["kind"] == "heldout"} == {"r0", "r1", "r4", "r5"}  # both sources
    own = [c for c in critiques if c["kind"] == "self"]
    assert {p["benchmark"] for p in read_jsonl(tmp_path / "out/predictions.jsonl") if p["id"] in {c["id"] for c in own}} == {"gsm8k", "math-500"}
    assert all(c["verdict"] in (None, "right", "wrong") and isinstance(c["correct"], bool) for c in critiques)

    client = MlflowClient(resolve_tracking_uri(params.register_))
    [run] = client.search_runs([client.get_experiment_by_name(params.register_.experiment).experiment_id])
    assert metrics["run_group"] == run_group(heldout.parent) == run.data.tags[RUN_GROUP_TAG]
    # No held-out files: no group, so no tag (not one digest of nothing that unrelated runs share).
    (tmp_path / "empty").mkdir()
    assert run_group(tmp_path / "missing") is None and run_group(tmp_path / "empty") is None
    run_id = evaluate.log_to_mlflow(params, "elsewhere/model", "other", {"average": 1.0}, run_group(tmp_path / "missing"))
    assert RUN_GROUP_TAG not in client.get_run(run_id).data.tags
