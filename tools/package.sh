#!/usr/bin/env bash
# Packages every library crate, the forks included, in stack order, and
# builds each from its `.crate` alone (cargo's verification: the packaged
# sources, with the other crates taken from the packages just made, never
# from the checkout). `.ci/run` packages without the verification build
# (`--no-verify`: manifests, file lists, licenses, versions of path
# dependencies); this script does the whole of it. It builds the stack
# again, unoptimised, for each crate's own features, in its own target
# directory (without debug information: it only has to compile; still
# several GB of disk).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/virtex-rs/target}/package-verify"
export CARGO_PROFILE_DEV_DEBUG=0
cargo package --workspace --exclude xtask --exclude virtex-bench --exclude virtex-tests --locked "$@"
