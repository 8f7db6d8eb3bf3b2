"""Stage evaluate: one model on the math benchmarks (the paper's protocol), and as a critic.

    cft evaluate --model models/cft --name cft --out-dir data/eval/cft --metrics metrics/eval/cft.json

Benchmarks: zero-shot, greedy, boxed answers; accuracy per benchmark (0-100; the mean over
samples when n > 1, with pass@k and maj@n beside it) and their unweighted average.

Critic: the model critiques, with the CFT prompt, held-out (question, response) pairs whose
correctness grading knows (`data/train/heldout/critic.jsonl`, from the build stage; `limit`
of them taken across the problem sources), and then its own benchmark answers
(self-critique; the paper says CFT models cannot do this).
Verdicts are parsed with the project's verdict parser (`cft.evaluate.critic`).

Writes `<out-dir>/predictions.jsonl`, `<out-dir>/critiques.jsonl` (every critique with its
verdict and the truth) and the metrics JSON; `cft report` lays every model out side by side.
"""

from __future__ import annotations

from pathlib import Path

from cft import REPO_ROOT
from cft.config import BenchmarkConfig, EvaluateConfig, Params
from cft.data.io import read_jsonl, write_json, write_jsonl
from cft.stages.build import HELDOUT_CRITIC

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


def solve_chat(cfg: EvaluateConfig, question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": question}]


def generate_rows(generator, chats: list, sampling, desc: str) -> tuple[list, list[str | None]]:
    """(generations, error per row): a row that failed for good is an empty answer, graded wrong,
    with its error kept; the evaluation fails only when every row failed (the backend is down)."""
    from cft.generate import Generation
    from cft.generate.progress import GenerationFailed, generate_with_progress

    try:
        return generate_with_progress(generator, chats, sampling, desc=desc), [None] * len(chats)
    except GenerationFailed as exc:
        if len(exc.errors) == len(chats):
            raise RuntimeError(f"{desc}: every generation failed; first: {exc.errors[min(exc.errors)]}") from None
        outs = [g if g is not None else Generation("", 0, 0) for g in exc.results]
        return outs, [str(exc.errors[i])[:300] if i in exc.errors else None for i in range(len(chats))]


def benchmark_metrics(cfg: EvaluateConfig, generator, model: str, benchmarks: dict[str, list]) -> tuple[dict, list[dict]]:
    """(metrics, per-sample predictions) of one model on the loaded benchmarks."""
    from cft.evaluate.grade import grade_responses
    from cft.evaluate.metrics import sampled_metrics, summarise
    from cft.generate import Sampling

    predictions, per_benchmark, extra = [], {}, {}
    for name, items in benchmarks.items():
        chats = [solve_chat(cfg, it.question) for it in items]
        samples = []
        for k in range(cfg.samples):
            sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + k)
            outs, errors = generate_rows(generator, chats, sampling, f"evaluate {name}" + (f" sample {k + 1}" if cfg.samples > 1 else ""))
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
                    "grading_error": gr.error,
                    "generation_error": error,
                }
                for it, g, gr, error in zip(items, outs, grades, errors)
            )
        per_benchmark[name] = [gr.correct for grades in samples for gr in grades]
        if cfg.samples > 1:
            per_question = [[(s[i].extracted, s[i].correct) for s in samples] for i in range(len(items))]
            extra[name] = sampled_metrics(per_question, cfg.pass_at_k)
    metrics = summarise(per_benchmark)
    for name, values in extra.items():
        metrics["benchmarks"][name].update(values)
    return metrics, predictions


def spread(rows: list[dict], limit: int, key: str) -> list[dict]:
    """Up to `limit` rows taken round-robin over the values of `key` (a benchmark, a problem
    source), so every one is represented; rows without `key` (older files) make one group."""
    groups: dict[str | None, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get(key), []).append(row)
    picked: list[dict] = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        for group in groups.values():
            if i < len(group) and len(picked) < limit:
                picked.append(group[i])
    return picked


def critique_rows(cfg: EvaluateConfig, generator, pairs: list[dict], kind: str) -> tuple[dict, list[dict]]:
    """Critic metrics and the critiques of (question, response, correct) rows."""
    from cft.evaluate.critic import critic_chat, critic_metrics, verdict_of
    from cft.generate import Sampling

    sampling = Sampling(temperature=0.0, max_new_tokens=cfg.critic.max_new_tokens, seed=cfg.seed)
    chats = [critic_chat(p["question"], p["response"]) for p in pairs]
    outs, _ = generate_rows(generator, chats, sampling, f"critique ({kind})") if pairs else ([], [])
    verdicts = [verdict_of(g.text) for g in outs]
    rows = [
        {"kind": kind, "id": p["id"], "question": p["question"], "response": p["response"], "correct": p["correct"],
         "critique": g.text, "verdict": v}
        for p, g, v in zip(pairs, outs, verdicts)
    ]
    return critic_metrics([p["correct"] for p in pairs], verdicts), rows


def log_to_mlflow(params: Params, model: str, name: str, metrics: dict, group: str | None) -> str:
    """The metrics as `eval.*` on the run that trained `model` (a new `evaluate-<name>` run for a
    model cft did not train), tagged with the pipeline's run group if there is one; returns the run id."""
    from mlflow import MlflowClient

    from cft.registry.tracking import RUN_GROUP_TAG, experiment_id, log_evaluation, resolve_tracking_uri, training_run_id

    cfg = params.register_
    client = MlflowClient(resolve_tracking_uri(cfg))
    run_id = training_run_id(client, Path(model)) if Path(model).is_dir() else None
    if run_id is None:
        run_id = client.create_run(experiment_id(cfg), run_name=f"evaluate-{name}",
                                   tags={"cft.stage": "evaluate", "cft.model": model}).info.run_id
        client.set_terminated(run_id, "FINISHED")
    if group is not None:
        client.set_tag(run_id, RUN_GROUP_TAG, group)
    log_evaluation(client, run_id, metrics)
    return run_id


def run(params: Params, model: str, name: str, out_dir: Path, metrics_path: Path, heldout: Path = HELDOUT_CRITIC) -> dict:
    from cft.generate import get_generator

    cfg = params.evaluate
    benchmarks = {bench.name: load_benchmark(bench) for bench in cfg.benchmarks}
    generator = get_generator(cfg.backend, model, **cfg.generator_options())
    try:
        metrics, predictions = benchmark_metrics(cfg, generator, model, benchmarks)
        critiques: list[dict] = []
        if cfg.critic.limit:
            # The file is in ingest order, mostly the first source: take the sample across sources.
            pairs = spread(read_jsonl(heldout), cfg.critic.limit, "source") if heldout.exists() else []
            if pairs:
                metrics["critic"], rows = critique_rows(cfg, generator, pairs, "heldout")
                critiques += rows
            own = spread([p for p in predictions if p["sample_index"] == 0], cfg.critic.limit, "benchmark")
            metrics["self_critique"], rows = critique_rows(cfg, generator, own, "self")
            critiques += rows
    finally:
        getattr(generator, "close", lambda: None)()
    from cft.registry.tracking import run_group

    group = run_group(heldout.parent)
    metrics.update(model=model, name=name, run_group=group)
    write_jsonl(out_dir / "predictions.jsonl", predictions)
    write_jsonl(out_dir / "critiques.jsonl", critiques)
    write_json(metrics_path, metrics)
    log_to_mlflow(params, model, name, metrics, group)
    return metrics
