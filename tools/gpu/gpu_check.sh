#!/usr/bin/env bash
# The prepared GPU check (issues 5, 7, 14), run from the repository root on a
# machine with an NVIDIA GPU, the CUDA toolkit and PyTorch but no Rust:
#
#   here:   cargo build --release -p xtask --features cuda
#           mkdir -p .gpu && strip -o .gpu/xtask $CARGO_TARGET_DIR/release/xtask
#           python3 tools/gpu/copy_photos.py .gpu/photos   # scikit-image's photos
#   there:  bash tools/gpu/gpu_check.sh [XTASK] [OUT]
#
# Each part has its own time limit; the whole stays under about 8 minutes.
#  1. the card, driver, PyTorch and NVRTC;
#  2. `xtask gpu-check`: 20 steps of R-50 + L1_H1024 bicaptioning at batch 64,
#     virtex-rs (autotune + fusion) beside PyTorch f32 and AMP: images/s,
#     peak GPU memory, and the untimed first step (kernel compilation and
#     autotuning);
#  3. `xtask bench extract` (frozen R-50 features);
#  4. the same virtex-rs row again: its first step now reads the autotune
#     cache that step 2 wrote (target/autotune/ under the repository root);
#  5. batch 256, virtex-rs beside PyTorch;
#  6. `xtask pretrain --device cuda` on the bundled data, 50 iterations;
#  7. `xtask bench data --images photos` on all cores (COCO-sized JPEGs);
#  8. an nsys profile of five training steps, when nsys is installed.
set -uo pipefail
XTASK="${1:-.gpu/xtask}"
OUT="${2:-${OUT:-/tmp/gpu-check}}"
mkdir -p "$OUT"
BASE=data/configs/_base_bicaptioning_R_50_L1_H1024.yaml

source "$(dirname "$0")/cuda_env.sh"
export RUST_BACKTRACE=1

part() { # name, seconds, command…
    local name=$1 limit=$2; shift 2
    echo "== $name ($(date +%T), limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    echo "== $name: rc ${PIPESTATUS[0]}, $((SECONDS - start)) s"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    echo "nvrtc: ${nvrtc:-not found}"
    nproc
} 2>&1 | tee "$OUT/gpu.txt"

part gpu_check 200 "$XTASK" gpu-check --steps 20
part extract 90 "$XTASK" bench extract --device cuda --batch 64 --steps 10
part autotune_cached 60 "$XTASK" bench train-row --config "$BASE" --batch 64 --size 224 --steps 3 --device cuda
part batch256 150 "$XTASK" bench train --config "$BASE" --batch 256 --size 224 --steps 5 --device cuda
rm -rf /tmp/gpu-pretrain
part pretrain 90 "$XTASK" pretrain --device cuda --output /tmp/gpu-pretrain \
    --set OPTIM.NUM_ITERATIONS=50 --set TRAIN.VALIDATE_EVERY=50 --set TRAIN.CHECKPOINT_EVERY=50
cp /tmp/gpu-pretrain/metrics.jsonl "$OUT/pretrain_metrics.jsonl" 2>/dev/null
photos=()
[ -d .gpu/photos ] && photos=(--photo-dir .gpu/photos)
part data 60 "$XTASK" bench data --images photos "${photos[@]}" --batches 30
if command -v nsys >/dev/null; then
    part nsys 90 nsys profile --stats=true --force-overwrite=true -o "$OUT/train_step" \
        "$XTASK" bench train-row --config "$BASE" --batch 64 --size 224 --steps 5 --device cuda
fi
