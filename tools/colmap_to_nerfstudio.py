"""Convert a COLMAP text model into a nerfstudio scene folder that ``geocert train-nerf`` reads.

Usage::

    python tools/colmap_to_nerfstudio.py SPARSE_TXT_DIR IMAGE_DIR OUT_DIR

SPARSE_TXT_DIR holds COLMAP's ``cameras.txt`` and ``images.txt`` (``colmap model_converter --input_path
sparse/0 --output_path sparse_txt --output_type TXT`` writes them from the binary model). The images named
in ``images.txt`` are copied from IMAGE_DIR to ``OUT_DIR/images/``; ``OUT_DIR/transforms.json`` gets one
frame per registered image, sorted by name, the way nerfstudio's ``ns-process-data`` writes it:

- the pose: COLMAP's world-to-camera (qw qx qy qz, tx ty tz; OpenCV camera axes) inverted to
  camera-to-world, the camera's y and z axes negated (OpenGL: looks along −z, y up), then the world's
  y and z swapped and the new z negated — nerfstudio's ``applied_transform`` [[1,0,0],[0,0,1],[0,−1,0]],
  written into the file as ``applied_transform``;
- the intrinsics per frame: ``fl_x, fl_y, cx, cy, w, h`` and ``k1, k2, p1, p2``, with ``camera_model``
  OPENCV when any camera has distortion, else PINHOLE. COLMAP models SIMPLE_PINHOLE, PINHOLE,
  SIMPLE_RADIAL, RADIAL and OPENCV are read; others (fisheye, FOV, full OpenCV) are refused.

No split lists are written: geocert (and nerfstudio) then hold out every tenth frame by nerfstudio's 90 %
rule; add ``train_filenames`` / ``test_filenames`` to choose. Errors are one line on stderr, exit code 2,
before anything is written.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

MODELS = {  # COLMAP model → parameter names
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k1"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
}
APPLIED_TRANSFORM = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]])  # nerfstudio's world axes


class ConvertError(Exception):
    pass


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ConvertError(f"{path}: file not found")
    return [ln.strip() for ln in path.read_text().splitlines()]


def read_cameras(path: Path) -> dict[int, dict]:
    """``cameras.txt`` → {camera id: intrinsics in nerfstudio's keys}."""
    cams = {}
    for n, ln in enumerate(_lines(path), 1):
        if not ln or ln.startswith("#"):
            continue
        parts = ln.split()
        model = parts[1] if len(parts) > 1 else "?"
        if model not in MODELS:
            raise ConvertError(f"{path}:{n}: camera model {model} is not supported (supported: {', '.join(MODELS)})")
        names = MODELS[model]
        try:
            cid, w, h = int(parts[0]), int(parts[2]), int(parts[3])
            values = dict(zip(names, map(float, parts[4:4 + len(names)]), strict=True))
        except (ValueError, IndexError):
            raise ConvertError(f"{path}:{n}: expected 'ID {model} WIDTH HEIGHT {' '.join(names).upper()}'") from None
        f = values.get("f")
        cams[cid] = {"fl_x": values.get("fx", f), "fl_y": values.get("fy", f), "cx": values["cx"], "cy": values["cy"],
                     "w": w, "h": h, "k1": values.get("k1", 0.0), "k2": values.get("k2", 0.0),
                     "p1": values.get("p1", 0.0), "p2": values.get("p2", 0.0)}
    return cams


def quaternion_to_matrix(q) -> np.ndarray:
    """Rotation of a unit quaternion (qw, qx, qy, qz)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def colmap_to_c2w(q, t) -> np.ndarray:
    """nerfstudio's camera-to-world (OpenGL camera, nerfstudio world axes) of COLMAP's world-to-camera."""
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = quaternion_to_matrix(q), np.asarray(t, dtype=np.float64)
    c2w = np.linalg.inv(w2c)
    c2w[0:3, 1:3] *= -1  # OpenCV camera → OpenGL camera
    return np.vstack([APPLIED_TRANSFORM, [0, 0, 0, 1]]) @ c2w


def read_images(path: Path) -> list[tuple[str, np.ndarray, int]]:
    """``images.txt`` → [(name, camera-to-world, camera id)] sorted by name (every other line lists 2D points)."""
    rows = [ln for ln in _lines(path) if not ln.startswith("#")]
    out = []
    for k in range(0, len(rows), 2):
        if not rows[k]:
            continue
        parts = rows[k].split()
        try:
            q, t, cid = list(map(float, parts[1:5])), list(map(float, parts[5:8])), int(parts[8])
            name = " ".join(parts[9:])
        except (ValueError, IndexError):
            raise ConvertError(f"{path}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME', got {rows[k]!r}") from None
        out.append((name, colmap_to_c2w(q, t), cid))
    if not out:
        raise ConvertError(f"{path}: no registered images")
    return sorted(out)


def convert(sparse: Path, images: Path, out: Path) -> dict:
    """Write ``out/transforms.json`` and ``out/images/`` (see the module docstring); returns the JSON."""
    if out.exists():
        raise ConvertError(f"{out}: already exists")
    cams = read_cameras(sparse / "cameras.txt")
    frames_in = read_images(sparse / "images.txt")
    for name, _, cid in frames_in:
        if cid not in cams:
            raise ConvertError(f"{sparse / 'images.txt'}: image {name} uses camera {cid}, not in cameras.txt")
        if not (images / name).is_file():
            raise ConvertError(f"{images / name}: image file not found")
    distorted = any(c[k] for c in cams.values() for k in ("k1", "k2", "p1", "p2"))
    frames = []
    for name, c2w, cid in frames_in:
        cam = cams[cid] if distorted else {k: v for k, v in cams[cid].items() if k not in ("k1", "k2", "p1", "p2")}
        frames.append({"file_path": f"images/{name}", "transform_matrix": c2w.tolist(), "colmap_im_id": len(frames) + 1,
                       **cam})
    meta = {"camera_model": "OPENCV" if distorted else "PINHOLE", "frames": frames,
            "applied_transform": APPLIED_TRANSFORM.tolist()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, _, _ in frames_in:
            (tmp / "images" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(images / name, tmp / "images" / name)
        (tmp / "transforms.json").write_text(json.dumps(meta, indent=1))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        meta = convert(Path(argv[0]), Path(argv[1]), Path(argv[2]))
    except ConvertError as exc:
        print(f"colmap_to_nerfstudio: error: {exc}", file=sys.stderr)
        return 2
    print(f"colmap_to_nerfstudio: {len(meta['frames'])} frames, camera_model {meta['camera_model']} -> "
          f"{Path(argv[2]) / 'transforms.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
