"""Score every saved checkpoint on a validation slice and keep the best as the output model.

    python -m cft.train.select_best --config models/cft/train_config.json \
        --checkpoint-dir models/checkpoints/cft-<id> --output-dir models/cft --metrics metrics/train.json

The paper's authors evaluated checkpoints on MATH-500 by hand and kept the best
(usually mid-training); this does it automatically. It runs as its own process
(launched after training), so the orchestrator never loads a model or touches CUDA.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cft.critique.templates import COT_SYSTEM_PROMPT
from cft.data.io import write_json
from cft.train.best import select_best_checkpoint
from cft.train.config import BestCheckpointConfig, TrainConfig

def load_validation(cfg: BestCheckpointConfig):
    """The validation slice, read exactly as the evaluate stage reads a benchmark."""
    from cft.config import BenchmarkConfig
    from cft.stages.evaluate import load_benchmark

    fields = cfg.model_dump(include={"path", "format", "question_field", "answer_field", "limit"})
    return load_benchmark(BenchmarkConfig(name=cfg.benchmark, **fields))


def accuracy_scorer(cfg: BestCheckpointConfig, device: str):
    """score(checkpoint) = greedy accuracy (0-100) on the validation slice."""
    from cft.evaluate.grade import grade_responses
    from cft.generate import Sampling
    from cft.generate.transformers_backend import TransformersGenerator

    items = load_validation(cfg)
    chats = [[{"role": "system", "content": COT_SYSTEM_PROMPT}, {"role": "user", "content": it.question}] for it in items]

    def score(checkpoint: Path) -> float:
        generator = TransformersGenerator(str(checkpoint), device=device)
        outs = generator.generate(chats, Sampling(temperature=0.0, max_new_tokens=cfg.max_new_tokens))
        grades = grade_responses([(g.text, it.gold_answer) for it, g in zip(items, outs)])
        accuracy = 100.0 * sum(g.correct for g in grades) / len(grades)
        print(f"[cft.train.select_best] {checkpoint.name}: {accuracy:.2f}", flush=True)
        return accuracy

    return score


def main(argv: list[str] | None = None) -> dict:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--metrics", default=None, help="train metrics JSON to add the selection to")
    args = parser.parse_args(argv)
    cfg = TrainConfig.model_validate(json.loads(Path(args.config).read_text()))
    if cfg.best_checkpoint is None:
        raise SystemExit("train.best_checkpoint is not configured")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = select_best_checkpoint(args.checkpoint_dir, accuracy_scorer(cfg.best_checkpoint, device), copy_to=args.output_dir)
    if args.metrics:
        path = Path(args.metrics)
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics.update({k: v for k, v in result.items() if k != "best_checkpoint"})
        write_json(path, metrics)
    return result


if __name__ == "__main__":
    main()
