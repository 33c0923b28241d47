#!/usr/bin/env bash
# `cargo xtask pretrain` on a GPU: the bundled emoji config for 50 iterations
# on one device, then data-parallel over two replicas of it (`cuda:0,cuda:0`,
# the code path of `--device cuda:0,cuda:1` on a one-GPU machine). Run from
# the repository root with the release binary built `--features cuda`:
#
#   bash tools/gpu/pretrain_check.sh [XTASK] [OUT]
set -uo pipefail
XTASK="${1:-.gpu/xtask}"
OUT="${2:-${OUT:-/tmp/gpu-check}}"
mkdir -p "$OUT"
source "$(dirname "$0")/cuda_env.sh"

short=(--set OPTIM.NUM_ITERATIONS=50 --set TRAIN.VALIDATE_EVERY=50 --set TRAIN.CHECKPOINT_EVERY=50)
for devices in cuda cuda:0,cuda:0; do
    run=/tmp/pretrain-${devices//[:,]/_}
    rm -rf "$run"
    RUST_BACKTRACE=1 timeout 240 "$XTASK" pretrain --device "$devices" "${short[@]}" --output "$run" 2>&1 |
        tee "$OUT/pretrain_${devices//[:,]/_}.txt"
    cp "$run/metrics.jsonl" "$OUT/metrics_${devices//[:,]/_}.jsonl" 2>/dev/null
done
