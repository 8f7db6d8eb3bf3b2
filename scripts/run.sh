#!/usr/bin/env bash
# Run the whole pipeline on the embedded default: offline, CPU, minutes.
source "$(dirname "$0")/env.sh"
[ -d .git ] || git init -q
# Each stage's output shows here as it runs; the flow ends with `dvc push` (orchestrate.push).
cft run "$@"
echo
cat reports/comparison/comparison.md
echo
sed -n '/^## Lineage/q;p' reports/registry.md   # the decision; the lineage table follows in the file
echo "Report:          reports/comparison/comparison.png (benchmarks, held-out loss, critic metrics), comparison.md"
echo "Loss curves:     dvc plots show   (train and held-out loss per mode)"
echo "All metrics:     dvc metrics show"
echo "MLflow:          mlflow ui --backend-store-uri sqlite:///mlruns.db   (then open http://127.0.0.1:5000"
echo "                 and filter on the run group under the table to compare CFT and SFT)"
echo "Registry:        reports/registry.md (decision and lineage)"
echo "Validation docs: reports/validation/data_docs/index.html"
echo "Quarantine:      data/validated/quarantine.jsonl"
