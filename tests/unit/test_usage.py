"""Token usage reaches MLflow from the helper process a generation stage starts (`cft.stages.usage`)."""

import pytest
import yaml

from cft.config import parse_params
from cft.stages.usage import UsageLogger, merge_usage

pytestmark = pytest.mark.timeout(120)


def _params(repo_root, tracking_uri, tmp_path):
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["register"]["tracking_uri"] = tracking_uri
    data["register"]["artifact_location"] = str(tmp_path / "mlartifacts")
    return parse_params(data)


def test_helper_logs_the_usage_and_reports_a_failure(repo_root, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path}/mlruns.db"
    params = _params(repo_root, store, tmp_path)
    broken = _params(repo_root, "bogus://nowhere", tmp_path)
    # Both helpers load MLflow at once (as they would while their stages generate).
    with UsageLogger(params, "critique") as logger, UsageLogger(broken, "respond") as failing:
        logger.log({"teacher-x": {"requests": 3, "prompt_tokens": 30, "completion_tokens": 12, "cost_usd": 0.5}})
        with pytest.raises(RuntimeError, match="(?s)respond usage to MLflow failed.*bogus"):
            failing.log({"m": {"requests": 1}})
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name(params.register_.experiment).experiment_id])
    assert run.data.tags["cft.stage"] == "critique" and run.info.status == "FINISHED"
    assert run.data.metrics["critique.teacher-x.completion_tokens"] == 12.0
    assert run.data.metrics["critique.teacher-x.cost_usd"] == 0.5


def test_merge_usage_sums_counts_of_one_model_across_generators():
    usage = {}
    merge_usage(usage, {"m": {"requests": 3, "prompt_tokens": 30, "cost_usd": 0.25}})
    merge_usage(usage, {"m": {"requests": 2, "prompt_tokens": 20, "cost_usd": 0.5, "empty": 1}, "other": {"requests": 1}})
    assert usage == {"m": {"requests": 5, "prompt_tokens": 50, "cost_usd": 0.75, "empty": 1}, "other": {"requests": 1}}
