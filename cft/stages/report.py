"""Stage report: every evaluated model side by side, laid out like the paper's Table 2.

    cft report --eval-dir metrics/eval --train-dir metrics/train --out-dir reports/comparison

Reads one metrics JSON per evaluated model (`metrics/eval/<name>.json`, from `cft evaluate`)
and one per trained mode (`metrics/train/<mode>.json` with its loss history, from
`cft train`), and writes `comparison.md` (benchmarks, Avg, held-out loss and critic
metrics as extra columns), `comparison.png` (four panels) and `comparison.json`. Rows come in
the paper's order: baselines first, then the trained modes as params list them.
"""

from __future__ import annotations

import json
from pathlib import Path

from cft.config import Params
from cft.data.io import write_json
from cft.evaluate.report import ExtraColumn, comparison_table, report_chart, results_from_summaries

EXTRA_COLUMNS = (
    ExtraColumn("heldout_loss_start", "Held-out loss, before", higher_is_better=None, digits=3),
    ExtraColumn("heldout_loss_final", "Held-out loss, after", higher_is_better=False, digits=3),
    ExtraColumn("critic_balanced_accuracy", "Critic bal. acc.", digits=2),
    ExtraColumn("critic_f1_wrong", "Critic F1 (wrong)", digits=2),
    ExtraColumn("critic_no_verdict_rate", "No verdict", higher_is_better=False, digits=2),
    ExtraColumn("self_balanced_accuracy", "Self-critique bal. acc.", digits=2),
)


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def loss_curves(history: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """{"train": [(step, loss)], "heldout": [(step, eval_loss)]} from a trainer's log history."""
    curves: dict[str, list[tuple[float, float]]] = {"train": [], "heldout": []}
    for entry in history:
        if "step" not in entry:
            continue
        if "loss" in entry:
            curves["train"].append((entry["step"], entry["loss"]))
        if "eval_loss" in entry:
            curves["heldout"].append((entry["step"], entry["eval_loss"]))
    return curves


def extras_of(evaluation: dict, training: dict | None) -> dict[str, float | None]:
    critic, own = evaluation.get("critic") or {}, evaluation.get("self_critique") or {}
    training = training or {}
    return {
        "heldout_loss_start": training.get("heldout_loss_start"),
        "heldout_loss_final": training.get("heldout_loss_final"),
        "critic_balanced_accuracy": critic.get("balanced_accuracy"),
        "critic_f1_wrong": critic.get("f1_wrong"),
        "critic_no_verdict_rate": critic.get("no_verdict_rate"),
        "self_balanced_accuracy": own.get("balanced_accuracy"),
    }


def _mlflow_line(evaluations: dict[str, dict]) -> str:
    """Where the models' MLflow runs are: the run group they share (one pipeline run), if any."""
    from cft.registry.tracking import RUN_GROUP_TAG

    groups = {ev.get("run_group") for ev in evaluations.values()}
    if len(groups) != 1 or None in groups:
        return ""
    return (f"\nMLflow: these models' runs carry the tag `{RUN_GROUP_TAG}` = `{groups.pop()}`; "
            f"filter on it in the MLflow UI and select the runs to compare them.\n")


def write_report(evaluations: dict[str, dict], trainings: dict[str, dict], out_dir: Path) -> str:
    """comparison.md/.png/.json for models in the given order; returns the markdown."""
    results = results_from_summaries(evaluations)
    extras = {name: extras_of(ev, trainings.get(name)) for name, ev in evaluations.items()}
    columns = [c for c in EXTRA_COLUMNS if any(e.get(c.key) is not None for e in extras.values())]
    table = comparison_table(results, extras, columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.md").write_text(table + _mlflow_line(evaluations), encoding="utf-8")
    curves = {name: loss_curves(t.get("log_history") or []) for name, t in trainings.items()}
    report_chart(
        out_dir / "comparison.png",
        results,
        {name: c for name, c in curves.items() if c["train"] or c["heldout"]},
        {name: ev["critic"] for name, ev in evaluations.items() if ev.get("critic")},
        {name: ev["self_critique"] for name, ev in evaluations.items() if ev.get("self_critique")},
    )
    write_json(out_dir / "comparison.json", {"models": evaluations, "extras": extras})
    return table


def run(params: Params, eval_dir: Path, train_dir: Path, out_dir: Path) -> dict:
    order = [*params.baselines, *params.train.modes]
    missing = [name for name in order if not (eval_dir / f"{name}.json").exists()]
    if missing:
        raise FileNotFoundError(f"{eval_dir}: no evaluation for {', '.join(missing)} (run `dvc repro` first)")
    evaluations = {name: _read(eval_dir / f"{name}.json") for name in order}
    trainings = {name: _read(train_dir / f"{name}.json") for name in order if (train_dir / f"{name}.json").exists()}
    write_report(evaluations, trainings, out_dir)
    return {"report": str(out_dir / "comparison.md"), "models": order}


def compare_files(named_metrics: dict[str, Path], out_dir: Path) -> str:
    """The same report from eval.json files of separate runs (`cft compare sft=a.json cft=b.json`)."""
    return write_report({name: _read(Path(path)) for name, path in named_metrics.items()}, {}, out_dir)
