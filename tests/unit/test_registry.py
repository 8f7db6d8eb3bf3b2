"""Registry: lineage, the promotion gate, promote/rollback, concurrency, reference logging.

Real MLflow on SQLite in tmp_path; one tiny checkpoint per module.
"""

from __future__ import annotations

import json
import threading

import pytest
from registry_helpers import (
    REPO,
    build_checkpoint,
    fake_dvc_cache,
    fake_training_run,
    make_project,
    register,
    write_dvc_lock,
    write_eval,
)

from cft.registry import lineage, manage
from cft.registry.locking import local_lock_file
from cft.registry.promotion import decide, evaluation_score

NAME = "cft-test"
UPSTREAM = {
    "ingest": {"data/problems.jsonl": "11111111111111111111111111111111"},
    "respond": {"data/responses.jsonl": "22222222222222222222222222222222"},
    "critique": {"data/critiques.jsonl": "33333333333333333333333333333333"},
    "validate": {"data/validated": "44444444444444444444444444444444.dir", "reports/validation": "55555555555555555555555555555555.dir"},
    "build": {"data/train": "66666666666666666666666666666666.dir"},
    "evaluate": {"data/eval": "77777777777777777777777777777777.dir"},  # downstream of train: not lineage
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture
def project(tmp_path):
    root, params = make_project(tmp_path / "project")
    write_dvc_lock(root, UPSTREAM)
    return root, params


def _client(root):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{(root / 'mlruns.db').resolve()}")


def _trained_and_registered(project, checkpoint, name, average, **eval_extra):
    root, params = project
    model_dir = fake_training_run(params, root, checkpoint, name)
    return register(params, root, model_dir, write_eval(root, name, average, **eval_extra))


def _alias(client, alias):
    return manage._version_of(manage.version_by_alias(client, NAME, alias))


# --- pure pieces -------------------------------------------------------------------


def test_evaluation_score_accepts_only_a_successful_evaluation():
    assert evaluation_score({"average": 41.5}) == (41.5, "ok")
    assert evaluation_score(None)[0] is None
    assert evaluation_score({"benchmarks": {}})[0] is None
    assert evaluation_score({"average": 50.0, "error": "grader crashed"})[1].startswith("failed")
    assert evaluation_score({"average": float("nan")})[0] is None
    assert evaluation_score({"average": True})[0] is None


def test_the_gate_metric_is_a_setting_with_its_direction():
    evaluation = {"average": 10.0, "critic": {"balanced_accuracy": 0.7}, "benchmarks": {"math-500": {"accuracy": 30.0}}}
    assert evaluation_score(evaluation, "critic.balanced_accuracy") == (0.7, "ok")
    assert evaluation_score(evaluation, "benchmarks.math-500.accuracy") == (30.0, "ok")
    score, status = evaluation_score(evaluation, "critic.f1_wrong")
    assert score is None and "critic.f1_wrong" in status
    # lower is better (e.g. a loss): 1.9 beats 2.0, 2.1 does not
    assert decide(1.9, 2.0, 0.0, higher_is_better=False, metric="loss").promote
    assert not decide(2.1, 2.0, 0.0, higher_is_better=False, metric="loss").promote
    assert "lower is better" in decide(2.1, 2.0, 0.0, higher_is_better=False, metric="loss").reason


def test_upstream_of_train_follows_the_shipped_graph():
    from cft.stages.graph import stage_graph, upstream

    stages = set(upstream(stage_graph(REPO), lineage.TRAIN_STAGE))
    assert stages >= {"ingest", "respond", "critique", "validate", "build", "tiny_model"}
    assert not stages & {"evaluate", "register"}


def test_secrets_are_masked_and_lock_files_sit_beside_local_stores(tmp_path):
    masked = lineage.redact({"api_key_env": "OPENAI_API_KEY", "api_key": "sk-123", "base_url": "https://u:sk-9@host/v1"})
    assert masked == {"api_key_env": "OPENAI_API_KEY", "api_key": "***", "base_url": "https://***@host/v1"}
    assert local_lock_file(f"sqlite:///{tmp_path}/mlruns.db", "m").parent == tmp_path
    assert local_lock_file("http://127.0.0.1:5000", "m") is None


# --- lineage -----------------------------------------------------------------------


def test_lineage_tags_equal_dvc_lock_on_the_run_and_the_version(project, checkpoint):
    root, params = project
    tags = lineage.collect_lineage(root, params)
    for stage in ("ingest", "respond", "critique", "validate", "build"):
        for path, md5 in UPSTREAM[stage].items():
            assert tags[f"lineage.dvc.{path}"] == md5
    assert "lineage.dvc.data/eval" not in tags  # evaluate is downstream
    assert tags["lineage.dvc.data/validated"] == UPSTREAM["validate"]["data/validated"]
    assert tags["lineage.dvc.data/critiques.jsonl"] == UPSTREAM["critique"]["data/critiques.jsonl"]
    assert tags["lineage.critique.teachers"] == "reference"
    assert tags["lineage.ingest.sources"].startswith("sources/problems/math-500-validation.jsonl:math:20")
    assert tags["lineage.git.commit"] == "none" and tags["lineage.git.dirty"] == "true"  # tmp_path is no git repo

    result = _trained_and_registered(project, checkpoint, "a", 50.0)
    client = _client(root)
    run = client.get_run(result["run_id"])
    version = client.get_model_version(NAME, str(result["version"]))
    for key, value in tags.items():
        assert run.data.tags[key] == value
        assert version.tags[key] == value
    assert run.data.params["train.sft.learning_rate"] == str(params.train.sft.learning_rate)
    assert "lineage/params.json" in {a.path for a in client.list_artifacts(result["run_id"], "lineage")}
    # the page beside the result file: registry-a.json is no output of the register stage in dvc.yaml
    assert "Lineage" in (root / "metrics/registry-a.md").read_text()


# --- the gate ----------------------------------------------------------------------


def test_a_better_challenger_is_promoted_a_worse_one_is_not(project, checkpoint):
    root, _ = project
    client = _client(root)
    first = _trained_and_registered(project, checkpoint, "a", 50.0)
    assert first["champion"] and first["decision"] == "promoted"

    worse = _trained_and_registered(project, checkpoint, "b", 40.0)
    assert worse["version"] == 2 and not worse["champion"] and worse["decision"] == "rejected"
    assert (_alias(client, "champion"), _alias(client, "challenger")) == ("1", "2")
    assert client.get_model_version(NAME, "2").tags["promotion.decision"] == "rejected"

    better = _trained_and_registered(project, checkpoint, "c", 60.0)
    assert better["champion"] and better["champion_version_before"] == 1
    assert (_alias(client, "champion"), _alias(client, "challenger")) == ("3", "3")
    assert client.get_model_version(NAME, "3").tags["promotion.previous_champion"] == "1"
    assert json.loads((root / "metrics/registry-c.json").read_text())["decision"] == "promoted"


def test_a_changed_gate_metric_compares_and_records_the_champion_on_that_metric(project, checkpoint):
    root, params = project
    client = _client(root)
    _trained_and_registered(project, checkpoint, "a", 50.0, critic={"balanced_accuracy": 0.6})
    critic_gate = params.model_copy(update={"register_": params.register_.model_copy(update={"metric": "critic.balanced_accuracy"})})
    model_dir = fake_training_run(critic_gate, root, checkpoint, "b")
    result = register(critic_gate, root, model_dir, write_eval(root, "b", 10.0, critic={"balanced_accuracy": 0.7}))
    assert result["champion"] and result["metric"] == "critic.balanced_accuracy"
    # the champion's score is its critic score (read from its run), not its recorded average
    assert result["champion_score_before"] == pytest.approx(0.6)
    assert float(client.get_model_version(NAME, "2").tags[manage.CHAMPION_SCORE_BEFORE_TAG]) == pytest.approx(0.6)


def test_missing_or_failed_evaluation_never_promotes(project, checkpoint):
    root, _ = project
    client = _client(root)
    missing = _trained_and_registered(project, checkpoint, "a", None)  # no champion yet, still not promoted
    assert not missing["champion"] and missing["eval_status"].startswith("missing")
    assert _alias(client, "champion") is None and _alias(client, "challenger") == "1"

    _trained_and_registered(project, checkpoint, "b", 10.0)
    failed = _trained_and_registered(project, checkpoint, "c", 99.0, error="grading timed out")
    assert not failed["champion"] and failed["eval_status"].startswith("failed")
    assert _alias(client, "champion") == "2"
    assert manage.SCORE_TAG not in client.get_model_version(NAME, "3").tags


def test_rerunning_register_for_the_same_run_adds_no_version(project, checkpoint):
    root, params = project
    model_dir = fake_training_run(params, root, checkpoint, "a")
    eval_path = write_eval(root, "a", 50.0)
    first = register(params, root, model_dir, eval_path)
    again = register(params, root, model_dir, eval_path)
    assert again["version"] == first["version"] == 1 and again["champion"]
    assert again["decision"] == "already champion"
    assert len(_client(root).search_model_versions(f"name='{NAME}'")) == 1


# --- manual promote and rollback ---------------------------------------------------


def test_promote_by_hand_and_rollback_restore_previous_champions(project, checkpoint):
    root, _ = project
    client = _client(root)
    _trained_and_registered(project, checkpoint, "a", 50.0)
    _trained_and_registered(project, checkpoint, "b", 60.0)  # champion 2
    _trained_and_registered(project, checkpoint, "c", 10.0)  # rejected
    with pytest.raises(ValueError, match="no such registered model version 42"):
        manage.promote(client, NAME, 42, reason="typo")
    assert manage.promote(client, NAME, 3, reason="canary looked fine") == "2"
    assert _alias(client, "champion") == "3"
    assert client.get_model_version(NAME, "3").tags["promotion.reason"] == "canary looked fine"

    assert manage.rollback(client, NAME) == "2"
    assert _alias(client, "champion") == "2"
    assert client.get_model_version(NAME, "3").tags["promotion.rolled_back"] == "true"
    assert manage.rollback(client, NAME) == "1"
    with pytest.raises(ValueError, match="no previous champion"):
        manage.rollback(client, NAME)

    # a rolled-back version is not re-promoted by the gate (re-running its register)
    (root / "metrics/eval-c.json").write_text(json.dumps({"average": 99.0}))
    again = register(project[1], root, root / "models/c", root / "metrics/eval-c.json")
    assert not again["champion"] and "rolled back" in again["reason"]
    assert _alias(client, "champion") == "1"


# --- concurrency -------------------------------------------------------------------


def test_concurrent_registers_leave_aliases_consistent(project, checkpoint):
    root, params = project
    client = _client(root)
    scores = {"a": 30.0, "b": 70.0, "c": 50.0}
    jobs = [(fake_training_run(params, root, checkpoint, n), write_eval(root, n, s)) for n, s in scores.items()]
    jobs.append(jobs[1])  # the same run registered twice at once: still one version
    results, errors = [], []

    def work(model_dir, eval_path):
        try:
            results.append(register(params, root, model_dir, eval_path))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    versions = client.search_model_versions(f"name='{NAME}'")
    assert len(versions) == 3
    by_run = {v.run_id: str(v.version) for v in versions}
    best = by_run[json.loads((root / "models/b/mlflow_run.json").read_text())["run_id"]]
    assert _alias(client, "champion") == best
    assert _alias(client, "challenger") in by_run.values()
    assert json.loads(client.get_registered_model(NAME).tags["champion.history"])[-1] == best


# --- weights by reference ----------------------------------------------------------


def test_reference_mode_stores_no_weights_and_loads_from_the_dvc_cache(tmp_path, checkpoint, monkeypatch):
    import mlflow
    from typer.testing import CliRunner

    from cft.cli import app

    root, params = make_project(tmp_path / "project", log_weights="reference")
    model_dir = fake_training_run(params, root, checkpoint, "cft")
    md5 = fake_dvc_cache(root, "models/cft")
    write_dvc_lock(root, {**UPSTREAM, "train@cft": {"models/cft": md5}})
    # A later run overwrote the workspace checkpoint: registering never reads the weights, and
    # loading finds this version's own weights in the DVC cache.
    (model_dir / "model.safetensors").write_bytes(b"not the weights")
    result = register(params, root, model_dir, write_eval(root, "cft", 50.0))
    assert result["champion"] and result["log_weights"] == "reference"
    version = _client(root).get_model_version(NAME, str(result["version"]))
    assert version.tags["lineage.dvc.models/cft"] == md5

    stored = [p for p in (root / "mlartifacts").rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if p.suffix in (".safetensors", ".bin")]
    assert sum(p.stat().st_size for p in stored) < 200_000

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert isinstance(model.predict(["What is 2+2?"], params={"max_new_tokens": 4})[0], str)

    monkeypatch.chdir(root)
    out = CliRunner().invoke(app, ["predict", "What is 2+2?", "--model", f"models:/{NAME}@champion", "--max-new-tokens", "4"])
    assert out.exit_code == 0, out.output


def test_copy_mode_loads_by_alias(project, checkpoint):
    import mlflow

    root, _ = project
    _trained_and_registered(project, checkpoint, "a", 50.0)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert isinstance(model.predict(["What is 2+2?"], params={"max_new_tokens": 4})[0], str)


def test_promote_and_rollback_from_the_command_line(project, checkpoint, monkeypatch):
    from typer.testing import CliRunner

    from cft.cli import app

    root, _ = project
    _trained_and_registered(project, checkpoint, "a", 50.0)
    _trained_and_registered(project, checkpoint, "b", 40.0)  # challenger only
    monkeypatch.chdir(root)  # the sqlite store in params is relative to the project
    runner = CliRunner()
    assert runner.invoke(app, ["promote", "--version", "2", "--reason", "manual check"]).exit_code == 0
    assert _alias(_client(root), "champion") == "2"
    assert runner.invoke(app, ["promote", "--rollback"]).exit_code == 0
    assert _alias(_client(root), "champion") == "1"
    refused = runner.invoke(app, ["promote"])
    assert refused.exit_code == 2 and "exactly one of --version N or --rollback" in refused.output
