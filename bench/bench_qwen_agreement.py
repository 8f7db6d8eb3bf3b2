"""Agreement with Qwen2.5-Math's grader on the same rows, every disagreement classified.

The rows: every row of the seven shipped benchmarks as responses whose right
verdict is known (tests/gold_forms.py: the gold restated as a model writes it,
and perturbed into a wrong answer; `--full` for every form), plus each
benchmark's reference solutions where it has them (right by construction).
Both graders see the same response text; each parses the gold from the same
source row its own way (Qwen's `parse_ground_truth` on the raw row).

Qwen2.5-Math's grader is not vendored and never enters the project's
environment: this script builds a throwaway virtual environment (default
/tmp/qwen-grader-venv) with what its `evaluation/parser.py` and `grader.py`
import (sympy 1.12, antlr4 4.11.1, its bundled latex2sympy, regex,
word2number, pebble, numpy), and runs them in a subprocess from a checkout
given with --qwen-dir, the way its `evaluate.py` does (pebble pool, 3 s per
item). That grader evaluates model output with `parse_expr`/`eval`; here it
only sees the responses built by this script.

Every disagreement is classified: who matches the known verdict, and at which
stage the other went wrong, found by re-running the losing grader with the
winner's piece swapped in (its extraction, or its reading of the gold):

- extraction: the loser grades right once given the winner's extracted answer;
- gold: the loser grades right once given the winner's reading of the gold;
- equivalence: both pieces agree, the comparison itself differs.

Usage:
  git clone https://github.com/QwenLM/Qwen2.5-Math /tmp/Qwen2.5-Math   # or any checkout
  OMP_NUM_THREADS=1 python bench/bench_qwen_agreement.py --qwen-dir /tmp/Qwen2.5-Math [--full] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # gold_forms: the restatement oracle shared with the tests

from cft.data.adapters import BENCHMARK_FILES, load_problems  # noqa: E402
from cft.data.io import iter_records  # noqa: E402
from cft.evaluate.grade import default_workers, grade_responses, is_equivalent  # noqa: E402

QWEN_REQUIREMENTS = ["sympy==1.12", "antlr4-python3-runtime==4.11.1", "regex", "word2number", "pebble", "numpy"]
# Qwen's data names; math-500 and theoremqa are not in its parse_ground_truth, so their
# gold goes through its generic path (strip_string of the answer field), as its forks do.
QWEN_DATA_NAME = {
    "math-500": "math500",
    "minerva_math": "minerva_math",
    "gsm8k": "gsm8k",
    "olympiadbench": "olympiadbench",
    "aime24": "aime24",
    "amc23": "amc23",
    "theoremqa": "theoremqa",
}
WITH_REFERENCE = ("math-500", "minerva_math", "gsm8k", "aime24")

# Runs inside the throwaway environment, from Qwen's evaluation/ folder.
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, os.getcwd())  # Qwen's evaluation/ folder: parser.py, grader.py, utils.py
    from concurrent.futures import TimeoutError
    from pebble import ProcessPool
    from parser import extract_answer, strip_string, parse_ground_truth, STRIP_EXCEPTIONS
    from grader import math_equal_process

    rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
    params = []
    for i, row in enumerate(rows):
        name, skip = row["data_name"], row["data_name"] in STRIP_EXCEPTIONS
        try:
            if "gold_text" in row:
                gt = row["gold_text"] if skip else strip_string(row["gold_text"])
            else:
                gt = parse_ground_truth(row["example"], name)[1]
            if "pred_text" in row:
                pred = strip_string(row["pred_text"], skip_unit=skip)
            else:
                pred = strip_string(extract_answer(row["response"], name), skip_unit=skip)
        except Exception as exc:
            pred, gt = "", None
        params.append((i, pred, gt))
    out = open(sys.argv[2], "w", encoding="utf-8")
    with ProcessPool(max_workers=int(sys.argv[3])) as pool:
        results = pool.map(math_equal_process, params, timeout=3).result()
        for i, pred, gt in params:
            try:
                correct, error = bool(next(results)), None
            except TimeoutError:
                correct, error = False, "timeout"
            except Exception as exc:
                correct, error = False, type(exc).__name__
            out.write(json.dumps({"pred": str(pred), "gt": str(gt), "correct": correct, "error": error}) + "\\n")
    """
)


