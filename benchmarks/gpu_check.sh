#!/usr/bin/env bash
# One prepared script for a GPU machine: the core's step and each domain's full-size model in bf16,
# printing throughput and memory. Usage (from the repo root, with the venv set up): bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || { echo "no NVIDIA GPU here"; exit 0; }
status=0
for check in benchmarks/gpu_core.py benchmarks/gpu_biomed.py benchmarks/gpu_astro.py; do
  [ -f "$check" ] || continue
  echo "== $check"
  timeout 300 "$PY" -m "$(echo "${check%.py}" | tr / .)" || { echo "FAILED: $check"; status=1; }
done
exit $status
