"""Model comparison tables and charts, laid out like the paper's Table 2.

`results` maps model name (e.g. base / SFT / CFT) to {benchmark: accuracy on
the 0-100 scale}. Avg is the unweighted mean over the benchmarks, recomputed
here so every row is averaged the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cft.data.io import atomic_path

# Paper column order and headings; other benchmarks follow in first-seen order.
DISPLAY_NAMES: dict[str, str] = {
    "math-500": "MATH500",
    "minerva_math": "Minerva-Math",
    "gsm8k": "GSM8K",
    "olympiadbench": "OlympiadBench",
    "aime24": "AIME24",
    "amc23": "AMC23",
    "theoremqa": "TheoremQA",
}
_AVERAGE_KEYS = {"average", "avg"}
MISSING = "-"


def results_from_summaries(summaries: Mapping[str, Mapping]) -> dict[str, dict[str, float]]:
    """{model: metrics.summarise(...) output} -> {model: {benchmark: accuracy}}."""
    return {model: {b: s["accuracy"] for b, s in summary["benchmarks"].items()} for model, summary in summaries.items()}


def benchmark_columns(results: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Benchmarks present in any row: the paper's order first, then the rest as first seen."""
    seen: list[str] = []
    for scores in results.values():
        for name in scores:
            if name.lower() not in _AVERAGE_KEYS and name not in seen:
                seen.append(name)
    known = [name for name in DISPLAY_NAMES if name in seen]
    return known + [name for name in seen if name not in DISPLAY_NAMES]


def row_average(scores: Mapping[str, float], columns: list[str]) -> float | None:
    """Unweighted mean over `columns`; None if the model lacks any of them (not comparable)."""
    if not columns or any(scores.get(c) is None for c in columns):
        return None
    return sum(scores[c] for c in columns) / len(columns)


@dataclass(frozen=True)
class ExtraColumn:
    """A column beside the benchmarks (held-out loss, critic metrics): how to show and rank it."""

    key: str
    heading: str
    higher_is_better: bool | None = True  # None: not a ranking (nothing in bold)
    digits: int = 1


def comparison_table(
    results: Mapping[str, Mapping[str, float]],
    extras: Mapping[str, Mapping[str, float | None]] | None = None,
    extra_columns: Sequence[ExtraColumn] = (),
) -> str:
    """A markdown table: one row per model, one column per benchmark plus Avg, then `extra_columns`
    read from `extras[model]`; the best value per column in bold."""
    if not results:
        raise ValueError("no results to tabulate")
    columns = benchmark_columns(results)
    extras = extras or {}
    rows = {
        model: [scores.get(c) for c in columns] + [row_average(scores, columns)]
        + [(extras.get(model) or {}).get(x.key) for x in extra_columns]
        for model, scores in results.items()
    }
    n_bench = len(columns) + 1
    n_cols = n_bench + len(extra_columns)
    digits = [1] * n_bench + [x.digits for x in extra_columns]
    higher = [True] * n_bench + [x.higher_is_better for x in extra_columns]
    best = []
    for i in range(n_cols):
        present = [r[i] for r in rows.values() if r[i] is not None]
        best.append((max if higher[i] else min)(present) if present and higher[i] is not None else None)

    def cell(value: float | None, i: int) -> str:
        if value is None:
            return MISSING
        text = f"{value:.{digits[i]}f}"
        is_best = best[i] is not None and round(value, digits[i]) == round(best[i], digits[i])
        return f"**{text}**" if len(rows) > 1 and is_best else text

    header = ["Model"] + [DISPLAY_NAMES.get(c, c) for c in columns] + ["Avg"] + [x.heading for x in extra_columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" + "---:|" * n_cols,
    ]
    for model, values in rows.items():
        lines.append("| " + " | ".join([model] + [cell(v, i) for i, v in enumerate(values)]) + " |")
    return "\n".join(lines) + "\n"


CRITIC_METRICS = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."), ("f1_wrong", "F1 of wrong"),
                  ("no_verdict_rate", "no verdict"))


