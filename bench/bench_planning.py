"""Resume planning of the generation stages at scale; prints times and ratios, asserts nothing.

    OMP_NUM_THREADS=1 python bench/bench_planning.py [--rows 2000 16000 64000]

For each size, the respond and critique stages run with every row already journaled
(a finished run started again, or a resumed one with nothing left): the time is
planning (content ids, what is done), writing the output and failures file, and the
journal check, with no model and no request. Linear planning shows ~8x from 2K to
16K rows and ~4x from 16K to 64K; the quadratic planning this replaced took 15 s at
16K rows and minutes at 64K.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def _params(tmp: Path):
    import yaml

    from cft.config import parse_params

    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["critique"]["teachers"] = [{"kind": "llm", "model": "teacher-x", "backend": "openai",
                                     "base_url": "http://127.0.0.1:9/v1", "api_key_env": "CFT_BENCH_KEY"}]
    data["register"]["tracking_uri"] = f"sqlite:///{tmp}/mlruns.db"
    return parse_params(data)


def bench(n: int) -> tuple[float, float]:
    from cft.data.io import write_jsonl
    from cft.generate.journal import Journal
    from cft.stages import critique, respond

    with tempfile.TemporaryDirectory(prefix="cft-bench-plan-") as tmp:
        tmp = Path(tmp)
        params = _params(tmp)
        problems = [{"id": f"p{i}", "source": "bench", "question": f"What is {i} + {i}? Show the steps.",
                     "gold_answer": str(2 * i), "solution": None} for i in range(n)]
        write_jsonl(tmp / "problems.jsonl", problems)
        responses_out = tmp / "data" / "responses.jsonl"
        student = params.respond.models[0]
        with Journal(respond.journal_path(responses_out)) as journal:  # a finished run's journal
            journal.append_many(
                {"id": p.id, "problem_id": p.meta["problem"]["id"], "model": student.name_or_path,
                 "response": f"It is \\boxed{{{p.meta['problem']['gold_answer']}}}.", "sample_index": 0,
                 "extracted_answer": p.meta["problem"]["gold_answer"], "correct": True}
                for p in respond.plan(problems, student, params.respond.system_prompt))
        start = time.perf_counter()
        summary = respond.run(params, tmp / "problems.jsonl", responses_out)
        respond_s = time.perf_counter() - start
        assert summary["generated"] == 0 and summary["rows"] == n, summary

        critiques_out = tmp / "data" / "critiques.jsonl"
        from cft.data.io import read_jsonl

        pairs = [(r, problems[int(r["problem_id"][1:])]) for r in read_jsonl(responses_out)]
        teacher = params.critique.teachers[0]
        with Journal(critique.journal_path(critiques_out)) as journal:
            journal.append_many(critique.critique_row(p.meta["resp"], p.meta["problem"], teacher.model,
                                                      teacher.prompt_version, "Right. Conclusion: right [END]", p.id)
                                for p in critique.plan_llm(pairs, teacher))
        start = time.perf_counter()
        summary = critique.run(params, tmp / "problems.jsonl", responses_out, critiques_out)
        critique_s = time.perf_counter() - start
        assert summary["rows"] == n and summary["failed"] == 0, summary
    return respond_s, critique_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 16000, 64000])
    args = parser.parse_args()
    os.environ.setdefault("CFT_BENCH_KEY", "bench")
    print("resume with nothing left to do (plan + output + journal check), seconds")
    print(f"  {'rows':>7} {'respond':>9} {'critique':>9}")
    times = {}
    for n in args.rows:
        times[n] = bench(n)
        print(f"  {n:7d} {times[n][0]:9.2f} {times[n][1]:9.2f}", flush=True)
    sizes = sorted(times)
    for small, big in itertools.pairwise(sizes):
        print(f"  {small} -> {big} rows ({big / small:.0f}x): respond {times[big][0] / times[small][0]:.1f}x, "
              f"critique {times[big][1] / times[small][1]:.1f}x  (linear: {big / small:.0f}x)")


if __name__ == "__main__":
    main()
