"""Throughput of the whole critique validation (checks + Great Expectations + Data Docs).

Builds N rows (default 50,000) by repeating the shipped 600 DSR-CFT-p0 critiques
with varied text, so the duplicate check does not quarantine the copies, then
prints rows/s. Run: python bench/bench_validate.py [--rows N] [--no-docs]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

for key, value in {"GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "true", "OMP_NUM_THREADS": "1"}.items():
    os.environ.setdefault(key, value)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cft.data.importers import import_critiques  # noqa: E402
from cft.validate import validate_critiques  # noqa: E402

SOURCE = REPO / "sources/critiques/dsr-cft-p0.jsonl"


def build_rows(n: int, seed: int = 0) -> list[dict]:
    """n critique rows: the 600 real ones, each copy with its own question, response and teacher."""
    base, _ = import_critiques(SOURCE)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = dict(base[i % len(base)])
        copy = i // len(base)
        row["id"] = f"bench-{i}"
        row["question"] = f"{row['question']} (variant {copy})"
        row["response"] = f"{row['response']}\n\n(attempt {rng.randrange(10**9)})"
        row["teacher"] = f"teacher-{i % 7}"
        row["prompt_version"] = "bench"
        row["response_correct"] = rng.random() < 0.9 if i % 3 else None
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--no-docs", action="store_true", help="skip Data Docs rendering")
    args = parser.parse_args()

    start = time.perf_counter()
    rows = build_rows(args.rows)
    print(f"built {len(rows)} rows in {time.perf_counter() - start:.1f} s")
    import great_expectations  # noqa: F401  # import cost (~3 s) is not throughput

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = validate_critiques(
            rows,
            min_chars=50,
            max_chars=20_000,
            conclusion_policy="normalize",
            consistency_policy="tag",
            report_dir=Path(tmp),
            build_docs=not args.no_docs,
        )
        elapsed = time.perf_counter() - start
    s = result.summary
    print(f"clean {s['n_clean']}  quarantined {s['n_quarantined']}  failures {s['failures']}")
    print(f"validated {len(rows)} rows in {elapsed:.1f} s: {len(rows) / elapsed:,.0f} rows/s")


if __name__ == "__main__":
    main()
