"""`cft <stage>`: the entry points that dvc.yaml and the Prefect flows call.

Every command validates params.yaml first; a bad value or bad input stops it with
one clear message (file, line or key) and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated

import typer

from cft.env import apply_defaults

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Critique Fine-Tuning pipeline.")
ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml with one section per stage")]


def _stage(fn):
    """Turn known errors into one clear line and exit code 2; print the stage summary."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from cft.config import ConfigError
        from cft.data.io import DataError
        from cft.train import TrainingError

        apply_defaults()
        try:
            summary = fn(*args, **kwargs)
        except (ConfigError, DataError, FileNotFoundError, ValueError) as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except TrainingError as exc:  # the subprocess already printed its own traceback
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        if summary is not None:
            typer.echo(json.dumps(summary, indent=2, default=str))

    return wrapper


def _params(path: Path):
    from cft.config import load_params

    return load_params(path)


@app.command("tiny-model")
@_stage
def tiny_model(out: Path = Path("models/tiny"), params: ParamsOpt = Path("params.yaml")):
    """Build the embedded default model (Llama architecture, local tokenizer)."""
    from cft.stages import tiny_model as stage

    return {"model": str(stage.run(_params(params), out))}


@app.command()
@_stage
def ingest(out: Path = Path("data/problems.jsonl"), params: ParamsOpt = Path("params.yaml")):
    """Read the problem sources into one problems file."""
    from cft.stages import ingest as stage

    return stage.run(_params(params), out)


@app.command()
@_stage
def respond(
    problems: Path = Path("data/problems.jsonl"),
    out: Path = Path("data/responses.jsonl"),
    metrics: Annotated[Path | None, typer.Option(help="also write the stage summary here")] = None,
    params: ParamsOpt = Path("params.yaml"),
):
    """Generate noisy responses with the student model(s); resumable and incremental."""
    from cft.stages import respond as stage

    return stage.run(_params(params), problems, out, metrics)


@app.command()
@_stage
def critique(
    problems: Path = Path("data/problems.jsonl"),
    responses: Path = Path("data/responses.jsonl"),
    out: Path = Path("data/critiques.jsonl"),
    metrics: Annotated[Path | None, typer.Option(help="also write the stage summary here")] = None,
    params: ParamsOpt = Path("params.yaml"),
):
    """Critique every response with the configured teachers; import existing critique sets."""
    from cft.stages import critique as stage

    return stage.run(_params(params), problems, responses, out, metrics)


@app.command()
@_stage
def validate(
    path: Annotated[Path, typer.Argument(help="critique file: JSONL, Parquet or a saved datasets dir; critique rows, Alpaca or messages")],
    out_dir: Path = Path("data/validated"),
    report_dir: Path = Path("reports/validation"),
    summary: Annotated[Path | None, typer.Option(help="also write the summary here (DVC metrics)")] = None,
    mlflow_log: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="log the summary to MLflow (in a project)")] = True,
    params: Annotated[Path | None, typer.Option("--params", help="params.yaml (default: ./params.yaml if there is one, else the validate defaults)")] = None,
):
    """Validate critiques: clean file, quarantine file (with reasons) and a summary.

    Works on any critique file from any folder: outside a project (no params.yaml)
    it uses the default validate settings and logs nothing to MLflow.
    """
    from cft.stages import validate as stage

    if params is None and Path("params.yaml").is_file():
        params = Path("params.yaml")
    loaded = _params(params) if params is not None else None
    return stage.run(loaded, path, out_dir, report_dir, summary, log_to_mlflow=mlflow_log and loaded is not None)


@app.command()
@_stage
def build(
    problems: Path = Path("data/problems.jsonl"),
    responses: Path = Path("data/responses.jsonl"),
    critiques: Path = Path("data/validated/clean.jsonl"),
    out_dir: Path = Path("data/train"),
    params: ParamsOpt = Path("params.yaml"),
):
    """Build CFT and SFT-baseline training files (prompt / completion)."""
    from cft.stages import build as stage

    return stage.run(_params(params), problems, responses, critiques, out_dir)


@app.command()
@_stage
def train(
    train_dir: Path = Path("data/train"),
    out: Annotated[Path | None, typer.Option(help="the trained model (default: models/<mode>)")] = None,
    metrics: Annotated[Path | None, typer.Option(help="default: metrics/train/<mode>.json")] = None,
    plot: Annotated[Path | None, typer.Option(help="loss per step, CSV (default: plots/train/<mode>.csv)")] = None,
    mode: Annotated[str | None, typer.Option(help="cft | sft_noisy | sft_verified | sft_teacher (default: the first of train.modes)")] = None,
    params: ParamsOpt = Path("params.yaml"),
):
    """Fine-tune under `accelerate launch` (loss on completion tokens only); resumes a killed run."""
    from cft.stages import train as stage

    loaded = _params(params)
    mode = mode or loaded.train.mode
    return stage.run(loaded, train_dir, out or Path(f"models/{mode}"), metrics or Path(f"metrics/train/{mode}.json"),
                     plot or Path(f"plots/train/{mode}.csv"), mode=mode)


@app.command("prune-checkpoints")
@_stage
def prune_checkpoints(
    root: Annotated[Path | None, typer.Option(help="the checkpoint folders (default: the pipeline's, models/checkpoints)")] = None,
    keep_last: Annotated[int | None, typer.Option(min=0, help="complete checkpoints kept per run (0: none; the next `cft train` retrains)")] = None,
    dry_run: Annotated[bool, typer.Option(help="list what would go, remove nothing")] = False,
):
    """Remove superseded training checkpoints: per output, all but the newest run's folder,
    and checkpoints set aside as incomplete; `--keep-last N` also thins the kept runs."""
    from cft.train.checkpoints import PIPELINE_ROOT, prune

    removed = prune(root or PIPELINE_ROOT, keep_last=keep_last, dry_run=dry_run)
    return {"dry_run": dry_run, "removed": [str(p) for p, _ in removed],
            "freed_mib": round(sum(size for _, size in removed) / 2**20, 1)}


