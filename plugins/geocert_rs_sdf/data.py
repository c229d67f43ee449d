"""Scene loaders: NeRF-synthetic (Blender) ``transforms_{split}.json``, nerfstudio / Instant-NGP
``transforms.json``, and the cameras (per-view pinhole intrinsics with OpenCV distortion).

Formats (poses are camera-to-world in the OpenGL convention, camera looking along −z, y up, as Blender,
nerfstudio and Instant-NGP write them):

- **NeRF-synthetic**: ``DIR/transforms_{train,val,test}.json`` with ``camera_angle_x`` (or intrinsics as
  below) and ``frames[{file_path, transform_matrix}]``; RGBA PNGs. Box ``geocert_bound`` (default 1.5)
  around the origin, near 2, far 6 — unless the file carries Instant-NGP keys.
- **nerfstudio** (``ns-process-data``) / **Instant-NGP** (``colmap2nerf.py``): one ``DIR/transforms.json``
  with intrinsics ``fl_x, fl_y, cx, cy, w, h`` (or ``camera_angle_x/y``) globally or per frame,
  ``camera_model`` PINHOLE / SIMPLE_PINHOLE / SIMPLE_RADIAL / RADIAL / OPENCV with ``k1, k2, k3, p1, p2``
  (the rays are undistorted, not the images), ``file_path`` with its extension (PNG or JPG, RGB or RGBA),
  optional ``mask_path`` and ``geocert_mask_path`` per frame, ``applied_transform`` (already applied to the poses, as nerfstudio
  writes it: read and checked only). Splits: ``train_filenames`` / ``test_filenames`` (``val_filenames``
  when there is no test list) when present; otherwise nerfstudio's default rule (``eval_mode="fraction"``,
  ``train_split_fraction=0.9``): frames sorted by ``file_path``, ``ceil(0.9·N)`` training frames at
  ``np.linspace(0, N−1, ceil(0.9·N), dtype=int)``, the rest are the test split.

The scene box (a cube ``centre ± bound``; the loader moves the poses so that the centre is the origin) and
near/far come from :func:`scene_frame` (the rule is in its docstring).

Masks and alpha: an RGBA image's alpha, or else a frame's ``geocert_mask_path`` image (white = object,
black = background, read as greyscale, > ½ is object), is the object's silhouette: it trains the opacity
(``--mask-weight``), picks the foreground rays and lets render report PSNR on the object's pixels.
nerfstudio's ``mask_path`` keeps nerfstudio's meaning: black pixels are ignored (never drawn in training).

Every problem is reported as :class:`geocert.errors.InputError` whose message starts with the offending file.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geocert.errors import InputError

__all__ = ["Split", "Cameras", "SceneFrame", "load_split", "pixel_rays", "undistort", "distort", "scene_frame",
           "scene_format", "DEFAULT_BOUND", "NEAR", "FAR", "SUPPORTED_CAMERA_MODELS"]

DEFAULT_BOUND = 1.5  # the Blender scenes fit in [-1.5, 1.5]^3
NEAR, FAR = 2.0, 6.0  # the NeRF-synthetic scenes' ray segment
NGP_SCALE, NGP_OFFSET = 0.33, 0.5  # Instant-NGP's defaults when a file has aabb_scale but no scale/offset
SUPPORTED_CAMERA_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
UNDISTORT_ITERATIONS = 10
TRAIN_SPLIT_FRACTION = 0.9  # nerfstudio's default train_split_fraction


@dataclasses.dataclass
class Cameras:
    """Intrinsics of V views, ``params [V, 9]`` float64: fx, fy, cx, cy (pixels; the pixel (i, j) covers
    [i, i+1] × [j, j+1], its centre is (i + ½, j + ½), as in COLMAP and nerfstudio) and the OpenCV
    radial-tangential distortion k1, k2, k3, p1, p2."""

    params: torch.Tensor

    @classmethod
    def pinhole(cls, focal: float, height: int, width: int, n: int = 1) -> Cameras:
        """``n`` identical centred pinhole cameras of focal length ``focal`` pixels."""
        p = torch.tensor([focal, focal, 0.5 * width, 0.5 * height, 0, 0, 0, 0, 0], dtype=torch.float64)
        return cls(p[None].repeat(n, 1))

    def __len__(self) -> int:
        return self.params.shape[0]

    def __getitem__(self, idx) -> Cameras:
        p = self.params[idx]
        return Cameras(p[None] if p.ndim == 1 else p)

    def scaled(self, sx: float, sy: float | None = None) -> Cameras:
        """The cameras of images resized by ``sx`` horizontally and ``sy`` (default ``sx``) vertically."""
        sy = sx if sy is None else sy
        p = self.params.clone()
        p[:, 0] *= sx
        p[:, 2] *= sx
        p[:, 1] *= sy
        p[:, 3] *= sy
        return Cameras(p)

    @property
    def distorted(self) -> bool:
        return bool((self.params[:, 4:] != 0).any())

    @property
    def focal(self) -> float:
        """Mean horizontal focal length (pixels)."""
        return float(self.params[:, 0].mean())


@dataclasses.dataclass
class Split:
    """One split of a scene.

    images: ``[V, H, W, 3]`` float32 RGB (an RGBA image composited on white, or black with
    ``white_bg=False``); alpha: ``[V, H, W]`` float32 object coverage (an image's alpha, else its
    ``geocert_mask_path`` silhouette; None unless every view has one); valid: ``[V, H, W]`` bool, False on
    the pixels nerfstudio's ``mask_path`` masks out (None without such masks); c2w: ``[V, 4, 4]`` camera-to-world, moved so that the box centre is
    the origin; cameras: per-view intrinsics; bound: half-size of the scene box; near/far: the ray segment;
    center: the box centre in the file's coordinates (subtract it from a mesh in those coordinates); mesh:
    path of the ground-truth mesh or None; rgba: whether the images carry an alpha channel; format:
    ``"nerf-synthetic"`` or ``"nerfstudio"``; background: ``"white"`` when the scene has a known white
    background (RGBA images) else ``"learned"`` — the default of ``--background``."""

    images: torch.Tensor
    alpha: torch.Tensor | None
    c2w: torch.Tensor
    cameras: Cameras
    height: int
    width: int
    bound: float
    mesh: Path | None
    files: list[Path]
    near: float = NEAR
    far: float = FAR
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rgba: bool = True
    format: str = "nerf-synthetic"
    valid: torch.Tensor | None = None

    @property
    def focal(self) -> Cameras:
        """The split's :attr:`cameras` under the name of the single focal length they replaced, so that code
        written for it (``pixel_rays(c2w, h, w, split.focal)``, ``render_views(..., split.focal)``) uses the
        per-view intrinsics; new code should read :attr:`cameras`."""
        return self.cameras

    @property
    def background(self) -> str:
        return "white" if self.rgba else "learned"


@dataclasses.dataclass(frozen=True)
class SceneFrame:
    """Where the scene is: the box ``center ± bound`` and the ray segment ``[near, far]``, and which rule gave it."""

    center: tuple[float, float, float]
    bound: float
    near: float
    far: float
    rule: str


# --------------------------------------------------------------------------------------------- cameras
def distort(x: torch.Tensor, y: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's radial-tangential model on normalised coordinates ``x, y`` (broadcast with ``k [..., 5]`` =
    k1, k2, k3, p1, p2): x_d = x(1 + k1 r² + k2 r⁴ + k3 r⁶) + 2 p1 x y + p2 (r² + 2x²), likewise y_d."""
    k1, k2, k3, p1, p2 = k.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def undistort(xd: torch.Tensor, yd: torch.Tensor, k: torch.Tensor,
              iterations: int = UNDISTORT_ITERATIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert :func:`distort` by Newton's method (analytic 2×2 Jacobian, ``iterations`` steps from the
    distorted point), as nerfstudio and COLMAP do; exact to float64 round-off for mild distortion."""
    k1, k2, k3, p1, p2 = k.unbind(-1)
    x, y = xd.clone(), yd.clone()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        d_radial = k1 + r2 * (2 * k2 + 3 * k3 * r2)  # d radial / d r2
        fx = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xd
        fy = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - yd
        fx_x = radial + 2 * x * x * d_radial + 2 * p1 * y + 6 * p2 * x
        fx_y = 2 * x * y * d_radial + 2 * p1 * x + 2 * p2 * y
        fy_x = 2 * x * y * d_radial + 2 * p1 * x + 2 * p2 * y
        fy_y = radial + 2 * y * y * d_radial + 6 * p1 * y + 2 * p2 * x
        det = fx_x * fy_y - fx_y * fy_x
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        x = x - (fx * fy_y - fy * fx_y) / det
        y = y - (fy * fx_x - fx * fy_x) / det
    return x, y


def pixel_rays(c2w: torch.Tensor, height: int, width: int,
               camera: Cameras | float, offset: tuple[float, float] = (0.5, 0.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions ``[V, H, W, 3]`` through the pixel centres of each camera ``[V, 4, 4]``
    (OpenGL convention: the camera looks along −z, y up), on the device of ``c2w``. ``camera``: the views'
    :class:`Cameras` (one camera serves every view), or a focal length in pixels (a centred pinhole).
    ``offset``: where in its pixel each ray passes (x, y in [0, 1]; the centre by default)."""
    c2w = c2w.reshape(-1, 4, 4).float()
    cams = Cameras.pinhole(float(camera), height, width) if not isinstance(camera, Cameras) else camera
    if len(cams) not in (1, c2w.shape[0]):
        raise ValueError(f"{len(cams)} cameras for {c2w.shape[0]} poses")
    p = cams.params.to(torch.float64)[:, None, None, :]  # [V|1, 1, 1, 9]
    j, i = torch.meshgrid(torch.arange(height, dtype=torch.float64) + offset[1],
                          torch.arange(width, dtype=torch.float64) + offset[0], indexing="ij")
    x = (i - p[..., 2]) / p[..., 0]
    y = (j - p[..., 3]) / p[..., 1]
    if cams.distorted:
        x, y = undistort(x, y, p[..., 4:9])
    d = torch.stack([x, -y, -torch.ones_like(x)], dim=-1).float().to(c2w.device)  # OpenCV → OpenGL camera
    if d.shape[0] == 1:
        d = d.expand(c2w.shape[0], -1, -1, -1)
    dirs = torch.einsum("vhwk,vjk->vhwj", d, c2w[:, :3, :3])
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[:, None, None, :3, 3].expand_as(dirs).contiguous()
    return origins, dirs


