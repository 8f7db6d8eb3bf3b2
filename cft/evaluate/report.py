"""Model comparison tables and charts, laid out like the paper's Table 2.

`results` maps model name (e.g. base / SFT / CFT) to {benchmark: accuracy on
the 0-100 scale}. Avg is the unweighted mean over the benchmarks, recomputed
here so every row is averaged the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def comparison_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A markdown table: one row per model, one column per benchmark plus Avg; best per column in bold."""
    if not results:
        raise ValueError("no results to tabulate")
    columns = benchmark_columns(results)
    rows = {model: [scores.get(c) for c in columns] + [row_average(scores, columns)] for model, scores in results.items()}
    n_cols = len(columns) + 1
    best = [max((r[i] for r in rows.values() if r[i] is not None), default=None) for i in range(n_cols)]

    def cell(value: float | None, i: int) -> str:
        if value is None:
            return MISSING
        text = f"{value:.1f}"
        return f"**{text}**" if len(rows) > 1 and value == best[i] else text

    header = ["Model"] + [DISPLAY_NAMES.get(c, c) for c in columns] + ["Avg"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" + "---:|" * n_cols,
    ]
    for model, values in rows.items():
        lines.append("| " + " | ".join([model] + [cell(v, i) for i, v in enumerate(values)]) + " |")
    return "\n".join(lines) + "\n"


def comparison_chart(results: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Write a grouped bar chart (benchmarks + Avg on x, one bar per model) as PNG; returns the path."""
    # Figure + Agg canvas directly: no global backend switch, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("no results to chart")
    columns = benchmark_columns(results)
    labels = [DISPLAY_NAMES.get(c, c) for c in columns] + ["Avg"]
    models = list(results)
    width = 0.8 / len(models)

    fig = Figure(figsize=(max(6.0, 1.2 * len(labels)), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, model in enumerate(models):
        scores = results[model]
        values = [scores.get(c) for c in columns] + [row_average(scores, columns)]
        xs = [i + (k - (len(models) - 1) / 2) * width for i in range(len(labels))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width=width, label=model)
        ax.bar_label(bars, labels=[f"{v:.1f}" if v is not None else MISSING for v in values], fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
