"""The whole pipeline on the embedded default, for real, in a temporary copy of the project.

One test on purpose: it runs every stage once through the Prefect flow (which runs
them through DVC), then checks the artifacts, the registry and DVC's bookkeeping.
"""

import json
import sys
from pathlib import Path

import pytest
import yaml
from project_copy import copy_project, project_env, run

pytestmark = pytest.mark.integration


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def project(tmp_path_factory, repo_root):
    root = copy_project(repo_root, tmp_path_factory.mktemp("cft") / "project")
    env = project_env()
    run([sys.executable, "-m", "flows.pipeline"], root, env)
    return root, env


def test_pipeline_end_to_end(project):
    root, env = project

    problems = _rows(root / "data/problems.jsonl")
    assert len(problems) >= 200
    assert {"id", "source", "question", "gold_answer", "solution"} <= problems[0].keys()

    responses = _rows(root / "data/responses.jsonl")
    assert len(responses) == len(problems)
    assert {"id", "problem_id", "model", "sampling", "response", "extracted_answer", "correct"} <= responses[0].keys()

    critiques = _rows(root / "data/critiques.jsonl")
    assert len(critiques) == len(responses)
    assert all(c["critique"].rstrip().endswith(("Conclusion: right [END]", "Conclusion: wrong [END]")) for c in critiques)
    assert all(c["verdict"] in ("right", "wrong") for c in critiques)

    clean = _rows(root / "data/validated/clean.jsonl")
    quarantine = _rows(root / "data/validated/quarantine.jsonl") if (root / "data/validated/quarantine.jsonl").exists() else []
    assert len(clean) + len(quarantine) == len(critiques)
    summary = json.loads((root / "metrics/validation.json").read_text())
    assert summary["n_input"] == len(critiques)
    assert (root / "reports/validation/data_docs/index.html").exists()

    cft_rows = _rows(root / "data/train/cft.jsonl")
    assert len(cft_rows) == len(clean)
    assert cft_rows[0]["prompt"][0]["content"].startswith("Please critique whether the following solution")
    assert cft_rows[0]["completion"][0]["content"].startswith("Critique:\n")
    assert {r["mode"] for r in _rows(root / "data/train/sft.jsonl")} >= {"sft_noisy", "sft_teacher"}

    assert (root / "models/cft/config.json").exists()
    train = json.loads((root / "metrics/train.json").read_text())
    assert train["steps"] > 0
    assert "loss" in (root / "plots/train_loss.csv").read_text().splitlines()[0]

    evaluation = json.loads((root / "metrics/eval.json").read_text())
    assert {"math-500", "gsm8k"} <= evaluation["benchmarks"].keys()
    assert 0.0 <= evaluation["average"] <= 100.0
    predictions = _rows(root / "data/eval/predictions.jsonl")
    assert {"question", "response", "extracted_answer", "gold_answer", "correct"} <= predictions[0].keys()

    registry = json.loads((root / "metrics/registry.json").read_text())
    assert registry["version"] == 1 and registry["champion"] is True
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlruns.db'}")
    for alias in ("challenger", "champion"):
        assert int(client.get_model_version_by_alias(registry["model_name"], alias).version) == 1
    train_run = client.get_run(registry["run_id"])
    assert "train.learning_rate" in train_run.data.params
    assert "eval.average" in train_run.data.metrics
    assert any(k == "loss" or k.endswith("loss") for k in train_run.data.metrics)
    # lineage: the version leads back to the exact data it was trained on
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    validated_md5 = next(o["md5"] for o in lock["stages"]["validate"]["outs"] if o["path"] == "data/validated")
    champion = client.get_model_version_by_alias(registry["model_name"], "champion")
    assert champion.tags["lineage.dvc.data/validated"] == validated_md5

    # a second `dvc repro` with nothing changed does nothing
    out = run(["dvc", "repro"], root, env, timeout=300)
    assert "Running stage" not in out
    assert "Data and pipelines are up to date" in run(["dvc", "status"], root, env)

    # changing a train parameter re-runs train and only what follows it
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("learning_rate: 1.0e-3", "learning_rate: 2.0e-3"))
    out = run(["dvc", "repro"], root, env, timeout=600)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"train", "evaluate", "register"}

    # the retrained model is a new version and the challenger; champion only if it is better
    second = json.loads((root / "metrics/registry.json").read_text())
    assert second["version"] == 2
    assert int(client.get_model_version_by_alias(second["model_name"], "challenger").version) == 2
    expected_champion = 2 if second["challenger_average"] > registry["challenger_average"] else 1
    assert int(client.get_model_version_by_alias(second["model_name"], "champion").version) == expected_champion

    # ten more problems: respond generates only their rows, everything else is reused
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("format: svamp\n      limit: 120", "format: svamp\n      limit: 130"))
    run(["dvc", "repro"], root, env, timeout=600)
    respond = json.loads((root / "metrics/respond.json").read_text())
    assert respond["generated"] == 10 and respond["reused"] == len(responses)
    assert len(_rows(root / "data/responses.jsonl")) == len(responses) + 10
