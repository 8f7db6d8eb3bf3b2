"""The flows' own logic: the retrain decision, stage order, routing and task bodies (`.fn()`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows import pipeline
from flows.pipeline import inject_fault, ran_stages, runs_on_gpu_pool, topological, upstream
from flows.retrain import Decision, ModelVersionInfo, decide_retrain, locked_md5s

VALIDATED, CRITIQUES = "data/validated", "data/critiques.jsonl"
NOW = {VALIDATED: "aaa111.dir", CRITIQUES: "bbb222"}


def champion(version="3", **lineage):
    return ModelVersionInfo(version, "champion", lineage)


# --- the decision -------------------------------------------------------------------------


def test_no_champion_retrains():
    assert decide_retrain(NOW, None) == Decision(True, "no champion model version yet")


def test_champion_without_lineage_retrains():
    decision = decide_retrain(NOW, champion())
    assert decision.retrain and "no lineage tags" in decision.reason and "lineage.dvc.data/validated" in decision.reason


def test_unchanged_data_skips_and_says_why():
    decision = decide_retrain(NOW, champion(**NOW))
    assert not decision.retrain
    assert decision.reason.startswith("critique data unchanged since champion v3")
    assert "data/validated md5 aaa111" in decision.reason


@pytest.mark.parametrize("changed", [VALIDATED, CRITIQUES])
def test_any_changed_path_retrains(changed):
    old = {**NOW, changed: "0ld0ld"}
    decision = decide_retrain(NOW, champion(**old))
    assert decision.retrain
    assert decision.reason.startswith("critique data changed since champion v3")
    assert f"{changed}: 0ld0ld ->" in decision.reason
    assert [p for p in NOW if p in decision.reason.split("(", 1)[1]] == [changed]


def test_missing_output_counts_as_changed():
    decision = decide_retrain({VALIDATED: None, CRITIQUES: NOW[CRITIQUES]}, champion(**NOW))
    assert decision.retrain and "none" in decision.reason


def test_challenger_already_trained_on_this_data_skips():
    # the gate kept the champion; retraining on the same data again would change nothing
    rejected = ModelVersionInfo("4", "challenger", dict(NOW))
    decision = decide_retrain(NOW, champion(**{VALIDATED: "old.dir", CRITIQUES: "old"}), rejected)
    assert not decision.retrain
    assert "challenger v4" in decision.reason and "champion v3" in decision.reason


def test_challenger_on_other_data_does_not_stop_a_retrain():
    other = ModelVersionInfo("4", "challenger", {VALIDATED: "x.dir", CRITIQUES: "y"})
    assert decide_retrain(NOW, champion(**{VALIDATED: "old.dir", CRITIQUES: "old"}), other).retrain


def test_locked_md5s_reads_outputs_of_any_stage(tmp_path):
    lock = {
        "schema": "2.0",
        "stages": {
            "critique": {"cmd": "x", "outs": [{"path": CRITIQUES, "md5": "c1", "size": 3}]},
            "validate": {"cmd": "y", "deps": [{"path": CRITIQUES, "md5": "c1"}], "outs": [{"path": VALIDATED, "md5": "v1.dir", "nfiles": 2}]},
        },
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert locked_md5s(tmp_path / "dvc.lock") == {VALIDATED: "v1.dir", CRITIQUES: "c1"}
    assert locked_md5s(tmp_path / "missing.lock") == {VALIDATED: None, CRITIQUES: None}


# --- stage order ----------------------------------------------------------------------------


def test_topological_and_upstream_on_a_small_graph():
    graph = {"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": [], "e": ["d"]}
    assert topological(graph) == ["a", "b", "c", "d", "e"]
    assert upstream(graph, "c") == ["a", "c"]
    with pytest.raises(KeyError, match="no stage 'z'"):
        upstream(graph, "z")
    with pytest.raises(ValueError, match="cycle"):
        topological({"a": ["b"], "b": ["a"]})


def test_stage_order_of_the_project(repo_root):
    graph = pipeline.stage_graph(repo_root)
    order = topological(graph)
    assert set(order) == {"tiny_model", "ingest", "respond", "critique", "validate", "build", "train", "evaluate", "register"}
    for before, after in [("ingest", "respond"), ("tiny_model", "respond"), ("respond", "critique"), ("critique", "validate"),
                          ("validate", "build"), ("build", "train"), ("train", "evaluate"), ("evaluate", "register")]:
        assert order.index(before) < order.index(after), (before, after)
    # what the retrain flow reproduces before deciding: validate and what it needs, nothing after
    assert set(upstream(graph, "validate")) == {"tiny_model", "ingest", "respond", "critique", "validate"}


# --- routing and hooks -----------------------------------------------------------------------


def test_gpu_stages_go_to_the_gpu_pool_only_when_one_is_set():
    stages = ["respond", "train"]
    assert runs_on_gpu_pool("train", stages, "gpu")
    assert not runs_on_gpu_pool("build", stages, "gpu")
    assert not runs_on_gpu_pool("train", stages, None)


def test_params_orchestrate_section_is_valid(repo_root):
    from cft.config import load_params

    cfg = load_params(repo_root / "params.yaml").orchestrate
    assert set(cfg.gpu_stages) <= set(topological(pipeline.stage_graph(repo_root)))


def test_ran_stages_parses_dvc_output():
    out = "Stage 'ingest' didn't change, skipping\nRunning stage 'train':\n> cft train\nRunning stage 'evaluate':\n"
    assert ran_stages(out) == ["train", "evaluate"]


def test_fault_hook_fails_each_listed_stage_once(tmp_path, monkeypatch):
    faults = tmp_path / "faults"
    faults.write_text("train\nbuild\ntrain\n")
    monkeypatch.setenv(pipeline.FAULT_ENV, str(faults))
    inject_fault("evaluate")  # not listed: nothing
    for _ in range(2):
        with pytest.raises(RuntimeError, match="injected transient failure in stage train"):
            inject_fault("train")
    inject_fault("train")
    assert faults.read_text() == "build\n"
    monkeypatch.delenv(pipeline.FAULT_ENV)
    inject_fault("build")  # the hook is off without the variable


def test_schedule_from_params():
    from cft.config import OrchestrateConfig
    from flows.deploy import _schedules

    assert _schedules(OrchestrateConfig()) == []
    (cron,) = _schedules(OrchestrateConfig(schedule_cron="0 3 * * *", timezone="Europe/Berlin"))
    assert (cron.cron, cron.timezone) == ("0 3 * * *", "Europe/Berlin")


# --- task bodies on a tiny DVC project --------------------------------------------------------


@pytest.fixture
def tiny_dvc(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    env_python = [sys.executable, "-m", "dvc"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([*env_python, "init", "-q"], cwd=root, check=True)
    subprocess.run([*env_python, "remote", "add", "-d", "-q", "local", str(tmp_path / "remote")], cwd=root, check=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"hello": {"cmd": "echo hi > out.txt", "outs": ["out.txt"]}}}))
    return root


def test_reproduce_stage_and_push_task_bodies(tiny_dvc):
    assert pipeline.reproduce_stage.fn("hello", str(tiny_dvc)) == ["hello"]
    assert (tiny_dvc / "out.txt").read_text().strip() == "hi"
    assert pipeline.reproduce_stage.fn("hello", str(tiny_dvc)) == []  # up to date: DVC skips it
    assert pipeline.reproduce_stage.fn("hello", str(tiny_dvc), force=True) == ["hello"]
    pipeline.push.fn(str(tiny_dvc))
    assert any((tiny_dvc.parent / "remote").rglob("*")), "nothing pushed"
    with pytest.raises(RuntimeError, match="dvc repro --single-item nope"):
        pipeline.reproduce_stage.fn("nope", str(tiny_dvc))


def test_decide_task_reads_the_champion_lineage_from_mlflow(tmp_path, repo_root):
    from mlflow import MlflowClient

    from flows.retrain import decide

    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"stages": {"validate": {"outs": [{"path": VALIDATED, "md5": "v1.dir"}]},
                                                                   "critique": {"outs": [{"path": CRITIQUES, "md5": "c1"}]}}}))
    assert decide.fn(str(tmp_path)).reason == "no champion model version yet"  # no database yet

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    name = yaml.safe_load((tmp_path / "params.yaml").read_text())["register"]["model_name"]
    client.create_registered_model(name)
    version = client.create_model_version(name, source=str(tmp_path), tags={f"lineage.dvc.{VALIDATED}": "v1.dir", f"lineage.dvc.{CRITIQUES}": "c1"})
    client.set_registered_model_alias(name, "champion", version.version)
    decision = decide.fn(str(tmp_path))
    assert not decision.retrain and decision.reason.startswith("critique data unchanged since champion v1")
    assert decide.fn(str(tmp_path), force=True) == Decision(True, "forced")
