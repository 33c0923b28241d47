#!/usr/bin/env bash
# The prepared GPU check (issues 5, 7, 14, 35), run from the repository root on
# a machine with an NVIDIA GPU, the CUDA toolkit and PyTorch but no Rust:
#
#   here:   cargo build --release -p xtask --features cuda
#           mkdir -p .gpu && strip -o .gpu/xtask $CARGO_TARGET_DIR/release/xtask
#           python3 tools/gpu/copy_photos.py .gpu/photos   # scikit-image's photos
#   there:  bash tools/gpu/gpu_check.sh [XTASK] [OUT] [DEVICE]
#
# DEVICE is `cuda` (the default) or `cuda:N`; `wgpu`, `wgpu:N` or `wgpu:cpu`
# with a binary built `--features wgpu`, which rehearses the script on a
# software GPU (docs/benchmarks.md, "The GPU check rehearsed on lavapipe"):
#
#   BATCH=2 BIG_BATCH=4 SIZE=64 STEPS=2 ITERATIONS=4 WARMUP_STEPS=1 LIMIT_SCALE=3 \
#       tools/gpu/lavapipe.sh bash tools/gpu/gpu_check.sh \
#       $CARGO_TARGET_DIR/release/xtask /tmp/rehearsal wgpu:cpu
#
# BATCH (64), BIG_BATCH (256), SIZE (224), STEPS (20), ITERATIONS (50) size
# the parts; WARMUP_STEPS (unset: the config's 40) must be below ITERATIONS;
# LIMIT_SCALE (1) multiplies every part's time limit. PyTorch has no wgpu
# device: there its rows are reported as failed and left out. On lavapipe
# the first part's R-50 step (kernel compilation and autotune on the CPU)
# took 227 s on an idle 2-core machine and outlasted three times its limit
# with a build beside it (docs/benchmarks.md).
#
# Each part has its own time limit; on CUDA the whole stays under about 8
# minutes.
#  1. the card, driver, PyTorch and NVRTC (on wgpu: the Vulkan adapter);
#  2. `xtask gpu-check`: STEPS steps of R-50 + L1_H1024 bicaptioning at batch
#     BATCH, virtex-rs (autotune + fusion) beside PyTorch f32 and AMP:
#     images/s, peak GPU memory, and the untimed first step (kernel
#     compilation and autotuning);
#  3. `xtask bench extract` (frozen R-50 features);
#  4. the same virtex-rs row again: its first step now reads the autotune
#     cache that step 2 wrote (target/autotune/ under the repository root);
#  5. batch BIG_BATCH, virtex-rs beside PyTorch;
#  6. `xtask pretrain --device DEVICE` on the bundled data, ITERATIONS
#     iterations;
#  7. `xtask bench data --images photos` on all cores (COCO-sized JPEGs);
#  8. an nsys profile of five training steps, on CUDA when nsys is installed.
set -uo pipefail
XTASK="${1:-.gpu/xtask}"
OUT="${2:-${OUT:-/tmp/gpu-check}}"
DEVICE="${3:-cuda}"
BATCH="${BATCH:-64}" BIG_BATCH="${BIG_BATCH:-256}" SIZE="${SIZE:-224}"
STEPS="${STEPS:-20}" ITERATIONS="${ITERATIONS:-50}" LIMIT_SCALE="${LIMIT_SCALE:-1}"
mkdir -p "$OUT"
BASE=data/configs/_base_bicaptioning_R_50_L1_H1024.yaml
cuda=false
[[ "$DEVICE" == cuda* ]] && cuda=true

$cuda && source "$(dirname "$0")/cuda_env.sh"
export RUST_BACKTRACE=1

part() { # name, seconds, command…
    local name=$1 limit=$(($2 * LIMIT_SCALE)); shift 2
    echo "== $name ($(date +%T), limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    echo "== $name: rc ${PIPESTATUS[0]}, $((SECONDS - start)) s"
}

{
    if $cuda; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
        echo "nvrtc: ${nvrtc:-not found}"
    else
        vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverInfo|apiVersion" ||
            echo "vulkaninfo: not installed"
    fi
    echo "device: $DEVICE"
    nproc
} 2>&1 | tee "$OUT/gpu.txt"

part gpu_check 200 "$XTASK" gpu-check --device "$DEVICE" --batch "$BATCH" --size "$SIZE" --steps "$STEPS"
part extract 90 "$XTASK" bench extract --device "$DEVICE" --batch "$BATCH" --size "$SIZE" --steps 10
part autotune_cached 60 "$XTASK" bench train-row --config "$BASE" --batch "$BATCH" --size "$SIZE" --steps 3 --device "$DEVICE"
part batch256 150 "$XTASK" bench train --config "$BASE" --batch "$BIG_BATCH" --size "$SIZE" --steps 5 --device "$DEVICE"
rm -rf /tmp/gpu-pretrain
part pretrain 90 "$XTASK" pretrain --device "$DEVICE" --output /tmp/gpu-pretrain \
    --set OPTIM.NUM_ITERATIONS="$ITERATIONS" --set TRAIN.VALIDATE_EVERY="$ITERATIONS" \
    --set TRAIN.CHECKPOINT_EVERY="$ITERATIONS" ${WARMUP_STEPS:+--set OPTIM.WARMUP_STEPS="$WARMUP_STEPS"}
cp /tmp/gpu-pretrain/metrics.jsonl "$OUT/pretrain_metrics.jsonl" 2>/dev/null
photos=()
[ -d .gpu/photos ] && photos=(--photo-dir .gpu/photos)
part data 60 "$XTASK" bench data --images photos "${photos[@]}" --batches 30
if $cuda && command -v nsys >/dev/null; then
    part nsys 90 nsys profile --stats=true --force-overwrite=true -o "$OUT/train_step" \
        "$XTASK" bench train-row --config "$BASE" --batch "$BATCH" --size "$SIZE" --steps 5 --device "$DEVICE"
fi
