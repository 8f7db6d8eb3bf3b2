"""The whole pipeline on the embedded default, for real, in a temporary copy of the project.

It runs every stage once through the Prefect flow (which runs them through DVC), then
checks the artifacts, the instruments (held-out loss, critic metrics, the report), the
registry and DVC's bookkeeping.
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
    assert len(problems) >= 150
    assert {"id", "source", "question", "gold_answer", "solution"} <= problems[0].keys()

    responses = _rows(root / "data/responses.jsonl")
    assert len(responses) == len(problems)
    assert {"id", "problem_id", "model", "response", "extracted_answer", "correct"} <= responses[0].keys()
    assert {r["correct"] for r in responses} == {True, False}  # the reference student: right and wrong

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

    # the held-out split: by question, the same questions for every mode
    cft_rows, heldout = _rows(root / "data/train/cft.jsonl"), _rows(root / "data/train/heldout/cft.jsonl")
    assert len(cft_rows) + len(heldout) == len(clean) and heldout
    assert not {r["question"] for r in cft_rows} & {r["question"] for r in heldout}
    assert cft_rows[0]["prompt"][0]["content"].startswith("Please critique whether the following solution")
    assert cft_rows[0]["completion"][0]["content"].startswith("Critique:\n")
    assert {r["mode"] for r in _rows(root / "data/train/sft.jsonl")} >= {"sft_noisy", "sft_verified", "sft_teacher"}

    # CFT and the sft_verified baseline, trained side by side: held-out loss falls below the base model's
    modes = yaml.safe_load((root / "params.yaml").read_text())["train"]["modes"]
    assert set(modes) == {"cft", "sft_verified"}
    for mode in modes:
        assert (root / f"models/{mode}/config.json").exists()
        train = json.loads((root / f"metrics/train/{mode}.json").read_text())
        assert train["steps"] > 0 and train["n_heldout"] > 0
        assert train["heldout_loss_final"] < train["heldout_loss_start"], (mode, train)
        header = (root / f"plots/train/{mode}.csv").read_text().splitlines()[0]
        assert header.split(",")[:3] == ["step", "loss", "heldout_loss"]

    # every model evaluated on the benchmarks and as a critic (held-out pairs and its own answers)
    for name in ["base", *modes]:
        evaluation = json.loads((root / f"metrics/eval/{name}.json").read_text())
        assert {"math-500", "gsm8k"} <= evaluation["benchmarks"].keys()
        assert 0.0 <= evaluation["average"] <= 100.0
        for kind in ("critic", "self_critique"):
            metrics = evaluation[kind]
            assert metrics["n"] > 0 and 0.0 <= metrics["no_verdict_rate"] <= 1.0
            assert {"accuracy", "balanced_accuracy", "f1_wrong"} <= metrics.keys()
        predictions = _rows(root / f"data/eval/{name}/predictions.jsonl")
        assert {"question", "response", "extracted_answer", "gold_answer", "correct", "grading_error"} <= predictions[0].keys()
        assert _rows(root / f"data/eval/{name}/critiques.jsonl")

    # the report: every model side by side, nothing empty
    table = (root / "reports/comparison/comparison.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("|")] == ["base", *modes]
    assert "Held-out loss, after" in table and "Critic bal. acc." in table
    png = (root / "reports/comparison/comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000

    registry = json.loads((root / "metrics/registry.json").read_text())
    assert registry["version"] == 1 and registry["champion"] is True and registry["metric"] == "average"
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlruns.db'}")
    for alias in ("challenger", "champion"):
        assert int(client.get_model_version_by_alias(registry["model_name"], alias).version) == 1
    train_run = client.get_run(registry["run_id"])
    assert "train.sft.learning_rate" in train_run.data.params
    assert "eval.average" in train_run.data.metrics and "eval.critic.balanced_accuracy" in train_run.data.metrics
    assert any(k.endswith("loss") for k in train_run.data.metrics)
    # MLflow groups the pipeline's runs: both trainings and the base model's evaluation share a tag
    group = train_run.data.tags["cft.run_group"]
    grouped = client.search_runs([train_run.info.experiment_id], f"tags.`cft.run_group` = '{group}'")
    assert {r.info.run_name for r in grouped} >= {"train-cft", "train-sft_verified", "evaluate-base"}
    assert f"`cft.run_group` = `{group}`" in table  # the report says which group to filter on
    # lineage: the version leads back to the exact data it was trained on
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    validated_md5 = next(o["md5"] for o in lock["stages"]["validate"]["outs"] if o["path"] == "data/validated")
    champion = client.get_model_version_by_alias(registry["model_name"], "champion")
    assert champion.tags["lineage.dvc.data/validated"] == validated_md5

    # a second `dvc repro` with nothing changed does nothing
    out = run(["dvc", "repro"], root, env, timeout=300)
    assert "Running stage" not in out
    assert "Data and pipelines are up to date" in run(["dvc", "status"], root, env)

    # changing a train parameter would re-run the trainings and only what follows them
    from cft.stages.graph import downstream, order, stage_graph, stale

    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("learning_rate: 3.0e-3", "learning_rate: 2.0e-3"))
    changed = stale(root, order(root))
    assert set(changed) == {"train@cft", "train@sft_verified"}
    graph = stage_graph(root)
    after = set().union(*(downstream(graph, s) for s in changed))
    assert after == {*changed, "evaluate@cft", "evaluate@sft_verified", "report", "register"}
    (root / "params.yaml").write_text(params)

    # more problems: respond generates only their rows, everything else is reused
    (root / "params.yaml").write_text(params.replace("format: svamp\n      limit: 140", "format: svamp\n      limit: 150"))
    run(["dvc", "repro", "respond"], root, env, timeout=600)
    respond = json.loads((root / "metrics/respond.json").read_text())
    assert respond["generated"] == 10 and respond["reused"] == len(responses)
    assert len(_rows(root / "data/responses.jsonl")) == len(responses) + 10


def test_after_a_run_git_lists_only_what_a_user_commits(project, repo_root):
    """dvc.lock, the .gitignore files DVC writes and the outputs DVC leaves to git (metrics, plots)."""
    from project_copy import TOP_LEVEL_OUTPUTS

    from cft.stages.graph import uncached_outputs

    root, env = project
    listed = run(["git", "status", "--porcelain", "--untracked-files=all"], root, env).splitlines()
    paths = [line[3:].strip('"') for line in listed]
    # the project's own files: tracked in this checkout, or new and not ignored (not committed yet)
    sources = set(run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], repo_root, env).splitlines())
    made_by_the_run = [p for p in paths if p.split("/")[0] in TOP_LEVEL_OUTPUTS or p not in sources]
    allowed = {"dvc.lock", *uncached_outputs(root)}
    unexpected = [p for p in made_by_the_run if p not in allowed and not p.endswith(".gitignore")]
    assert not unexpected, f"git status shows files a user should not commit: {unexpected}"
    assert "dvc.lock" in made_by_the_run
