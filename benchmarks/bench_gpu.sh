#!/usr/bin/env bash
# The GPU path, measured: the 256³ and 512³ pipeline benchmarks on onnxruntime-gpu's CUDA
# provider (and TensorRT where onnxruntime offers it), beside the same machine's CPUs.
# Needs a Python with this package and onnxruntime-gpu installed (pip install -e ".[gpu]");
# never needed by CI. Writes benchmarks/results/gpu/*.json and prints each table.
#
#   bash benchmarks/bench_gpu.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-${PYTHON:-.venv/bin/python}}"
OUT=benchmarks/results/gpu
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" || true
"$PY" - "$OUT/providers.json" <<'PYEOF'
import json, sys
import onnxruntime as ort
json.dump({"onnxruntime": ort.__version__, "available": ort.get_available_providers(),
           "device": ort.get_device()}, open(sys.argv[1], "w"), indent=2)
PYEOF
cat "$OUT/gpu.txt" "$OUT/providers.json"
providers=$("$PY" -c "import onnxruntime as o; print(' '.join(o.get_available_providers()))")
runs="cpu"
[[ $providers == *CUDAExecutionProvider* ]] && runs="$runs cuda"
[[ $providers == *TensorrtExecutionProvider* ]] && runs="$runs tensorrt,cuda"
for p in $runs; do
  echo "== providers: $p"
  VEMCELL_PROVIDERS="$p" "$PY" benchmarks/bench_pipeline.py --sizes 256 512 \
    --json "$OUT/pipeline_${p//,/_}.json"
done
