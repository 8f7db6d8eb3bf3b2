"""Stage evaluate: the paper's protocol (zero-shot, greedy, boxed answers) on math benchmarks.

    cft evaluate --model models/cft --predictions data/eval/predictions.jsonl --metrics metrics/eval.json

Metrics: accuracy per benchmark (0-100, as in the paper) and their unweighted average.
"""

from __future__ import annotations

from pathlib import Path

from cft.config import BenchmarkConfig, Params
from cft.data.io import write_json, write_jsonl

SHIPPED_BENCHMARKS = Path("sources/benchmarks")


def load_benchmark(bench: BenchmarkConfig):
    from cft.data.adapters import BENCHMARK_FILES, load_problems

    if bench.path:
        fields = {k: v for k, v in (("question_field", bench.question_field), ("answer_field", bench.answer_field)) if v}
        return load_problems(bench.path, bench.format or "jsonl", limit=bench.limit, **fields)
    if bench.name not in BENCHMARK_FILES:
        raise ValueError(f"evaluate.benchmarks: unknown benchmark '{bench.name}' without a path (shipped: {', '.join(sorted(BENCHMARK_FILES))})")
    return load_problems(SHIPPED_BENCHMARKS / BENCHMARK_FILES[bench.name], bench.name, limit=bench.limit)


def run(params: Params, model: str, predictions_path: Path, metrics_path: Path) -> dict:
    from cft.evaluate.grade import grade_responses
    from cft.evaluate.metrics import summarise
    from cft.generate import Sampling, get_generator

    cfg = params.evaluate
    generator = get_generator("transformers", model, device=cfg.device, batch_size=cfg.batch_size)
    greedy = Sampling(temperature=0.0, max_new_tokens=cfg.max_new_tokens)
    predictions, per_benchmark = [], {}
    for bench in cfg.benchmarks:
        items = load_benchmark(bench)
        chats = [[{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": it.question}] for it in items]
        outs = generator.generate(chats, greedy)
        grades = grade_responses([(g.text, it.gold_answer) for it, g in zip(items, outs)], timeout_s=cfg.grade_timeout_s)
        per_benchmark[bench.name] = [g.correct for g in grades]
        predictions.extend(
            {
                "benchmark": bench.name,
                "id": it.id,
                "question": it.question,
                "response": g.text,
                "extracted_answer": gr.extracted,
                "gold_answer": it.gold_answer,
                "correct": gr.correct,
            }
            for it, g, gr in zip(items, outs, grades)
        )
    metrics = summarise(per_benchmark)
    metrics["model"] = model
    write_jsonl(predictions_path, predictions)
    write_json(metrics_path, metrics)
    return metrics
