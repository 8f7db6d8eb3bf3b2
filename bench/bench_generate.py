"""Generation throughput, measured in one run; prints numbers and ratios, asserts nothing.

    OMP_NUM_THREADS=1 python bench/bench_generate.py

1. OpenAI backend against the local fake server answering every request after a
   fixed delay: rows/s at concurrency 1 and 32, and the ratio to the ideal
   (concurrency / delay): what the client side costs.
2. The same through the CLI, as a user runs it: `cft critique` in its own process
   with an LLM teacher on that server, at concurrency 32, on `--cli-seconds` of ideal
   work. Printed: the generation rate the stage itself reports (its last progress
   line) and the end-to-end rate including process start, imports, writing the
   output and logging usage to MLflow, each as a ratio to the ideal, and that fixed
   cost in seconds (it is paid once per run, so it fades as runs grow).
3. transformers backend on the CPU with a tiny model built on the spot: generated
   tokens/s batched (16 prompts a batch) vs one prompt at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # cft, and the fake server in tests/

from cft.generate import Sampling  # noqa: E402


def bench_openai(delay_s: float, concurrencies: list[int], seconds: float) -> None:
    from openai_server import FakeOpenAIServer

    from cft.generate.openai_backend import OpenAIGenerator

    os.environ.setdefault("CFT_BENCH_KEY", "bench")
    print(f"openai backend vs local server, {delay_s:.2f} s per request")
    with FakeOpenAIServer(delay_s=delay_s) as server:
        for c in concurrencies:
            ideal = c / delay_s
            n = max(c, int(ideal * seconds))  # about `seconds` of work at the ideal rate
            chats = [[{"role": "user", "content": f"Question: q{i}\n\nSolution: s{i}"}] for i in range(n)]
            with OpenAIGenerator("bench", base_url=server.url, api_key_env="CFT_BENCH_KEY",
                                 concurrency=c, timeout_s=30) as gen:
                gen.generate(chats[:c], Sampling())  # warm the connection pool
                start = time.perf_counter()
                results = list(gen.generate_iter(chats, Sampling()))
                elapsed = time.perf_counter() - start
            failed = sum(isinstance(r, Exception) for _, r in results)
            rate = n / elapsed
            print(f"  concurrency {c:3d}: {n:4d} rows in {elapsed:6.2f} s = {rate:7.1f} rows/s; "
                  f"ideal {ideal:7.1f}; ratio {rate / ideal:.2f}; failed {failed}; "
                  f"server max in flight {server.max_in_flight}")
    print()


def _critique_workspace(tmp: Path, url: str, rows: int, concurrency: int) -> None:
    import yaml

    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["critique"]["teachers"] = [{"kind": "llm", "model": "bench-teacher", "backend": "openai", "base_url": url,
                                     "api_key_env": "CFT_BENCH_KEY", "concurrency": concurrency, "timeout_s": 30}]
    data["register"]["tracking_uri"] = f"sqlite:///{tmp}/mlruns.db"
    data["register"]["artifact_location"] = str(tmp / "mlartifacts")
    (tmp / "params.yaml").write_text(yaml.safe_dump(data))
    with (tmp / "problems.jsonl").open("w") as problems, (tmp / "responses.jsonl").open("w") as responses:
        for i in range(rows):
            problems.write(json.dumps({"id": f"p{i}", "source": "bench", "question": f"What is {i} + {i}?",
                                       "gold_answer": str(2 * i), "solution": None}) + "\n")
            responses.write(json.dumps({"id": f"r{i}", "problem_id": f"p{i}", "response": f"It is \\boxed{{{2 * i}}}.",
                                        "extracted_answer": str(2 * i), "correct": True}) + "\n")


def _run_critique(tmp: Path) -> tuple[float, str]:
    cft = Path(sys.executable).with_name("cft")
    start = time.perf_counter()
    proc = subprocess.run([str(cft), "critique", "--problems", "problems.jsonl", "--responses", "responses.jsonl",
                           "--out", "data/critiques.jsonl"], cwd=tmp, capture_output=True, text=True,
                          env={**os.environ, "CFT_BENCH_KEY": "bench"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"cft critique failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stderr


def bench_cli(delay_s: float, concurrency: int, seconds: float) -> None:
    from openai_server import FakeOpenAIServer

    ideal = concurrency / delay_s
    rows = int(ideal * seconds)
    print(f"`cft critique` through the CLI, concurrency {concurrency}, {delay_s:.2f} s per request, {rows} rows")
    with FakeOpenAIServer(delay_s=delay_s) as server, tempfile.TemporaryDirectory(prefix="cft-bench-cli-") as tmp:
        tmp = Path(tmp)
        _critique_workspace(tmp, server.url, concurrency, concurrency)
        _run_critique(tmp)  # creates the MLflow store and warms the file cache; not measured
        _critique_workspace(tmp, server.url, rows, concurrency)
        wall, log = _run_critique(tmp)
    last = [line for line in log.splitlines() if f"{rows}/{rows} rows" in line][-1]
    stage_rate = float(re.search(r"([\d.]+) rows/s", last).group(1))
    generation_s = rows / stage_rate
    print(f"  generation (the stage's own count): {stage_rate:7.1f} rows/s; ideal {ideal:.1f}; ratio {stage_rate / ideal:.2f}")
    print(f"  end to end (process wall time):     {rows / wall:7.1f} rows/s in {wall:.1f} s; ratio {rows / wall / ideal:.2f}; "
          f"fixed cost {wall - generation_s:.1f} s (start-up, imports, output, MLflow)")
    print()


def bench_transformers(prompts: int, max_new_tokens: int) -> None:
    import torch

    from cft.generate.transformers_backend import TransformersGenerator
    from cft.model.tiny import build_tiny_model

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    corpus = [f"Question: what is {i} plus {i}? Solution: {i} plus {i} is {2 * i}. Conclusion: right [END]"
              for i in range(300)]
    chats = [[{"role": "user", "content": f"What is {i} plus {i * 3}? Explain."}] for i in range(prompts)]
    # Sampling, not greedy: a random tiny model greedily repeats one token and may stop at once.
    sampling = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=0)
    print(f"transformers backend on the CPU ({torch.get_num_threads()} thread(s)), tiny Llama, "
          f"{prompts} prompts x up to {max_new_tokens} new tokens")
    with tempfile.TemporaryDirectory(prefix="cft-bench-") as tmp:
        path = build_tiny_model(Path(tmp) / "tiny", corpus_texts=corpus)
        rates = {}
        for batch_size in (1, 16):
            gen = TransformersGenerator(str(path), batch_size=batch_size)
            gen.generate(chats[:2], Sampling(max_new_tokens=4))  # warm-up
            start = time.perf_counter()
            out = gen.generate(chats, sampling)
            elapsed = time.perf_counter() - start
            tokens = sum(g.completion_tokens for g in out)
            rates[batch_size] = tokens / elapsed
            print(f"  batch {batch_size:2d}: {tokens:5d} tokens in {elapsed:6.2f} s = {rates[batch_size]:8.1f} tokens/s "
                  f"({len(out) / elapsed:6.1f} rows/s)")
        print(f"  batched / one at a time: {rates[16] / rates[1]:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=3.0, help="target duration per concurrency level")
    parser.add_argument("--cli-seconds", type=float, default=30.0, help="ideal duration of the CLI run")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    bench_openai(args.delay, args.concurrency, args.seconds)
    bench_cli(args.delay, max(args.concurrency), args.cli_seconds)
    bench_transformers(args.prompts, args.max_new_tokens)


if __name__ == "__main__":
    main()
