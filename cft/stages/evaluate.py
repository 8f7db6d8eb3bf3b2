"""Stage evaluate: the paper's protocol (zero-shot, greedy, boxed answers) on math benchmarks.

    cft evaluate --model models/cft --predictions data/eval/predictions.jsonl \
        --metrics metrics/eval.json --report-dir reports/comparison

Metrics: accuracy per benchmark (0-100, as in the paper; the mean over samples when
n > 1, with pass@k and maj@n beside it) and their unweighted average. Baseline models
from params are evaluated the same way, and every model lands in a comparison report
laid out like the paper's Table 2 (markdown + bar chart).
"""

from __future__ import annotations

import json
from pathlib import Path

from cft import REPO_ROOT
from cft.config import BenchmarkConfig, EvaluateConfig, Params
from cft.data.io import write_json, write_jsonl

SHIPPED_BENCHMARKS = Path("sources/benchmarks")


def load_benchmark(bench: BenchmarkConfig):
    from cft.data.adapters import BENCHMARK_FILES, load_problems

    if bench.path:
        fields = {k: v for k, v in (("question_field", bench.question_field), ("answer_field", bench.answer_field)) if v}
        return load_problems(bench.path, bench.format or "jsonl", limit=bench.limit, source=bench.name, **fields)
    if bench.name not in BENCHMARK_FILES:
        raise ValueError(f"evaluate.benchmarks: unknown benchmark '{bench.name}' without a path (shipped: {', '.join(sorted(BENCHMARK_FILES))})")
    shipped = SHIPPED_BENCHMARKS / BENCHMARK_FILES[bench.name]
    if not shipped.exists():  # run from outside the project: the checkout's own copy
        shipped = REPO_ROOT / shipped
    return load_problems(shipped, bench.name, limit=bench.limit)


def evaluate_model(cfg: EvaluateConfig, model: str, benchmarks: dict[str, list]) -> tuple[dict, list[dict]]:
    """(metrics, per-sample predictions) of one model on the loaded benchmarks."""
    from cft.evaluate.grade import grade_responses
    from cft.evaluate.metrics import sampled_metrics, summarise
    from cft.generate import Sampling, get_generator

    generator = get_generator(cfg.backend, model, **cfg.generator_options())
    predictions, per_benchmark, extra = [], {}, {}
    for name, items in benchmarks.items():
        chats = [[{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": it.question}] for it in items]
        samples = []
        for k in range(cfg.samples):
            sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + k)
            outs = generator.generate(chats, sampling)
            grades = grade_responses([(g.text, it.gold_answer) for it, g in zip(items, outs)], timeout_s=cfg.grade_timeout_s)
            samples.append(grades)
            predictions.extend(
                {
                    "model": model,
                    "benchmark": name,
                    "id": it.id,
                    "sample_index": k,
                    "question": it.question,
                    "response": g.text,
                    "extracted_answer": gr.extracted,
                    "gold_answer": it.gold_answer,
                    "correct": gr.correct,
                }
                for it, g, gr in zip(items, outs, grades)
            )
        per_benchmark[name] = [gr.correct for grades in samples for gr in grades]
        if cfg.samples > 1:
            per_question = [[(s[i].extracted, s[i].correct) for s in samples] for i in range(len(items))]
            extra[name] = sampled_metrics(per_question, cfg.pass_at_k)
    metrics = summarise(per_benchmark)
    for name, values in extra.items():
        metrics["benchmarks"][name].update(values)
    metrics["model"] = model
    return metrics, predictions


def run(params: Params, model: str, predictions_path: Path, metrics_path: Path, report_dir: Path | None = None) -> dict:
    cfg = params.evaluate
    benchmarks = {bench.name: load_benchmark(bench) for bench in cfg.benchmarks}
    metrics, predictions = evaluate_model(cfg, model, benchmarks)
    summaries = {cfg.name: metrics}
    for baseline in cfg.baselines:
        summaries[baseline.name], rows = evaluate_model(cfg, baseline.model, benchmarks)
        predictions.extend(rows)
    write_jsonl(predictions_path, predictions)
    write_json(metrics_path, metrics)
    if report_dir is not None:
        write_comparison(summaries, report_dir)
    return metrics


def write_comparison(summaries: dict[str, dict], report_dir: Path) -> None:
    """Table 2 of the paper for these models: comparison.md, comparison.png, comparison.json."""
    from cft.evaluate.report import comparison_chart, comparison_table, results_from_summaries

    results = results_from_summaries(summaries)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "comparison.md").write_text(comparison_table(results) + "\n", encoding="utf-8")
    comparison_chart(results, report_dir / "comparison.png")
    write_json(report_dir / "comparison.json", summaries)


def compare_files(named_metrics: dict[str, Path], report_dir: Path) -> str:
    """Build the comparison from eval.json files of separate runs (e.g. one `dvc exp run` per mode)."""
    summaries = {name: json.loads(Path(path).read_text(encoding="utf-8")) for name, path in named_metrics.items()}
    write_comparison(summaries, report_dir)
    return (report_dir / "comparison.md").read_text(encoding="utf-8")
