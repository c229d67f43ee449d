"""Write a procedural segmentation data set (images/ + masks/ under train/ and test/, classes.json).

    python scenes/make_imageseg.py --out data/xray                       # synthetic chest X-rays, 64x64
    python scenes/make_imageseg.py --out data/skin --kind skin --size 128
    python scenes/make_imageseg.py --out data/coins --kind coins         # real skimage photos, Otsu masks

The generator lives in the plugin (geocert_imageseg.scenes) so an installed plugin can make its default data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geocert_imageseg.scenes import CLASS_NAMES, make_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (replaced when complete)")
    ap.add_argument("--kind", choices=sorted(CLASS_NAMES), default="xray")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--num-train", type=int, default=64)
    ap.add_argument("--num-test", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = make_dataset(a.out, kind=a.kind, num_train=a.num_train, num_test=a.num_test, size=a.size, seed=a.seed)
    print(f"wrote {out}: {a.num_train} train + {a.num_test} test {a.kind} images of {a.size}x{a.size}, "
          f"classes {CLASS_NAMES[a.kind]}")


if __name__ == "__main__":
    main()