@app.command()
@_stage
def evaluate(
    name: Annotated[str, typer.Option(help="the model's name in the report (a train mode or a baseline)")] = "cft",
    model: Annotated[str | None, typer.Option(help="a local HF directory or hub id (default: models/<name>)")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="predictions.jsonl and critiques.jsonl (default: data/eval/<name>)")] = None,
    metrics: Annotated[Path | None, typer.Option(help="default: metrics/eval/<name>.json")] = None,
    heldout: Annotated[Path | None, typer.Option(help="held-out (question, response, correct) pairs for the critic metrics (default: the build stage's, data/train/heldout/critic.jsonl)")] = None,
    params: ParamsOpt = Path("params.yaml"),
):
    """Evaluate one model on the configured math benchmarks, and as a critic."""
    from cft.stages import evaluate as stage
    from cft.stages.build import HELDOUT_CRITIC

    return stage.run(_params(params), model or f"models/{name}", name, out_dir or Path(f"data/eval/{name}"),
                     metrics or Path(f"metrics/eval/{name}.json"), heldout or HELDOUT_CRITIC)


@app.command()
@_stage
def report(
    eval_dir: Path = Path("metrics/eval"),
    train_dir: Path = Path("metrics/train"),
    out_dir: Path = Path("reports/comparison"),
    params: ParamsOpt = Path("params.yaml"),
):
    """Every evaluated model side by side (the paper's Table 2, held-out loss, critic metrics)."""
    from cft.stages import report as stage

    return stage.run(_params(params), eval_dir, train_dir, out_dir)


@app.command()
@_stage
def compare(
    runs: Annotated[list[str], typer.Argument(help="NAME=PATH of an eval metrics JSON, e.g. sft=exp1/metrics/eval/cft.json cft=metrics/eval/cft.json")],
    report_dir: Path = Path("reports/comparison"),
):
    """Compare evaluated models of separate runs like the paper's Table 2 (markdown table + chart)."""
    from cft.stages.report import compare_files

    named = {}
    for item in runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"expected NAME=PATH, got '{item}'")
        named[name] = Path(path)
    typer.echo(compare_files(named, report_dir))


@app.command()
@_stage
def register(
    model: Path = Path("models/cft"),
    eval_metrics: Path = Path("metrics/eval/cft.json"),
    out: Path = Path("metrics/registry.json"),
    params: ParamsOpt = Path("params.yaml"),
):
    """Log and register the model in MLflow; promote it when it beats the champion."""
    from cft.stages import register as stage

    return stage.run(_params(params), model, eval_metrics, out)


@app.command()
@_stage
def grade(
    path: Annotated[Path, typer.Argument(help="JSONL with a response and a gold answer per row")],
    out: Annotated[Path, typer.Option(help="graded rows (adds extracted_answer, correct, grading_error)")] = Path("graded.jsonl"),
    response_field: str = "response",
    gold_field: Annotated[str | None, typer.Option(help="gold answer field (default: the first of gold_answer, gold, answer in each row)")] = None,
    timeout_s: float = 5.0,
    workers: Annotated[int | None, typer.Option(help="grading processes (0 = in-process)")] = None,
):
    """Grade any system's predictions against gold answers (numbers, several answers, math-verify)."""
    from cft.evaluate.grade_file import grade_file

    return grade_file(path, out, response_field=response_field, gold_field=gold_field, timeout_s=timeout_s, workers=workers)


@app.command()
@_stage
def promote(
    version: Annotated[int | None, typer.Option(help="make this version champion")] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="restore the previous champion")] = False,
    reason: str = "manual",
    params: ParamsOpt = Path("params.yaml"),
):
    """Set the champion by hand, or roll back to the previous one."""
    from mlflow import MlflowClient

    from cft.registry import manage
    from cft.registry.tracking import resolve_tracking_uri

    if rollback == (version is not None):
        raise ValueError("give exactly one of --version N or --rollback")
    cfg = _params(params).register_
    client = MlflowClient(resolve_tracking_uri(cfg))
    if rollback:
        return {"model_name": cfg.model_name, "champion": manage.rollback(client, cfg.model_name, reason)}
    previous = manage.promote(client, cfg.model_name, version, reason)
    return {"model_name": cfg.model_name, "champion": str(version), "previous_champion": previous}


@app.command()
@_stage
def predict(
    question: Annotated[str, typer.Argument(help="a math question")],
    model: Annotated[str, typer.Option(help="an MLflow model URI, e.g. models:/cft-tiny@champion")],
    max_new_tokens: int = 512,
    params: ParamsOpt = Path("params.yaml"),
):
    """Answer a question with a registered model (loaded by alias or version)."""
    import mlflow

    from cft.registry.tracking import resolve_tracking_uri

    mlflow.set_tracking_uri(resolve_tracking_uri(_params(params).register_))
    answer = mlflow.pyfunc.load_model(model).predict([question], params={"max_new_tokens": max_new_tokens})[0]
    typer.echo(answer)


@app.command("run")
def run_pipeline(
    force: Annotated[bool, typer.Option(help="re-run every stage even if up to date")] = False,
):
    """Run the whole pipeline through the Prefect flow (stages via `dvc repro`)."""
    apply_defaults()
    from flows.pipeline import cft_pipeline

    cft_pipeline(force=force)


if __name__ == "__main__":
    app()
