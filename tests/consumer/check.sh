#!/usr/bin/env bash
# The consumer project (tests/consumer) against the workspace's own binary:
# same arguments, and the checkpoint, the per-iteration losses and the
# features must be equal bit for bit; its dependency tree must hold no
# crates.io burn-flex or burn-train (it would, and would train slower and
# draw other Dropout masks, if our crates reached burn's kernels through a
# `[patch]` that only the workspace applies). Run from anywhere; `.ci/run`
# runs it after the tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/virtex-rs/target}"
consumer=(--manifest-path tests/consumer/Cargo.toml --locked)

config="$root/data/configs/tests/emoji_tiny.yaml"
iterations=4
images="$root/data/emoji/val2017"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "--- the consumer's dependency tree"
packages="$(cargo tree "${consumer[@]}" --edges normal,build --prefix none --format '{p}' | sort -u)"
if grep -E '^burn-(flex|train) ' <<<"$packages"; then
    echo "FAIL: the consumer builds the crates.io package(s) above, not our forks" >&2
    exit 1
fi
grep -E '^virtex-burn-(flex|train) ' <<<"$packages"

echo "--- the consumer: $iterations iterations, then features"
cargo run "${consumer[@]}" -- "$config" "$iterations" "$images" "$work/consumer"

echo "--- the workspace's xtask: the same"
# The binary the README's test command builds (`.ci/run` has just run it;
# anywhere else this builds what is missing): a `cargo build -p xtask` would
# unify other features and rebuild half the stack for nothing.
cargo test --workspace --locked --no-run
xtask="$CARGO_TARGET_DIR/debug/xtask"
"$xtask" pretrain --config "$config" --set "OPTIM.NUM_ITERATIONS=$iterations" --output "$work/xtask/run"
"$xtask" evaluate features --checkpoint "$work/xtask/run/checkpoint_$iterations.safetensors" \
    --images "$images" --size 64 --batch 8 --output "$work/xtask/features.npy"

echo "--- compared"
losses() { python3 -c 'import json,sys; [print(r["iteration"], repr(r["loss"])) for r in map(json.loads, open(sys.argv[1])) if "loss" in r]' "$1"; }
diff <(losses "$work/consumer/run/metrics.jsonl") <(losses "$work/xtask/run/metrics.jsonl")
losses "$work/consumer/run/metrics.jsonl"
cmp "$work/consumer/run/checkpoint_$iterations.safetensors" "$work/xtask/run/checkpoint_$iterations.safetensors"
cmp "$work/consumer/features.npy" "$work/xtask/features.npy"
echo "consumer = workspace: losses, checkpoint_$iterations and features.npy equal bit for bit"
