"""Stage tiny_model: build the embedded default model from params.

    cft tiny-model --out models/tiny
"""

from __future__ import annotations

from pathlib import Path

from cft.config import Params
from cft.data.io import read_jsonl


def corpus_texts(paths: list[str]) -> list[str]:
    """Every string field of every row: enough text to learn math-flavoured merges."""
    texts = []
    for path in paths:
        for row in read_jsonl(path):
            texts.extend(v for v in row.values() if isinstance(v, str))
    return texts


def run(params: Params, out: Path) -> Path:
    from cft.model.tiny import build_tiny_model

    cfg = params.tiny_model
    return build_tiny_model(
        out,
        corpus_texts=corpus_texts(cfg.tokenizer_corpus),
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        seed=cfg.seed,
    )
