#!/usr/bin/env bash
# Run the whole pipeline on the embedded default: offline, CPU, minutes.
source "$(dirname "$0")/env.sh"
[ -d .git ] || git init -q
cft run "$@"
dvc push -q || echo "warning: dvc push to the local remote failed" >&2
echo
cat reports/comparison/comparison.md
echo
cat reports/registry.md
echo
echo "All metrics:     dvc metrics show"
echo "MLflow:          mlflow ui --backend-store-uri sqlite:///mlruns.db   (then open http://127.0.0.1:5000)"
echo "Validation docs: reports/validation/data_docs/index.html"
echo "Quarantine:      data/validated/quarantine.jsonl"
