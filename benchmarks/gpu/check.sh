#!/usr/bin/env bash
# The GPU checks in one command, sized for under 8 minutes on one H100 (see check.py's docstring):
#   benchmarks/gpu/check.sh            # writes benchmarks/gpu/check-<date>.txt as it prints
# Needs a CUDA build of torch and `transformers` (pip install -e ".[torch,bench]"); cupy is optional.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="benchmarks/gpu/check-$(date -u +%Y%m%d-%H%M).txt"
timeout 470 python benchmarks/gpu/check.py "$@" 2>&1 | tee "$out"
echo "wrote $out"
