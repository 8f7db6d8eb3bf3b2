# Sourced by the scripts: the project's virtual environment and an offline, quiet stack.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false \
  DVC_NO_ANALYTICS=1 GX_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 \
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  TOKENIZERS_PARALLELISM=false PYTHONDONTWRITEBYTECODE=1
# One torch thread per process: on 2 shared cores more threads run far slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/cft ] || [ pyproject.toml -nt .venv/.installed ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch is pinned to 2.13.0 (CPU build); an unpinned torch pulls CUDA wheels.
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch .venv/.installed
fi
export PATH="$PWD/.venv/bin:$PATH"
