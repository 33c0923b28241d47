"""Copies scikit-image's sample photographs (the ones `cargo xtask bench data
--images photos` uses by default) into a folder, for a machine without
scikit-image: `python3 tools/gpu/copy_photos.py .gpu/photos`, then
`--photo-dir .gpu/photos` there (tools/gpu/gpu_check.sh does that)."""

import shutil
import sys
from pathlib import Path

import skimage

# The list in crates/virtex-bench/src/photos.rs (SKIMAGE_PHOTOS).
PHOTOS = [
    "astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
    "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg",
    "camera.png", "coins.png", "moon.png",
]

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
data = Path(skimage.__file__).parent / "data"
for name in PHOTOS:
    shutil.copy(data / name, out / name)
print(f"{len(PHOTOS)} photographs in {out}")