# --------------------------------------------------------------------------------------------- files
def scene_format(root: str | Path) -> tuple[str, Path]:
    """``("nerf-synthetic", DIR)`` or ``("nerfstudio", DIR/transforms.json)`` for a scene folder (or a
    nerfstudio ``.json`` file); InputError naming the path otherwise."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".json":
        return "nerfstudio", root
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: is a file; expected a scene folder (transforms_{{train,val,test}}.json or "
                         f"transforms.json, and images)")
    if not root.is_dir():
        raise InputError(f"{root}: scene folder not found")
    if (root / "transforms.json").is_file() and not (root / "transforms_train.json").is_file():
        return "nerfstudio", root / "transforms.json"
    if any((root / f"transforms_{s}.json").is_file() for s in ("train", "val", "test")):
        tf = root / "transforms_train.json"
        if not tf.is_file():
            raise InputError(f"{tf}: file not found (a NeRF-synthetic scene needs transforms_{{train,val,test}}.json)")
        return "nerf-synthetic", root
    raise InputError(f"{root}: no transforms_train.json (NeRF-synthetic) or transforms.json (nerfstudio / "
                     f"Instant-NGP) in this folder")


def _frame_image_path(root: Path, file_path: str) -> Path:
    p = (root / file_path).resolve() if not Path(file_path).is_absolute() else Path(file_path)
    if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return p
    for ext in (".png", ".PNG", ".jpg", ".JPG", ".jpeg"):
        if p.with_name(p.name + ext).is_file():
            return p.with_name(p.name + ext)
    return p.with_name(p.name + ".png")


def _read_meta(tf: Path) -> dict:
    from geocert.io import read_json

    meta = read_json(tf)
    if not isinstance(meta, dict):
        raise InputError(f"{tf}: expected a JSON object with 'frames'")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise InputError(f"{tf}: 'frames' must be a non-empty list")
    for k, fr in enumerate(frames):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise InputError(f"{tf}: frame {k} needs 'file_path' and 'transform_matrix'")
    if "applied_transform" in meta:
        at = _matrix(tf, meta["applied_transform"], "applied_transform")
        if at.shape not in ((3, 4), (4, 4)):
            raise InputError(f"{tf}: applied_transform must be a 3x4 or 4x4 matrix, got shape {at.shape}")
    return meta


def _matrix(tf: Path, value: Any, what: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{tf}: {what} is not numeric") from None
    if not np.isfinite(m).all():
        raise InputError(f"{tf}: {what} must be finite")
    return m


def _pose(tf: Path, fr: dict, k: int) -> np.ndarray:
    m = _matrix(tf, fr["transform_matrix"], f"frame {k}: transform_matrix")
    if m.shape == (3, 4):
        m = np.vstack([m, [0, 0, 0, 1]])
    if m.shape != (4, 4):
        raise InputError(f"{tf}: frame {k}: transform_matrix must be a finite 4x4 matrix, got shape {m.shape}")
    return m


def _number(tf: Path, src: dict, key: str, where: str) -> float | None:
    if key not in src:
        return None
    try:
        v = float(src[key])
    except (TypeError, ValueError):
        raise InputError(f"{tf}: {where}{key} must be a number, got {src[key]!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{tf}: {where}{key} must be finite, got {v}")
    return v


def _intrinsics(tf: Path, meta: dict, fr: dict, k: int, img_h: int, img_w: int) -> np.ndarray:
    """fx, fy, cx, cy, k1, k2, k3, p1, p2 of frame ``k`` for its image of ``img_h × img_w`` pixels (a frame's
    own keys override the file's)."""
    where = f"frame {k}: "

    def get(key: str) -> float | None:
        v = _number(tf, fr, key, where)
        return _number(tf, meta, key, "") if v is None else v

    model = str(fr.get("camera_model", meta.get("camera_model", "PINHOLE"))).upper()
    if model not in SUPPORTED_CAMERA_MODELS:
        raise InputError(f"{tf}: camera_model {model!r} is not supported (supported: "
                         f"{', '.join(SUPPORTED_CAMERA_MODELS)}; undistort fisheye/equirectangular images first)")
    w, h = get("w"), get("h")
    sx = img_w / w if w else 1.0
    sy = img_h / h if h else 1.0
    if w and h and abs(sx - sy) > 0.01 * max(sx, sy):
        raise InputError(f"{tf}: {where}image {img_w}x{img_h} does not have the aspect of w x h = {w:g}x{h:g}")
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None and fy is None:
        ax, ay = get("camera_angle_x"), get("camera_angle_y")
        for name, a in (("camera_angle_x", ax), ("camera_angle_y", ay)):
            if a is not None and not 0.0 < a < math.pi:
                raise InputError(f"{tf}: {name} must be in (0, pi), got {a}")
        if ax is not None:
            fx = 0.5 * img_w / math.tan(0.5 * ax) / sx
        if ay is not None:
            fy = 0.5 * img_h / math.tan(0.5 * ay) / sy
        if fx is None and fy is None:
            raise InputError(f"{tf}: {where}missing intrinsics: give fl_x/fl_y (pixels) or camera_angle_x "
                             f"(horizontal field of view in radians)")
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    cx, cy = get("cx"), get("cy")
    cx = 0.5 * (w or img_w) if cx is None else cx
    cy = 0.5 * (h or img_h) if cy is None else cy
    if not (fx > 0 and fy > 0):
        raise InputError(f"{tf}: {where}focal lengths must be > 0, got fl_x={fx}, fl_y={fy}")
    dist = [get(n) or 0.0 for n in ("k1", "k2", "k3", "p1", "p2")]
    if (get("k4") or 0.0) != 0.0:
        raise InputError(f"{tf}: {where}k4 is a fisheye/6-coefficient term; not supported with camera_model {model}")
    if model in ("PINHOLE", "SIMPLE_PINHOLE") and any(dist):
        raise InputError(f"{tf}: {where}distortion coefficients given with camera_model {model} (use OPENCV)")
    return np.array([fx * sx, fy * sy, cx * sx, cy * sy, *dist], dtype=np.float64)


def _downscale(a: np.ndarray, n: int) -> np.ndarray:
    """Area average of ``n × n`` pixel blocks (the image is cropped to a multiple of ``n``)."""
    if n == 1:
        return a
    h, w = a.shape[0] // n * n, a.shape[1] // n * n
    a = a[:h, :w]
    return a.reshape(h // n, n, w // n, n, *a.shape[2:]).mean(axis=(1, 3))


def _frame_mask(base: Path, name: Any, img: np.ndarray) -> np.ndarray:
    """The 0/1 mask image ``base/name`` of a frame whose image is ``img``."""
    mp = _frame_image_path(base, str(name))
    mask = _read_mask(mp)
    if mask.shape != img.shape[:2]:
        raise InputError(f"{mp}: mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
                         f"{img.shape[1]}x{img.shape[0]}")
    return mask


def _read_mask(path: Path) -> np.ndarray:
    from geocert.io import read_image

    m = read_image(path)
    if m.ndim == 3:
        m = m[..., 3] if m.shape[2] == 4 else m[..., :3].mean(-1)
    if m.ndim != 2:
        raise InputError(f"{path}: expected a greyscale mask image, got shape {m.shape}")
    scale = 65535.0 if m.dtype == np.uint16 else (255.0 if m.dtype == np.uint8 else 1.0)
    return (m.astype(np.float32) / scale > 0.5).astype(np.float32)


# --------------------------------------------------------------------------------------------- scene frame
def scene_frame(tf: Path, meta: dict, c2w: np.ndarray, cams: np.ndarray, height: int, width: int,
                legacy: bool) -> SceneFrame:
    """The box and ray segment of a scene, by the first rule that applies:

    1. ``geocert_bound`` (and optionally ``geocert_center``, default the origin) in the file;
    2. Instant-NGP keys (``aabb_scale``, ``scale``, ``offset``): NGP's unit cube mapped back to the file's
       coordinates — centre ``(0.5 − offset) / scale``, half-size ``0.5 / scale`` (NGP's defaults scale 0.33,
       offset 0.5 give the NeRF-synthetic box, ±1.515). ``aabb_scale`` only widens NGP's region for the
       background; here the background model outside the box plays that part, so it does not widen the box;
    3. a NeRF-synthetic folder (``legacy``): the origin ± 1.5, near 2, far 6 (the Blender scenes);
    4. the cameras: the centre is their look-at point (the least-squares nearest point to all optical axes);
       the half-size is the median camera distance D times tan of the narrower half field of view (the
       cube that fills the median view; the NeRF-synthetic cameras give 1.44), capped at 0.9·min D/√3 so that
       no camera is inside the box.

    near/far (rules 1, 2, 4): from the nearest camera's distance minus the box's half-diagonal (at least
    1 % of it) to the farthest one's plus the half-diagonal. Rays are clipped to the box in any case."""
    pos = c2w[:, :3, 3]
    dist_of = lambda c: np.linalg.norm(pos - np.asarray(c)[None], axis=1)  # noqa: E731

    def segment(center, bound) -> tuple[float, float]:
        d = dist_of(center)
        diag = math.sqrt(3.0) * bound
        return max(float(d.min()) - diag, 0.01 * float(d.min())), float(d.max()) + diag

    if "geocert_bound" in meta:
        bound = _number(tf, meta, "geocert_bound", "")
        if not bound > 0:
            raise InputError(f"{tf}: geocert_bound must be > 0, got {bound}")
        center = _matrix(tf, meta.get("geocert_center", [0.0, 0.0, 0.0]), "geocert_center").reshape(-1)
        if center.shape != (3,):
            raise InputError(f"{tf}: geocert_center must be 3 numbers")
        if legacy and "geocert_center" not in meta:
            return SceneFrame((0.0, 0.0, 0.0), bound, NEAR, FAR, "geocert_bound, NeRF-synthetic near/far")
        return SceneFrame(tuple(center.tolist()), bound, *segment(center, bound), "geocert_bound")
    if any(k in meta for k in ("aabb_scale", "scale", "offset")):
        scale = _number(tf, meta, "scale", "")
        scale = NGP_SCALE if scale is None else scale
        if not scale > 0:
            raise InputError(f"{tf}: scale must be > 0, got {scale}")
        off = _matrix(tf, meta.get("offset", [NGP_OFFSET] * 3), "offset").reshape(-1)
        if off.shape != (3,):
            raise InputError(f"{tf}: offset must be 3 numbers, got {off.tolist()}")
        if "aabb_scale" in meta:
            a = _number(tf, meta, "aabb_scale", "")
            if not a >= 1:
                raise InputError(f"{tf}: aabb_scale must be >= 1, got {a}")
        center = (0.5 - off) / scale
        bound = 0.5 / scale
        return SceneFrame(tuple(center.tolist()), bound, *segment(center, bound), "Instant-NGP scale/offset")
    if legacy:
        return SceneFrame((0.0, 0.0, 0.0), DEFAULT_BOUND, NEAR, FAR, "NeRF-synthetic default")
    axes = -c2w[:, :3, 2]
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    proj = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]  # I − a aᵀ
    a_mat, b_vec = proj.sum(0), np.einsum("vij,vj->i", proj, pos)
    if len(pos) < 2 or np.linalg.cond(a_mat) > 1e6:
        raise InputError(f"{tf}: the cameras' optical axes do not meet (a forward-facing capture?); give the "
                         f"scene box with geocert_bound (and geocert_center) in this file")
    center = np.linalg.solve(a_mat, b_vec)
    d = dist_of(center)
    half_fov = np.minimum(np.arctan(0.5 * width / cams[:, 0]), np.arctan(0.5 * height / cams[:, 1]))
    bound = min(float(np.median(d) * np.tan(np.median(half_fov))), 0.9 * float(d.min()) / math.sqrt(3.0))
    return SceneFrame(tuple(center.tolist()), bound, *segment(center, bound), "cameras' look-at point and field of view")


# --------------------------------------------------------------------------------------------- loading
def _split_frames(tf: Path, meta: dict, split: str) -> list[dict]:
    """The frames of ``split`` ("train", "val" or "test") of a nerfstudio file (see the module docstring)."""
    frames = meta["frames"]
    lists = {s: meta.get(f"{s}_filenames") for s in ("train", "val", "test")}
    if any(v is not None for v in lists.values()):
        want = lists[split] if lists[split] is not None or split == "train" else None
        if want is None:
            want = lists["val"] if split == "test" else lists["test"]
        if want is None:
            raise InputError(f"{tf}: has split lists but no {split}_filenames")
        if not isinstance(want, list):
            raise InputError(f"{tf}: {split}_filenames must be a list of file paths")
        norm = lambda p: Path(str(p)).as_posix().lstrip("./")  # noqa: E731
        keys = {norm(p) for p in want}
        sel = [fr for fr in frames if norm(fr["file_path"]) in keys]
        if len(sel) != len(keys):
            missing = sorted(keys - {norm(fr["file_path"]) for fr in frames})
            raise InputError(f"{tf}: {split}_filenames names {len(missing)} file(s) with no frame, e.g. {missing[0]}")
        return sel
    order = sorted(range(len(frames)), key=lambda k: str(frames[k]["file_path"]))
    n = len(order)
    n_train = math.ceil(n * TRAIN_SPLIT_FRACTION)
    i_train = set(np.linspace(0, n - 1, n_train, dtype=int).tolist())
    pick = [k for k in range(n) if (k in i_train) == (split == "train")]
    if not pick:
        raise InputError(f"{tf}: {n} frame(s) leave no {split} view (nerfstudio's 90/10 split); add frames or "
                         f"train_filenames/test_filenames")
    return [frames[order[k]] for k in pick]


def load_split(root: str | Path, split: str, *, max_views: int | None = None, white_bg: bool = True,
               downscale: int = 1) -> Split:
    """Read one split of a scene folder (NeRF-synthetic or nerfstudio / Instant-NGP, see the module docstring),
    its images downscaled ``downscale`` times (area average) with the intrinsics scaled to match."""
    from geocert.io import read_image

    fmt, path = scene_format(root)
    root = Path(root)
    if fmt == "nerf-synthetic":
        tf = root / f"transforms_{split}.json"
        if not tf.is_file():
            raise InputError(f"{tf}: file not found (a NeRF-synthetic scene needs transforms_{{train,val,test}}.json)")
        meta = _read_meta(tf)
        frames = meta["frames"]
        # the box and near/far come from the training file, so that every split shares them
        box_meta = meta if split == "train" else _read_meta(root / "transforms_train.json")
        box_frames = box_meta["frames"]
    else:
        tf = path
        meta = _read_meta(tf)
        frames = _split_frames(tf, meta, split)
        box_meta, box_frames = meta, meta["frames"]
    base = tf.parent
    if max_views is not None:
        frames = frames[:max_views]
    images, alphas, poses, files, intr, valids = [], [], [], [], [], []
    size = None
    rgba = True
    for k, fr in enumerate(frames):
        m = _pose(tf, fr, k)
        img_path = _frame_image_path(base, str(fr["file_path"]))
        img = read_image(img_path)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] not in (3, 4):
            raise InputError(f"{img_path}: expected an RGB or RGBA image, got shape {img.shape}")
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise InputError(f"{img_path}: image size {img.shape[1]}x{img.shape[0]} differs from the first image "
                             f"{size[1]}x{size[0]} (all images of a split must have one size)")
        intr.append(_intrinsics(tf, meta, fr, k, img.shape[0], img.shape[1]))
        img = img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
        a = None
        if img.shape[2] == 4:
            a = img[..., 3]
            bg = 1.0 if white_bg else 0.0
            img = img[..., :3] * a[..., None] + bg * (1.0 - a[..., None])
        else:
            rgba = False
        if fr.get("geocert_mask_path"):
            a = _frame_mask(base, fr["geocert_mask_path"], img) if a is None else a
        ok = _frame_mask(base, fr["mask_path"], img) if fr.get("mask_path") else None
        if downscale > 1:
            img = _downscale(img, downscale)
            a = None if a is None else _downscale(a, downscale)
            ok = None if ok is None else _downscale(ok, downscale)
        if ok is not None:
            valids.append(ok > 0.5)
        images.append(img)
        if a is not None:
            alphas.append(a.astype(np.float32))
        poses.append(m)
        files.append(img_path)
    params = np.stack(intr)
    if downscale > 1:
        params[:, :4] /= downscale
    height, width = images[0].shape[:2]
    c2w = np.stack(poses)
    full_h, full_w = size
    box_c2w = np.stack([_pose(tf, fr, k) for k, fr in enumerate(box_frames)])  # every split gets one box
    box_cams = np.stack([_intrinsics(tf, box_meta, fr, k, full_h, full_w) for k, fr in enumerate(box_frames)])
    frame = scene_frame(tf, box_meta, box_c2w, box_cams, full_h, full_w, legacy=fmt == "nerf-synthetic")
    c2w[:, :3, 3] -= np.asarray(frame.center)[None]
    mesh = meta.get("geocert_mesh") or box_meta.get("geocert_mesh")
    mesh_path = (base / mesh) if mesh and (base / mesh).is_file() else None
    alpha = torch.from_numpy(np.stack(alphas)) if len(alphas) == len(images) else None
    if valids and len(valids) != len(images):
        raise InputError(f"{tf}: {len(valids)} of {len(images)} frames of the {split} split have a mask_path; give "
                         f"every frame one or none")
    valid = torch.from_numpy(np.stack(valids)) if valids else None
    return Split(images=torch.from_numpy(np.stack(images)).float(), alpha=alpha,
                 c2w=torch.from_numpy(c2w).float(), cameras=Cameras(torch.from_numpy(params)),
                 height=int(height), width=int(width), bound=float(frame.bound), mesh=mesh_path, files=files,
                 near=float(frame.near), far=float(frame.far), center=tuple(float(v) for v in frame.center),
                 rgba=rgba, format=fmt, valid=valid)
