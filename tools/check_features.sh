#!/usr/bin/env bash
# Builds (`cargo check`, all targets but tests) each library crate alone with
# the feature sets a user would pick: its defaults, none where it has
# defaults, and each optional feature on its own. A crate checked alone
# gets only the features it asks for itself, so a missing `features = […]`
# that the workspace's feature unification hides shows up here.
# docs/stack.md lists the features; the run's time is in its header.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/virtex-rs/target}"

check() {
    echo "--- $*"
    cargo check --locked --lib --examples "$@"
}

check -p virtex-data
check -p virtex-data --features emoji
check -p virtex-vision
check -p virtex-vision --no-default-features
check -p virtex-vision --no-default-features --features flex
check -p virtex-vision --no-default-features --features pytorch
check -p virtex-vision --no-default-features --features ndarray
check -p virtex-vision --no-default-features --features cuda
check -p virtex-vision --no-default-features --features wgpu
check -p virtex-text
check -p virtex-text --no-default-features
check -p virtex-train
check -p virtex-train --features dashboard
check -p virtex-train --features cuda
check -p virtex-train --features wgpu
check -p virtex-eval
echo "every combination builds"
