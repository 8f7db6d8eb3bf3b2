"""Training throughput benchmarks (printed ratios, never test assertions).

CPU (default): real (non-padding) tokens/s and padding fraction of the train stage's
batching (length-grouped, `train.sft.train_sampling_strategy: group_by_length`) vs padding
every batch to its longest row in random order. The same rows for both: `steps x batch`
rows drawn once from the shipped One-Shot CFT critiques, one epoch over exactly those
(so the same steps too; both runs report the same real-token count), the same tiny model;
both through `cft.train.run.train`.

    OMP_NUM_THREADS=1 python bench/bench_train.py [--steps 12 --batch 8 --max-length 2048 --repeats 2]

GPU (`--gpu-mfu`): model FLOPs utilisation of a ~0.5B-parameter Qwen2-architecture model
(Qwen2.5-0.5B shape, random weights), bf16, sequence length 2048, full training steps.

    python bench/bench_train.py --gpu-mfu [--batch 4 --steps 10 --peak-tflops 989]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
for _k, _v in {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)

CRITIQUES = REPO / "sources" / "critiques" / "dsr-cft-p0.jsonl"


def cft_rows(path: Path) -> list[dict]:
    """The shipped `messages` rows as the train contract's prompt-completion rows."""
    from cft.data.io import read_jsonl

    return [
        {"id": str(i), "mode": "cft", "prompt": [r["messages"][0]], "completion": [r["messages"][1]]}
        for i, r in enumerate(read_jsonl(path))
    ]


def bench_cpu(args) -> None:
    import random
    import statistics

    from cft.data.io import write_jsonl
    from cft.model.tiny import build_tiny_model
    from cft.train import run
    from cft.train.config import TrainConfig

    all_rows = cft_rows(Path(args.data))
    # The rows both modes train on: drawn once, in no length order; one epoch over them.
    rows = random.Random(0).sample(all_rows, min(args.steps * args.batch, len(all_rows)))
    steps = len(rows) // args.batch
    rows = rows[: steps * args.batch]
    runs: dict[str, list[dict]] = {"random_padded": [], "length_grouped": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_jsonl(tmp / "cft.jsonl", rows)
        build_tiny_model(tmp / "tiny", corpus_texts=[r["prompt"][0]["content"] + r["completion"][0]["content"] for r in all_rows],
                         max_position_embeddings=max(1024, args.max_length))
        # ABBA order over repeats: a busy shared CPU drifts, alternating cancels most of it.
        order = [("random_padded", "random"), ("length_grouped", "group_by_length")]
        for rep in range(args.repeats):
            for name, sampler in order if rep % 2 == 0 else order[::-1]:
                cfg = TrainConfig(
                    base_model=str(tmp / "tiny"), global_batch_size=args.batch,
                    sft={"max_length": args.max_length, "num_train_epochs": 1, "per_device_train_batch_size": args.batch,
                         "train_sampling_strategy": sampler, "save_strategy": "no", "logging_steps": steps,
                         "seed": rep, "bf16": False, "activation_checkpointing": False},
                )
                out = tmp / f"{name}{rep}"
                m = run.train(cfg, train_file=tmp / "cft.jsonl", output_dir=out,
                              metrics_path=out / "m.json", plot_path=out / "l.csv")
                runs[name].append(m)
    summary = {
        name: {
            "tokens_per_s": [m["tokens_per_s"] for m in ms],
            "median_tokens_per_s": statistics.median(m["tokens_per_s"] for m in ms),
            "padding_fraction": statistics.mean(m["padding_fraction"] for m in ms),
            "train_tokens": sorted({m["train_tokens"] for m in ms}),
            "steps": sorted({m["steps"] for m in ms}),
        }
        for name, ms in runs.items()
    }
    g, r = summary["length_grouped"], summary["random_padded"]
    print(json.dumps(summary, indent=2))
    print(f"rows={len(rows)} steps={steps} batch={args.batch} max_length={args.max_length} "
          f"repeats={args.repeats} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    same = g["train_tokens"] == r["train_tokens"] and g["steps"] == r["steps"]
    print(f"same rows and steps in both modes: {same} (real tokens {g['train_tokens']} vs {r['train_tokens']})")
    mult = max(min(len(rows) // (args.batch * 4), 50), 1)  # transformers' LengthGroupedSampler
    print(f"length grouping sorts mega-batches of {mult * args.batch} rows here (at 50K rows: {50 * args.batch})")
    print(f"length-grouped: {g['median_tokens_per_s']:.0f} real tok/s, padding {g['padding_fraction']:.1%}")
    print(f"random padded:  {r['median_tokens_per_s']:.0f} real tok/s, padding {r['padding_fraction']:.1%}")
    print(f"ratio (grouped / random, medians): {g['median_tokens_per_s'] / r['median_tokens_per_s']:.2f}x")


def bench_gpu_mfu(args) -> None:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    if not torch.cuda.is_available():
        sys.exit("--gpu-mfu needs CUDA")
    attn = "flash_attention_2" if __import__("importlib").util.find_spec("flash_attn") else "sdpa"
    # Qwen2.5-0.5B's shape (0.49B parameters, tied embeddings), random weights.
    config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation=attn).cuda()
    model.train()
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    seq, batch = args.seq_len, args.batch
    n_params = sum(p.numel() for p in model.parameters())
    # PaLM appendix B: 6N per token for the dense weights + 12·L·H·S for attention scores.
    flops_per_token = 6 * n_params + 12 * config.num_hidden_layers * config.hidden_size * seq
    ids = torch.randint(0, config.vocab_size, (batch, seq), device="cuda")

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    tokens_per_s = batch * seq / dt
    achieved = tokens_per_s * flops_per_token / 1e12
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or (989.0 if ("H100" in name or "H200" in name) else 312.0 if "A100" in name else None)
    print(f"device={name} attn={attn} params={n_params / 1e9:.3f}B seq={seq} batch={batch} "
          f"peak_mem={torch.cuda.max_memory_allocated() / 2**30:.1f}GiB")
    print(f"step {dt * 1000:.0f} ms, {tokens_per_s:.0f} tok/s, {achieved:.1f} TFLOP/s achieved")
    if peak:
        print(f"MFU = {achieved / peak:.1%} of {peak:.0f} TFLOP/s bf16 dense peak")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu-mfu", action="store_true", help="GPU MFU of a ~0.5B Qwen2 model instead of the CPU bench")
    p.add_argument("--data", default=str(CRITIQUES))
    p.add_argument("--steps", type=int, default=None, help="CPU default 20, GPU default 10")
    p.add_argument("--batch", type=int, default=None, help="CPU default 8, GPU default 4")
    p.add_argument("--max-length", type=int, default=2048, help="CPU bench: the paper's 2048 keeps most rows whole")
    p.add_argument("--repeats", type=int, default=2, help="CPU bench: runs per mode, ABBA order")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak; guessed from the device name")
    args = p.parse_args(argv)
    if args.gpu_mfu:
        args.steps, args.batch = args.steps or 10, args.batch or 4
        bench_gpu_mfu(args)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        args.steps, args.batch = args.steps or 12, args.batch or 8
        bench_cpu(args)


if __name__ == "__main__":
    main()
