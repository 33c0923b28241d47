#!/usr/bin/env bash
# `cargo xtask pretrain` on a GPU: the bundled emoji config for 50 iterations
# on one device, then, on CUDA, the multi-process path with NCCL. Run from the
# repository root with the release binary built `--features cuda` (or
# `--features wgpu` and DEVICE `wgpu[:N|:cpu]`, which has no NCCL part):
#
#   bash tools/gpu/pretrain_check.sh [XTASK] [OUT] [DEVICE]
#
# ITERATIONS (50) sets the length of each run, WARMUP_STEPS (the config's 40
# when unset) its warm-up, which must be shorter; LIMIT_SCALE (1) multiplies
# each run's time limit.
set -uo pipefail
XTASK="${1:-.gpu/xtask}"
OUT="${2:-${OUT:-/tmp/gpu-check}}"
DEVICE="${3:-cuda}"
ITERATIONS="${ITERATIONS:-50}"
mkdir -p "$OUT"
[[ "$DEVICE" == cuda* ]] && source "$(dirname "$0")/cuda_env.sh"

short=(--set OPTIM.NUM_ITERATIONS="$ITERATIONS" --set TRAIN.VALIDATE_EVERY="$ITERATIONS"
    --set TRAIN.CHECKPOINT_EVERY="$ITERATIONS")
[ -n "${WARMUP_STEPS:-}" ] && short+=(--set OPTIM.WARMUP_STEPS="$WARMUP_STEPS")
limit=$((240 * ${LIMIT_SCALE:-1}))
single() { # one --device value: one device, or one process per device
    local devices=$1 run=/tmp/pretrain-${1//[:,]/_}
    rm -rf "$run"
    RUST_BACKTRACE=1 timeout "$limit" "$XTASK" pretrain --device "$devices" "${short[@]}" --output "$run" 2>&1 |
        tee "$OUT/pretrain_${devices//[:,]/_}.txt"
    local rc=${PIPESTATUS[0]}
    cp "$run/metrics.jsonl" "$OUT/metrics_${devices//[:,]/_}.jsonl" 2>/dev/null
    return "$rc"
}
single "$DEVICE"
rc=$?
[[ "$DEVICE" == cuda* ]] || exit "$rc" # wgpu: no NCCL

# The multi-process path with NCCL (issue 15): one rank on cuda:0, started
# with torchrun's variables (the gradients still go through the NCCL
# communicator; its losses should equal the single-device run's above), and,
# when the machine has two GPUs, `--device cuda:0,cuda:1`: pretrain starts one
# process per GPU itself. (NCCL refuses two ranks on one GPU.)
nccl_run() { # world, then one device per rank
    local world=$1; shift
    local run=/tmp/pretrain-nccl-$world port=$((29500 + RANDOM % 1000))
    rm -rf "$run"
    local pids=() rank=0
    for device in "$@"; do
        RANK=$rank WORLD_SIZE=$world MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RUST_BACKTRACE=1 \
            timeout 240 "$XTASK" pretrain --device "$device" "${short[@]}" --output "$run" \
            > "$OUT/pretrain_nccl_${world}_rank$rank.txt" 2>&1 &
        pids+=($!)
        rank=$((rank + 1))
    done
    wait "${pids[@]}"
    tail -3 "$OUT"/pretrain_nccl_"${world}"_rank*.txt
    cp "$run/metrics.jsonl" "$OUT/metrics_nccl_$world.jsonl" 2>/dev/null
}
nccl_run 1 cuda:0
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then single cuda:0,cuda:1; fi
python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
def losses(name):
    path = out / name
    if not path.exists():
        return None
    return [r["loss"] for r in map(json.loads, path.read_text().splitlines()) if "grad_norm" in r]
single, nccl = losses("metrics_cuda.jsonl"), losses("metrics_nccl_1.jsonl")
print("single device:", single and [round(l, 5) for l in single[:5]])
print("NCCL, 1 rank: ", nccl and [round(l, 5) for l in nccl[:5]])
PY
