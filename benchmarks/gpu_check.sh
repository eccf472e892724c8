#!/usr/bin/env bash
# One prepared script for a GPU machine: the core's step and each domain's full-size model in bf16,
# printing throughput and memory; every domain's training command at full size for a short budget; and, on a
# machine with 2+ GPUs, biomed pretraining under torchrun. Usage (from the repo root, with the venv set up): bash benchmarks/gpu_check.sh
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

# Every domain's training command at full size (its gpu.yaml preset) for a short budget on the built-in data,
# into a throw-away runs root; then, with 2+ GPUs, biomed pretraining under torchrun (one process per GPU).
RUNS=${RUNS:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_runs.XXXXXX")}
INTER=$("$PY" -c "import pathlib, recbole; print(pathlib.Path(recbole.__file__).parent / 'dataset_example/ml-100k/ml-100k.inter')")
BIOMED=(-m domains.biomed.pretrain --config domains/biomed/configs/gpu.yaml --data.train "" --data.demo_dir "$RUNS/biomed_corpus"
        --trainer.max_steps 30 --trainer.warmup_steps 3 --trainer.checkpoint_every 30 --runs_root "$RUNS" --store "$RUNS/embeddings.duckdb")
train() {  # train NAME ARGS...: one timed training command
  local name=$1; shift
  echo "== train $name (full size, short budget)"
  local started=$SECONDS
  timeout 600 "$@" >"$RUNS/$name.log" 2>&1 && tail -n 4 "$RUNS/$name.log" || { tail -n 20 "$RUNS/$name.log"; echo "FAILED: $name"; status=1; }
  echo "   $name: $((SECONDS - started)) s (log: $RUNS/$name.log)"
}
train biomed "$PY" "${BIOMED[@]}" --run_name gpu-check
train astro "$PY" -m domains.astro.pretrain --config domains/astro/configs/gpu.yaml --trainer.max_epochs 2 --trainer.warmup_epochs 1 --runs_root "$RUNS"
train news "$PY" -m domains.news.train --config domains/news/configs/gpu.yaml --trainer.max_steps 40 --runs_root "$RUNS"
train recsys "$PY" -m domains.recsys.train --config domains/recsys/configs/gpu.yaml --base_epochs 2 --trainer.max_epochs 2 --trainer.validate_every_epochs 1 --runs_root "$RUNS"
train mnar "$PY" -m domains.recsys.mnar --dataset recbole --input "$INTER" --seeds 1 --trainer.max_steps 200 --runs_root "$RUNS" --store "$RUNS/embeddings.duckdb"
GPUS=$(nvidia-smi -L | wc -l)
if [ "$GPUS" -ge 2 ]; then
  # The same biomed run on every GPU (NCCL); batches are per process, so the global batch is GPUS x the preset's.
  train biomed-torchrun-$GPUS "$PY" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" "${BIOMED[@]}" --run_name gpu-check-ddp
else
  echo "== torchrun check skipped: $GPUS GPU (needs 2+; on CPU tests/distributed covers every domain with gloo)"
fi
exit $status
