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
        from cft.train.launch import TrainingError

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
    mlflow_log: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="log the summary to MLflow")] = True,
    params: ParamsOpt = Path("params.yaml"),
):
    """Validate critiques: clean file, quarantine file (with reasons) and a summary."""
    from cft.stages import validate as stage

    return stage.run(_params(params), path, out_dir, report_dir, summary, log_to_mlflow=mlflow_log)


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
    out: Path = Path("models/cft"),
    metrics: Path = Path("metrics/train.json"),
    plot: Path = Path("plots/train_loss.csv"),
    params: ParamsOpt = Path("params.yaml"),
):
    """Fine-tune under `accelerate launch` (loss on completion tokens only)."""
    from cft.stages import train as stage

    return stage.run(_params(params), train_dir, out, metrics, plot)


@app.command()
@_stage
def evaluate(
    model: Path = Path("models/cft"),
    predictions: Path = Path("data/eval/predictions.jsonl"),
    metrics: Path = Path("metrics/eval.json"),
    report_dir: Annotated[Path | None, typer.Option(help="write the Table-2 style comparison here")] = Path("reports/comparison"),
    params: ParamsOpt = Path("params.yaml"),
):
    """Evaluate a checkpoint (and the baselines in params) on the configured math benchmarks."""
    from cft.stages import evaluate as stage

    return stage.run(_params(params), str(model), predictions, metrics, report_dir)


@app.command()
@_stage
def compare(
    runs: Annotated[list[str], typer.Argument(help="NAME=PATH of an eval.json, e.g. sft=exp1/metrics/eval.json cft=metrics/eval.json")],
    report_dir: Path = Path("reports/comparison"),
):
    """Compare evaluated models like the paper's Table 2 (markdown table + bar chart)."""
    from cft.stages.evaluate import compare_files

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
    eval_metrics: Path = Path("metrics/eval.json"),
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
    out: Annotated[Path, typer.Option(help="graded rows (adds extracted_answer, correct)")] = Path("graded.jsonl"),
    response_field: str = "response",
    gold_field: str = "gold_answer",
    timeout_s: float = 5.0,
    workers: Annotated[int | None, typer.Option(help="grading processes (0 = in-process)")] = None,
):
    """Grade any system's predictions against gold answers with math-verify."""
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