def build_venv(venv: Path, qwen_eval: Path) -> Path:
    python = venv / "bin" / "python"
    marker = venv / ".qwen-grader-ready"
    if marker.exists():
        return python
    print(f"building {venv} (PyPI: {', '.join(QWEN_REQUIREMENTS)} + its bundled latex2sympy)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *QWEN_REQUIREMENTS], check=True)
    subprocess.run([*pip, str(qwen_eval / "latex2sympy")], check=True)
    marker.touch()
    return python


def run_qwen(python: Path, qwen_eval: Path, rows: list[dict], workers: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="qwen-grader-") as tmp:
        driver, inp, out = Path(tmp, "driver.py"), Path(tmp, "in.jsonl"), Path(tmp, "out.jsonl")
        driver.write_text(DRIVER, encoding="utf-8")
        inp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        subprocess.run([str(python), str(driver), str(inp), str(out), str(workers)], cwd=qwen_eval, check=True)
        return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def qwen_example(name: str, raw: dict) -> dict:
    if name == "math-500":
        return {"gt_cot": raw.get("solution") or "", "gt": raw["answer"]}
    if name == "theoremqa":
        return {"gt_cot": "", "gt": str(raw["answer"])}
    return raw


def load_cases(limit: int | None, full: bool) -> list[dict]:
    from gold_forms import BENCHMARKS, cases

    out = []
    for name in BENCHMARKS:
        path = REPO / "sources" / "benchmarks" / BENCHMARK_FILES[name]
        problems = load_problems(path, name, limit=limit, notes=[])
        raws = [r.data for r, _ in zip(iter_records(path), problems)]
        for case in cases(name, [p.gold_answer for p in problems], full=full):
            out.append({"benchmark": name, "row": case.row, "form": case.form, "truth": case.correct,
                        "response": case.response, "gold": case.gold, "raw": raws[case.row]})
        if name in WITH_REFERENCE:
            for row, (problem, raw) in enumerate(zip(problems, raws)):
                out.append({"benchmark": name, "row": row, "form": "reference solution", "truth": True,
                            "response": problem.solution, "gold": problem.gold_answer, "raw": raw})
    return out


def classify(cases: list[dict], python: Path, qwen_eval: Path, workers: int) -> list[tuple[str, str, dict]]:
    """(winner, stage, case) for each disagreement, by swapping the winner's piece into the loser."""
    swaps = []
    for c in cases:
        name = QWEN_DATA_NAME[c["benchmark"]]
        if c["qwen"]["correct"] == c["truth"]:  # cft lost: give cft Qwen's pieces
            c["swap_pred"] = is_equivalent(c["qwen"]["pred"] or None, c["gold"]) == c["truth"]
            c["swap_gold"] = is_equivalent(c["extracted"], c["qwen"]["gt"]) == c["truth"]
        else:  # Qwen lost: give Qwen cft's extracted answer, then cft's gold
            swaps.append({"data_name": name, "example": qwen_example(c["benchmark"], c["raw"]), "pred_text": c["extracted"] or ""})
            swaps.append({"data_name": name, "gold_text": c["gold"], "response": c["response"]})
    verdicts = iter(run_qwen(python, qwen_eval, swaps, workers)) if swaps else iter(())
    out = []
    for c in cases:
        if c["qwen"]["correct"] != c["truth"]:
            c["swap_pred"] = next(verdicts)["correct"] == c["truth"]
            c["swap_gold"] = next(verdicts)["correct"] == c["truth"]
            winner = "cft"
        else:
            winner = "qwen"
        stage = "extraction" if c["swap_pred"] else "gold" if c["swap_gold"] else "equivalence"
        out.append((winner, stage, c))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qwen-dir", type=Path, required=True, help="a checkout of QwenLM/Qwen2.5-Math")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/qwen-grader-venv"), help="throwaway environment for its grader")
    parser.add_argument("--full", action="store_true", help="every restatement of every row (slow)")
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each benchmark")
    parser.add_argument("--workers", type=int, default=None, help=f"grading processes each (default {default_workers()})")
    parser.add_argument("--examples", type=int, default=2, help="examples printed per category")
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()
    qwen_eval = args.qwen_dir / "evaluation"
    if not (qwen_eval / "grader.py").exists() or not (qwen_eval / "parser.py").exists():
        parser.error(f"{qwen_eval} has no grader.py/parser.py: is --qwen-dir a Qwen2.5-Math checkout?")
    python = build_venv(args.venv, qwen_eval)

    cases = load_cases(args.limit, args.full)
    started = time.perf_counter()
    ours = grade_responses([(c["response"], c["gold"]) for c in cases], workers=workers)
    ours_s = time.perf_counter() - started
    rows = [{"data_name": QWEN_DATA_NAME[c["benchmark"]], "example": qwen_example(c["benchmark"], c["raw"]),
             "response": c["response"]} for c in cases]
    started = time.perf_counter()
    theirs = run_qwen(python, qwen_eval, rows, workers)
    theirs_s = time.perf_counter() - started
    for c, o, t in zip(cases, ours, theirs):
        c["cft"], c["extracted"], c["qwen"] = o.correct, o.extracted, t

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{len(cases)} responses; cft graded them in {ours_s:.0f} s, Qwen2.5-Math's grader in {theirs_s:.0f} s "
          f"({workers} workers each; load average {load})\n")
    print(f"{'benchmark':15s} {'n':>6s} {'agree':>8s} {'cft right':>10s} {'qwen right':>11s}")
    for name in QWEN_DATA_NAME:
        mine = [c for c in cases if c["benchmark"] == name]
        agree = sum(c["cft"] == c["qwen"]["correct"] for c in mine) / len(mine)
        cft_right = sum(c["cft"] == c["truth"] for c in mine) / len(mine)
        qwen_right = sum(c["qwen"]["correct"] == c["truth"] for c in mine) / len(mine)
        print(f"{name:15s} {len(mine):6d} {agree:8.2%} {cft_right:10.2%} {qwen_right:11.2%}")

    disagreements = [c for c in cases if c["cft"] != c["qwen"]["correct"]]
    classified = classify(disagreements, python, qwen_eval, workers)
    counts = Counter((w, s, c["form"].split("/")[0]) for w, s, c in classified)
    wrappers = defaultdict(Counter)
    examples = defaultdict(list)
    for winner, stage, c in classified:
        key = (winner, stage, c["form"].split("/")[0])
        wrappers[key][c["form"].split("/")[-1] if "/" in c["form"] else "-"] += 1
        examples[key].append(c)
    print(f"\n{len(disagreements)} disagreements: which grader matches the known verdict, and where the other went wrong")
    for (winner, stage), n in Counter((w, s) for w, s, _ in classified).most_common():
        print(f"  {winner:5s} right, the other failed at {stage:12s} {n:6d}")
    print("\nby the form graded")
    print(f"{'right':6s} {'other failed at':15s} {'form':32s} {'count':>6s}  wrappers")
    for (winner, stage, form), n in counts.most_common():
        spread = ", ".join(f"{w} {k}" for w, k in wrappers[winner, stage, form].most_common(4))
        print(f"{winner:6s} {stage:15s} {form:32s} {n:6d}  {spread}")
    print("\nexamples")
    for key, _ in counts.most_common():
        for c in examples[key][: args.examples]:
            tail = c["response"][-90:].replace("\n", " ")
            print(f"  [{key[0]} right; other failed at {key[1]}; {c['benchmark']} row {c['row']} {c['form']}] "
                  f"truth={c['truth']} gold={c['gold']!r} | cft extracted {c['extracted']!r} -> {c['cft']} | "
                  f"qwen pred {c['qwen']['pred']!r} gt {c['qwen']['gt']!r} -> {c['qwen']['correct']}"
                  f"{' (' + c['qwen']['error'] + ')' if c['qwen']['error'] else ''} | ...{tail!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
