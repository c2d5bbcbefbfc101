#!/usr/bin/env bash
# The GPU check (issue 10 §3), prepared for a machine with a CUDA GPU; nothing in `make test`
# needs one. Runs bench/gpu_check.py once (the neural tools at 1, 12 and 24 MP, the shipped agent
# at 1 MP) and writes gpu.md / gpu.json to OUT (default bench/results), then the GPU-only test.
#
#   bash bench/gpu_check.sh [OUT]
#
# Python: the project's .venv when there is one, else the machine's python3 with the repository on
# PYTHONPATH (a GPU image with torch, numpy, OpenCV, SciPy, scikit-image, safetensors and tqdm,
# which is all the tools and the agent import).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench/results}"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: torch ' + torch.__version__ + ' sees no CUDA GPU here')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" bench/gpu_check.py --device cuda --out "$OUT"
# The DnCNN GPU-vs-CPU test skips without a GPU; here it runs (needs pytest).
if "$PY" -c "import pytest" 2>/dev/null; then
  "$PY" -m pytest -q -p no:cacheprovider tests/test_dncnn.py -k gpu
fi
