# Sourced by the GPU scripts: burn's CUDA backend loads the driver and NVRTC at run time (cudarc);
# put the toolkit's NVRTC on the library path under a name cudarc tries.
nvrtc=$(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' 2>/dev/null | grep -v builtins | head -1)
if [ -n "$nvrtc" ]; then
    mkdir -p /tmp/cudalibs
    ln -sf "$nvrtc" /tmp/cudalibs/libnvrtc.so
    export LD_LIBRARY_PATH="/tmp/cudalibs:$(dirname "$nvrtc"):${LD_LIBRARY_PATH:-}"
fi

