"""Score every saved checkpoint on a validation slice and keep the best as the output model.

    python -m cft.train.select_best --config models/checkpoints/cft-<id>/train_config.json \
        --checkpoint-dir models/checkpoints/cft-<id> --output-dir models/cft --metrics metrics/train.json \
        [--scoring '{"backend": "vllm", "options": {"tensor_parallel_size": 8}}']

The paper's authors evaluated checkpoints on MATH-500 by hand and kept the best (usually
mid-training); this does it automatically, with the evaluate stage's protocol (its system
prompt, greedy decoding, its benchmark loader and grader) on the evaluate stage's
generation backend (`--scoring`, which the train stage fills from `evaluate`). It runs as
its own process after training, so the orchestrator never loads a model or touches CUDA.
LoRA checkpoints hold adapters: each is merged into the base for scoring, and the best is
exported merged.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from cft.data.io import write_json
from cft.train.best import cached_score, select_best_checkpoint
from cft.train.checkpoints import SCORE_PREFIX
from cft.train.config import BestCheckpointConfig, TrainConfig
from cft.train.export import export_checkpoint, is_adapter, merge_lora

LOG = "[cft.train.select_best]"


def load_validation(cfg: BestCheckpointConfig):
    """The validation slice, read exactly as the evaluate stage reads a benchmark."""
    from cft.config import BenchmarkConfig
    from cft.stages.evaluate import load_benchmark

    fields = cfg.model_dump(include={"path", "format", "question_field", "answer_field", "limit"})
    return load_benchmark(BenchmarkConfig(name=cfg.benchmark, **fields))


def default_scoring() -> dict[str, Any]:
    """Without `--scoring` (a hand-run selection): transformers on the GPU when there is one."""
    import torch

    return {"backend": "transformers", "options": {"device": "cuda" if torch.cuda.is_available() else "cpu"}}


def _generate(generator, chats, sampling, desc: str):
    """Every answer, with progress; a row the backend could not answer (e.g. a prompt over the
    model's context) is graded as a wrong answer."""
    from cft.generate import Generation
    from cft.generate.progress import GenerationFailed, generate_with_progress

    try:
        return generate_with_progress(generator, chats, sampling, desc=desc)
    except GenerationFailed as exc:
        print(f"{LOG} {desc}: {exc}", flush=True)
        return [g if g is not None else Generation("", 0, 0, empty=True) for g in exc.results]


def accuracy_scorer(cfg: TrainConfig, scoring: dict[str, Any]):
    """score(checkpoint) = greedy accuracy (0-100) on the validation slice, cached per checkpoint."""
    from cft.critique.templates import COT_SYSTEM_PROMPT
    from cft.evaluate.grade import grade_responses
    from cft.generate import Sampling, get_generator

    best = cfg.best_checkpoint
    items = load_validation(best)
    system_prompt = scoring.get("system_prompt") or COT_SYSTEM_PROMPT
    chats = [[{"role": "system", "content": system_prompt}, {"role": "user", "content": it.question}] for it in items]
    sampling = Sampling(temperature=0.0, max_new_tokens=best.max_new_tokens)
    key = {"validation": best.model_dump(mode="json"), "backend": scoring["backend"], "system_prompt": system_prompt}

    def accuracy(checkpoint: Path) -> float:
        # In the run folder (same disk); a kill leaves it to `cft prune-checkpoints` / the train stage's prune.
        with tempfile.TemporaryDirectory(prefix=SCORE_PREFIX, dir=checkpoint.parent) as scratch:
            model = checkpoint
            if is_adapter(checkpoint):  # LoRA: score the merged model, as it would be exported
                model = Path(scratch) / "merged"
                merge_lora(checkpoint, cfg.base_model, model, cfg.sft_value("model_init_kwargs"))
            generator = get_generator(scoring["backend"], str(model), **scoring.get("options", {}))
            try:
                outs = _generate(generator, chats, sampling, desc=f"score {checkpoint.name}")
            finally:
                generator.close()  # frees the GPUs for the next checkpoint's engine
        grade_kw = {"timeout_s": scoring["grade_timeout_s"]} if "grade_timeout_s" in scoring else {}
        grades = grade_responses([(g.text, it.gold_answer) for it, g in zip(items, outs)], **grade_kw)
        value = 100.0 * sum(g.correct for g in grades) / len(grades)
        print(f"{LOG} {checkpoint.name}: {value:.2f}", flush=True)
        return value

    return lambda checkpoint: cached_score(checkpoint, key, accuracy)


def select_and_export(cfg: TrainConfig, checkpoint_dir: Path, output_dir: Path, scoring: dict[str, Any]) -> dict:
    """Score the checkpoints, publish the best at `output_dir` (merged for LoRA)."""
    result = select_best_checkpoint(checkpoint_dir, accuracy_scorer(cfg, scoring))
    export_checkpoint(
        Path(result["best_checkpoint"]), output_dir, base_model=cfg.base_model,
        model_init_kwargs=cfg.sft_value("model_init_kwargs"),
        extra_files={"train_config.json": json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n"},
    )
    print(f"{LOG} best: {Path(result['best_checkpoint']).name} ({result['best_score']:.2f}) -> {output_dir}", flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--metrics", default=None, help="train metrics JSON to add the selection to")
    parser.add_argument("--scoring", default=None, help='JSON: {"backend", "options", "system_prompt", "grade_timeout_s"}')
    args = parser.parse_args(argv)
    cfg = TrainConfig.model_validate(json.loads(Path(args.config).read_text()))
    if cfg.best_checkpoint is None:
        raise SystemExit("train.best_checkpoint is not configured")
    scoring = json.loads(args.scoring) if args.scoring else default_scoring()
    result = select_and_export(cfg, Path(args.checkpoint_dir), Path(args.output_dir), scoring)
    if args.metrics:
        path = Path(args.metrics)
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics.update({k: v for k, v in result.items() if k != "best_checkpoint"})
        write_json(path, metrics)
    return result


if __name__ == "__main__":
    main()
