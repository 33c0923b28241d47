#!/usr/bin/env bash
# Runs a command on Mesa's lavapipe, a Vulkan driver that runs on the CPU: the
# software GPU on which CI tests the wgpu backend (and with it the CubeCL
# kernels, fusion and autotune the CUDA backend shares).
#
#   tools/gpu/lavapipe.sh cargo test -p virtex-train --features wgpu --test wgpu
#
# Installs Debian's lavapipe (mesa-vulkan-drivers, libvulkan1) when it is
# missing (as root), points the Vulkan loader at its ICD alone, and makes it
# wgpu's default adapter.
set -euo pipefail

icd=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
if [ ! -f "$icd" ] || ! ldconfig -p | grep -q libvulkan.so.1; then
    echo "installing lavapipe (mesa-vulkan-drivers, libvulkan1)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

export VK_ICD_FILENAMES="$icd"
# wgpu's default adapter is a high-power GPU; here the CPU's is the only one.
export CUBECL_WGPU_DEFAULT_DEVICE=Cpu
# lavapipe's rasteriser threads (it compiles shaders with LLVM and runs
# them on as many threads): the machine's cores.
export LP_NUM_THREADS="${LP_NUM_THREADS:-$(nproc)}"
# The Vulkan loader wants a runtime directory (without one it prints an
# error for every call and carries on).
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
    export XDG_RUNTIME_DIR
    XDG_RUNTIME_DIR=$(mktemp -d)
fi
exec "$@"
