"""Stage validate: Great Expectations checks on critiques; failing rows are quarantined.

    cft validate data/critiques.jsonl --out-dir data/validated --report-dir reports/validation \
        --summary metrics/validation.json

clean + quarantine = input, always; each quarantined row lists the checks it failed.
Below `validate.min_pass_rate` the stage exits non-zero, so bad data never reaches
training.
"""

from __future__ import annotations

from pathlib import Path

from cft.config import Params, ValidateConfig
from cft.data.io import write_json


def run(params: Params | None, critiques_path: Path, out_dir: Path, report_dir: Path, summary_path: Path | None, log_to_mlflow: bool = True) -> dict:
    """Validate one critique file. `params` None (no project, e.g. a user's own file in any
    folder): the `ValidateConfig` defaults, and nothing is logged to MLflow."""
    from cft.validate import validate_file

    cfg = params.validate_ if params is not None else ValidateConfig()
    result = validate_file(
        critiques_path,
        out_dir,
        min_chars=cfg.min_chars,
        max_chars=cfg.max_chars,
        conclusion_policy=cfg.conclusion_policy,
        consistency_policy=cfg.consistency_policy,
        min_pass_rate=cfg.min_pass_rate,
        report_dir=report_dir,
    )
    summary = result.summary
    if summary_path is not None:
        write_json(summary_path, summary)
    if log_to_mlflow and params is not None:
        _log_summary(params, summary, summary_path)
    return summary


def _log_summary(params: Params, summary: dict, summary_path: Path | None) -> None:
    import mlflow

    from cft.registry.tracking import experiment_id

    exp_id = experiment_id(params.register_)
    with mlflow.start_run(experiment_id=exp_id, run_name="validate", tags={"cft.stage": "validate"}):
        mlflow.log_metrics({f"validate.{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_dict(summary, "validation_summary.json")
