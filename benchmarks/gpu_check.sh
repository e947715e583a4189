#!/usr/bin/env bash
# The GPU check of docs/PERFORMANCE.md in one go (<= 8 minutes on one H100/H200): the CUDA-marked tests, then
# benchmarks/gpu_check.py (d24 latency at batch 1 in fp32 / bf16 / bf16 + compile, batched throughput,
# bf16-vs-fp32 agreement, d16 training step dense vs FlexAttention), printing one table.
#
#   bash benchmarks/gpu_check.sh                 # from the repository root, on a machine with a GPU
#   bash benchmarks/gpu_check.sh --device cpu --quick    # the same code paths on CPU, tiny sizes (smoke run)
#
# Each part has its own time limit so that one hung part cannot eat the whole budget.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH="${PYTHONPATH:-$PWD}"
status=0

echo "== CUDA-marked tests"
timeout 120 "$PY" -m pytest -q -m cuda tests/ -p no:cacheprovider || status=$?

echo "== benchmarks/gpu_check.py $*"
timeout 420 "$PY" benchmarks/gpu_check.py "$@" || status=$?

exit "$status"
