#!/usr/bin/env bash
# The prepared GPU check (issue #5 / #7), run from the repository root on a
# machine with an NVIDIA GPU, the CUDA toolkit and PyTorch but no Rust:
#
#   here:   cargo build --release -p xtask --features cuda
#           mkdir -p .gpu && strip -o .gpu/xtask target/release/xtask
#   there:  bash tools/gpu/gpu_check.sh [XTASK] [OUT]
#
# Prints the card, then `xtask gpu-check` (50 steps of R-50 + L1_H1024
# bicaptioning at batch 64, virtex-rs beside PyTorch f32 and AMP: images/s
# and peak GPU memory) and `xtask bench extract` on the GPU.
set -uo pipefail
XTASK="${1:-.gpu/xtask}"
OUT="${2:-${OUT:-/tmp/gpu-check}}"
mkdir -p "$OUT"

source "$(dirname "$0")/cuda_env.sh"

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    echo "nvrtc: ${nvrtc:-not found}"
} 2>&1 | tee "$OUT/gpu.txt"

RUST_BACKTRACE=1 timeout 420 "$XTASK" gpu-check 2>&1 | tee "$OUT/gpu_check.txt"
RUST_BACKTRACE=1 timeout 120 "$XTASK" bench extract --device cuda --batch 64 --steps 10 2>&1 | tee "$OUT/extract.txt"
