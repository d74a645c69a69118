#!/usr/bin/env bash
# GPU figures in one run (under 8 minutes on one GPU): writes benchmarks/results/gpu.json with the GPU named.
#   benchmarks/gpu.sh                      # on a CUDA machine
#   benchmarks/gpu.sh --cpu-smoke --out /tmp/gpu_cpu_smoke.json   # seconds on a CPU: keeps the script working
# PYTHON selects the interpreter (default: .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, not an installed kseg
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [[ " $* " != *" --cpu-smoke "* ]]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "load: $(uptime)"
  exec timeout 480 "$PY" benchmarks/gpu_bench.py "$@"
fi
exec "$PY" benchmarks/gpu_bench.py "$@"
