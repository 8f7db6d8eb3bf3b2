"""The flows' pieces: the retrain decision, the stage graph from DVC, routing, live logs, task bodies (`.fn()`)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cft.registry.retrain import Decision, ModelVersionInfo, decide_retrain, registration_outcome, training_inputs
from cft.stages import graph
from flows import pipeline
from flows.pipeline import inject_fault, runs_on_gpu_pool

TRAIN_DATA, BASE = "data/train", "models/tiny"
NOW = {TRAIN_DATA: "aaa111.dir", BASE: "bbb222.dir"}


def champion(version="3", **lineage):
    return ModelVersionInfo(version, ("champion",), lineage)


# --- the decision -------------------------------------------------------------------------


def test_no_champion_retrains():
    assert decide_retrain(NOW, None) == Decision(True, "no champion model version yet")


def test_champion_without_lineage_retrains():
    decision = decide_retrain(NOW, champion())
    assert decision.retrain and "no lineage tags" in decision.reason and "lineage.dvc.data/train" in decision.reason


def test_unchanged_training_data_skips_and_says_why():
    decision = decide_retrain(NOW, champion(**NOW))
    assert not decision.retrain
    assert decision.reason.startswith("training data unchanged since champion v3")
    assert "data/train md5 aaa111" in decision.reason


@pytest.mark.parametrize("changed", [TRAIN_DATA, BASE])
def test_any_changed_input_retrains(changed):
    old = {**NOW, changed: "0ld0ld"}
    decision = decide_retrain(NOW, champion(**old))
    assert decision.retrain and not decision.force
    assert decision.reason.startswith("training data changed since champion v3")
    assert f"{changed}: 0ld0ld ->" in decision.reason
    assert [p for p in NOW if p in decision.reason.split("(", 1)[1]] == [changed]


def test_critique_data_alone_is_no_reason_to_retrain():
    # the champion's lineage also holds the critique files; a new validation summary or other
    # rejected rows change them, but not what training reads
    lineage = {**NOW, "data/validated": "old.dir", "data/critiques.jsonl": "old"}
    assert not decide_retrain(NOW, champion(**lineage)).retrain


def test_missing_input_counts_as_changed():
    decision = decide_retrain({TRAIN_DATA: None, BASE: NOW[BASE]}, champion(**NOW))
    assert decision.retrain and "none" in decision.reason


def test_another_version_already_trained_on_this_data_skips():
    # the gate kept the champion (or a person rolled back); training again would make the same model
    rejected = ModelVersionInfo("4", ("challenger",), dict(NOW))
    old = champion(**{TRAIN_DATA: "old.dir", BASE: NOW[BASE]})
    decision = decide_retrain(NOW, old, [old, rejected])
    assert not decision.retrain
    assert "v4 (challenger)" in decision.reason and "champion v3" in decision.reason


def test_without_a_champion_a_version_already_trained_on_this_data_skips():
    # its evaluation failed, so the gate never promoted it: retraining every night would
    # only make the same model again
    unpromoted = ModelVersionInfo("1", ("challenger",), dict(NOW))
    decision = decide_retrain(NOW, None, [unpromoted])
    assert not decision.retrain and "v1 (challenger)" in decision.reason and "no version is champion" in decision.reason
    assert decide_retrain({TRAIN_DATA: None, BASE: None}, None, [ModelVersionInfo("1")]).retrain  # nothing built: no match


def test_a_version_on_other_data_does_not_stop_a_retrain():
    other = ModelVersionInfo("4", ("challenger",), {TRAIN_DATA: "x.dir", BASE: "y.dir"})
    assert decide_retrain(NOW, champion(**{TRAIN_DATA: "old.dir", BASE: "old.dir"}), [other]).retrain


def test_force_retrains_unchanged_data_and_says_so():
    decision = decide_retrain(NOW, champion(**NOW), force=True)
    assert decision.retrain and decision.force
    assert decision.reason.startswith("forced (training data unchanged since champion v3")


# --- the stage graph, from DVC ---------------------------------------------------------------


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def tiny_dvc(tmp_path):
    """A DVC project with a `foreach` stage group: a -> train@x, train@y -> report."""
    root = tmp_path / "p"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    _dvc(root, "remote", "add", "-d", "-q", "local", str(tmp_path / "remote"))
    stages = {
        "a": {"cmd": "echo hi > a.txt", "outs": ["a.txt"]},
        "train": {
            "foreach": ["x", "y"],
            "do": {"cmd": "cat a.txt > m-${item}.txt && echo '{}' > met-${item}.json", "deps": ["a.txt"],
                   "outs": ["m-${item}.txt"], "metrics": [{"met-${item}.json": {"cache": False}}]},
        },
        "report": {"cmd": "cat m-x.txt m-y.txt > r.md", "deps": ["m-x.txt", "m-y.txt"], "outs": ["r.md"]},
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    return root


def test_stage_graph_names_stages_as_dvc_does(tiny_dvc, monkeypatch):
    monkeypatch.chdir(tiny_dvc.parent)  # DVC's API resolves against the working directory: graph must not
    g = graph.stage_graph(tiny_dvc)
    assert g == {"a": [], "train@x": ["a"], "train@y": ["a"], "report": ["train@x", "train@y"]}
    assert graph.topological(g) == ["a", "train@x", "train@y", "report"]
    assert graph.upstream(g, "train") == ["a", "train@x", "train@y"]  # a foreach group: all its stages
    assert graph.upstream(g, "train@x") == ["a", "train@x"]
    assert graph.downstream(g, "train") == ["train@x", "train@y", "report"]
    with pytest.raises(KeyError, match="no stage 'z'"):
        graph.upstream(g, "z")
    with pytest.raises(ValueError, match="cycle"):
        graph.topological({"a": ["b"], "b": ["a"]})
    assert graph.outputs(tiny_dvc, "train@x") == ["m-x.txt", "met-x.json"]
    assert graph.outputs(tiny_dvc, "train", metrics=True) == ["met-x.json", "met-y.json"]
    assert graph.uncached_outputs(tiny_dvc) == ["met-x.json", "met-y.json"]
    assert graph.producer(tiny_dvc, "m-y.txt") == "train@y" and graph.producer(tiny_dvc, "nope") is None


def test_stale_and_recorded_hashes_follow_dvc(tiny_dvc):
    assert graph.stale(tiny_dvc, ["a", "train"]) == ["a", "train@x", "train@y"]  # never ran
    assert graph.stage_inputs(tiny_dvc, "report") == {"m-x.txt": None, "m-y.txt": None}
    _dvc(tiny_dvc, "repro")
    assert graph.stale(tiny_dvc, ["a", "train", "report"]) == []
    recorded = graph.recorded_outputs(tiny_dvc)
    assert set(recorded) == {"a.txt", "m-x.txt", "m-y.txt", "met-x.json", "met-y.json", "r.md"}
    assert graph.stage_inputs(tiny_dvc, "report") == {"m-x.txt": recorded["m-x.txt"], "m-y.txt": recorded["m-y.txt"]}
    assert graph.upstream_data(tiny_dvc, "report") == {k: v for k, v in recorded.items() if k != "r.md"}
    (tiny_dvc / "m-y.txt").write_text("edited\n")
    assert graph.stale(tiny_dvc, ["a", "train", "report"]) == ["train@y", "report"]  # its output and a dep changed


def test_stage_order_of_the_project(repo_root):
    g = graph.stage_graph(repo_root)
    order = graph.topological(g)
    assert set(order) == {"tiny_model", "ingest", "respond", "critique", "validate", "build", "train@cft",
                          "train@sft_verified", "evaluate@cft", "evaluate@sft_verified", "baseline@base", "report", "register"}
    for before, after in [("ingest", "respond"), ("tiny_model", "respond"), ("respond", "critique"), ("critique", "validate"),
                          ("validate", "build"), ("build", "train@cft"), ("train@cft", "evaluate@cft"),
                          ("train@sft_verified", "evaluate@sft_verified"), ("build", "baseline@base"),
                          ("evaluate@cft", "register"), ("evaluate@sft_verified", "report"), ("baseline@base", "report")]:
        assert order.index(before) < order.index(after), (before, after)
    # what the retrain flow reproduces before deciding: everything but train and what follows it
    assert set(graph.downstream(g, "train")) == {"train@cft", "train@sft_verified", "evaluate@cft", "evaluate@sft_verified",
                                                 "register", "report"}


def _lock(root: Path, outs: dict[str, dict[str, str]]) -> None:
    stages = {s: {"cmd": s, "outs": [{"path": p, "hash": "md5", "md5": m} for p, m in paths.items()]} for s, paths in outs.items()}
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))


def test_training_inputs_are_what_the_train_stage_reads(tmp_path, repo_root):
    # a plain folder (no `dvc init`), as a registry test has: DVC reads dvc.yaml and dvc.lock
    shutil.copy(repo_root / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")  # dvc.yaml's foreach lists come from it
    _lock(tmp_path, {"tiny_model": {BASE: "t1.dir"}, "validate": {"data/validated": "v1.dir"}, "build": {TRAIN_DATA: "b1.dir"}})
    assert training_inputs(tmp_path) == {TRAIN_DATA: "b1.dir", BASE: "t1.dir"}


def test_the_outcome_names_only_this_runs_registration(tmp_path, repo_root):
    shutil.copy(repo_root / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")  # dvc.yaml's foreach lists come from it
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/registry.json").write_text(json.dumps({"model_name": "m", "version": 7, "champion": False, "reason": "worse"}))
    assert registration_outcome(tmp_path, ["train", "evaluate", "register"]) == "model m v7 (challenger: worse)"
    # the file is from an earlier run: this one registered nothing
    assert registration_outcome(tmp_path, ["build"]) == "no model registered by this run"


def test_decide_task_reads_the_registered_versions_from_mlflow(tmp_path, repo_root):
    from mlflow import MlflowClient

    from flows.retrain import decide

    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(repo_root / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")  # dvc.yaml's foreach lists come from it
    _lock(tmp_path, {"tiny_model": {BASE: "t1.dir"}, "build": {TRAIN_DATA: "b1.dir"}})
    assert decide.fn(str(tmp_path)).reason == "no champion model version yet"  # no database yet

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    name = yaml.safe_load((tmp_path / "params.yaml").read_text())["register"]["model_name"]
    client.create_registered_model(name)
    version = client.create_model_version(name, source=str(tmp_path), tags={f"lineage.dvc.{TRAIN_DATA}": "b1.dir", f"lineage.dvc.{BASE}": "t1.dir"})
    client.set_registered_model_alias(name, "champion", version.version)
    decision = decide.fn(str(tmp_path))
    assert not decision.retrain and decision.reason.startswith("training data unchanged since champion v1")
    forced = decide.fn(str(tmp_path), force=True)
    assert forced.retrain and forced.force


# --- routing, deployment and hooks ------------------------------------------------------------


def test_gpu_stages_go_to_the_gpu_pool_only_when_one_is_set():
    stages = ["respond", "train"]
    assert runs_on_gpu_pool("train", stages, "gpu")
    assert runs_on_gpu_pool("train@sft_verified", stages, "gpu")  # a stage of the foreach group `train`
    assert not runs_on_gpu_pool("build", stages, "gpu")
    assert not runs_on_gpu_pool("train", stages, None)


def test_params_orchestrate_section_is_valid(repo_root):
    from cft.config import load_params

    cfg = load_params(repo_root / "params.yaml").orchestrate
    assert set(cfg.gpu_stages) <= {stage.split("@")[0] for stage in graph.order(repo_root)}


def test_code_source_for_workers_elsewhere(tmp_path):
    from prefect.runner.storage import GitRepository

    from cft.config import OrchestrateConfig
    from flows.deploy import code_source

    assert code_source(OrchestrateConfig(), tmp_path) == str(tmp_path)  # same host or shared filesystem
    assert code_source(OrchestrateConfig(code_source="s3://bucket/cft"), tmp_path) == "s3://bucket/cft"
    repo = code_source(OrchestrateConfig(code_source="https://example.invalid/cft.git", code_branch="v2"), tmp_path)
    assert isinstance(repo, GitRepository) and repo._branch == "v2"


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


def test_reproduce_stage_reports_what_dvc_ran_and_push(tiny_dvc):
    assert pipeline.reproduce_stage.fn("a", str(tiny_dvc)) == ["a"]
    assert (tiny_dvc / "a.txt").read_text().strip() == "hi"
    assert pipeline.reproduce_stage.fn("a", str(tiny_dvc)) == []  # up to date: DVC skips it
    assert pipeline.reproduce_stage.fn("a", str(tiny_dvc), force=True) == ["a"]
    assert pipeline.reproduce_stage.fn("train", str(tiny_dvc)) == ["train@x", "train@y"]
    assert pipeline.reproduce_stage.fn("train", str(tiny_dvc), force=True) == ["train@x", "train@y"]
    pipeline.push.fn(str(tiny_dvc))
    assert any((tiny_dvc.parent / "remote").rglob("*")), "nothing pushed"
    with pytest.raises(KeyError, match="no stage 'nope'"):
        pipeline.reproduce_stage.fn("nope", str(tiny_dvc))


def test_a_failed_stage_raises_with_its_last_lines(tiny_dvc):
    (tiny_dvc / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"bad": {"cmd": "echo the reason >&2; exit 3", "outs": ["b.txt"]}}}))
    with pytest.raises(RuntimeError, match=r"(?s)dvc repro --single-item bad.*the reason"):
        pipeline.reproduce_stage.fn("bad", str(tiny_dvc))


class _Lines(logging.Handler):
    """Collects log lines; on the first line of the stage, records whether the stage had ended, then lets it end."""

    def __init__(self, root: Path):
        super().__init__()
        self.root, self.lines, self.ended_at_first_line = root, [], None

    def emit(self, record):
        line = record.getMessage()
        self.lines.append(line)
        if line == "first line":
            self.ended_at_first_line = (self.root / "out.txt").exists()
            (self.root / "go").touch()


def test_stage_lines_reach_the_log_while_the_stage_runs(tiny_dvc):
    # The stage prints a line, then waits for a file that only the log handler creates when it
    # sees that line: it ends only if its lines reach the log while it runs.
    script = (
        "import pathlib, time\n"
        "print('first line')\n"
        "deadline = time.monotonic() + 30\n"
        "while not pathlib.Path('go').exists():\n"
        "    assert time.monotonic() < deadline, 'no log line seen while the stage ran'\n"
        "    time.sleep(0.05)\n"
        "print('second line')\n"
        "pathlib.Path('out.txt').write_text('done')\n"
    )
    (tiny_dvc / "stage.py").write_text(script)
    (tiny_dvc / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"slow": {"cmd": f"{sys.executable} stage.py", "deps": ["stage.py"], "outs": ["out.txt"]}}}))
    from prefect.logging import get_logger

    logger, handler = get_logger("cft.flows"), _Lines(tiny_dvc)  # the log of a task body run outside a flow
    logger.addHandler(handler)
    try:
        assert pipeline.reproduce_stage.fn("slow", str(tiny_dvc)) == ["slow"]
    finally:
        logger.removeHandler(handler)
    assert handler.ended_at_first_line is False
    assert handler.lines.index("Running stage 'slow':") < handler.lines.index("first line") < handler.lines.index("second line")