def _grouped_bars(ax, groups: Sequence[str], series: Mapping[str, Sequence[float | None]], *, digits: int,
                  colors: Mapping[str, str]) -> None:
    """One bar per series within each group; a missing value is shown as "-" at zero height."""
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        bars = ax.bar(xs, [v if v is not None else 0.0 for v in values], width=width, label=name, color=colors.get(name))
        ax.bar_label(bars, labels=[f"{v:.{digits}f}" if v is not None else MISSING for v in values], fontsize=7)
    ax.set_xticks(range(len(groups)), groups, rotation=15, ha="right")


def report_chart(
    path: str | Path,
    results: Mapping[str, Mapping[str, float]],
    curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
    critic: Mapping[str, Mapping[str, float | None]],
    self_critique: Mapping[str, Mapping[str, float | None]],
) -> Path:
    """The report's four panels as one PNG: benchmark accuracy, train/held-out loss curves, critic
    metrics on held-out pairs, and self-critique of the models' own benchmark answers.

    Each panel is scaled to its data, and a panel whose values are all zero says so in words
    instead of drawing nothing (the embedded default's tiny model solves no benchmark).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("no results to chart")
    fig = Figure(figsize=(13.0, 8.5), dpi=100)
    FigureCanvasAgg(fig)
    (acc_ax, loss_ax), (critic_ax, self_ax) = fig.subplots(2, 2)
    models = list(dict.fromkeys([*results, *curves, *critic, *self_critique]))
    colors = {m: f"C{i % 10}" for i, m in enumerate(models)}  # one colour per model in every panel

    columns = benchmark_columns(results)
    labels = [DISPLAY_NAMES.get(c, c) for c in columns] + ["Avg"]
    series = {m: [s.get(c) for c in columns] + [row_average(s, columns)] for m, s in results.items()}
    top = max((v for vs in series.values() for v in vs if v is not None), default=0.0)
    _grouped_bars(acc_ax, labels, series, digits=1, colors=colors)
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_title("Benchmark accuracy")
    if top > 0:
        acc_ax.set_ylim(0, min(100.0, top * 1.25 + 1))
        acc_ax.legend(fontsize=8)
    else:
        acc_ax.set_ylim(0, 1)
        acc_ax.set_yticks([])
        acc_ax.text(0.5, 0.6, "every model scores 0.0% on every benchmark:\nno model solves these problems yet\n"
                    "(see the loss and critic panels for what training changed)",
                    ha="center", va="center", transform=acc_ax.transAxes, fontsize=10)

    drawn = False
    for model, curve in curves.items():
        for split, style in (("train", "-"), ("heldout", "--")):
            points = list(curve.get(split) or [])
            if points:
                xs, ys = zip(*points)
                loss_ax.plot(xs, ys, style, color=colors[model], marker="o" if split == "heldout" else None, markersize=3,
                             label=f"{model} {'held-out' if split == 'heldout' else 'train'}")
                drawn = True
    loss_ax.set_title("Loss per step (held-out at step 0 = the base model)")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss")
    if drawn:
        loss_ax.legend(fontsize=8)
    else:
        loss_ax.text(0.5, 0.5, "no training curves recorded", ha="center", va="center", transform=loss_ax.transAxes)

    for ax, data, title in ((critic_ax, critic, "Critic: verdicts on held-out solutions"),
                            (self_ax, self_critique, "Self-critique: verdicts on own benchmark answers")):
        groups = [label for _, label in CRITIC_METRICS]
        bars = {m: [(d or {}).get(key) for key, _ in CRITIC_METRICS] for m, d in data.items()}
        if bars:
            _grouped_bars(ax, groups, bars, digits=2, colors=colors)
            ax.set_ylim(0, 1.15)
            ax.legend(fontsize=8)
            n = max(((d or {}).get("n") or 0) for d in data.values())
            ax.set_title(f"{title} (n={n})")
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(title)
    fig.text(0.5, 0.005, "critic metrics: a critique without a verdict counts as a miss; F1 treats \"wrong\" as the "
             "positive class; \"-\" = undefined", ha="center", fontsize=8, color="dimgray")
    fig.tight_layout(rect=(0, 0.02, 1, 1))

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
