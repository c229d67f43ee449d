"""A small procedural part-segmentation dataset in the ShapeNet-part format.

``make_dataset(out)`` writes, with a fixed seed, a folder laid out exactly like
``shapenetcore_partanno_segmentation_benchmark_v0_normal``::

    out/synsetoffset2category.txt              "Airplane\\t02691156" per line
    out/<synset>/<shape id>.txt                rows "x y z nx ny nz part" (global part id, ShapeNet numbering)
    out/train_test_split/shuffled_{train,val,test}_file_list.json   ["shape_data/<synset>/<shape id>", ...]

Shapes are built from primitives (boxes, cylinders, cones, spheres) whose proportions are drawn at random
within a category; points are sampled on the surfaces proportionally to area, with outward normals. The
up axis is +y as in ShapeNet. Categories and their parts (global ids as in ShapeNet-part):

* Airplane (0 body, 1 wing, 2 tail, 3 engine — engines on 40% of airplanes)
* Chair (12 back, 13 seat, 14 leg, 15 arm — armrests on 20% of chairs)
* Knife (22 blade, 23 handle)
* Lamp (24 base, 25 shade, 26 bulb, 27 pole)
* Laptop (28 keyboard, 29 screen)
* Mug (36 handle, 37 body)
* Rocket (41 body, 42 fin, 43 nose)
* Table (47 top, 48 leg, 49 support: a low shelf between the legs on 30% of tables)

Parts are deliberately chunky: after normalization to the unit sphere most points lie more than ~0.2 from
a part boundary, so a base model trained at σ = 0.25 can be confident on them (the real ShapeNet has many
thin parts; expect lower certified accuracy there).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from geocert.io import atomic_directory
from geocert_pointcloud.data import CATEGORY_PARTS, CATEGORY_SYNSETS

__all__ = ["PROCEDURAL_CATEGORIES", "make_dataset", "make_shape", "default_dataset"]

PROCEDURAL_CATEGORIES = ("Airplane", "Chair", "Knife", "Lamp", "Laptop", "Mug", "Rocket", "Table")
DEFAULT_SEED = 0
DEFAULT_SHAPES_PER_CATEGORY = 20
DEFAULT_POINTS_PER_SHAPE = 2500
_DATASET_VERSION = 2


# --------------------------------------------------------------------------------------------------------
# primitive surface samplers: each returns (area, sampler(rng, k) -> (points [k,3], normals [k,3]))


def _box(center, size):
    center, size = np.asarray(center, float), np.asarray(size, float)
    sx, sy, sz = size
    face_areas = np.array([sy * sz, sy * sz, sx * sz, sx * sz, sx * sy, sx * sy])

    def sample(rng, k):
        faces = rng.choice(6, size=k, p=face_areas / face_areas.sum())
        uv = rng.uniform(-0.5, 0.5, size=(k, 3)) * size
        axis = faces // 2
        sign = np.where(faces % 2 == 0, 1.0, -1.0)
        pts = uv.copy()
        pts[np.arange(k), axis] = sign * size[axis] / 2
        nrm = np.zeros((k, 3))
        nrm[np.arange(k), axis] = sign
        return pts + center, nrm

    return face_areas.sum(), sample


def _frame(axis):
    """Two unit vectors orthogonal to ``axis`` (and to each other)."""
    axis = np.asarray(axis, float)
    axis = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    return axis, u, np.cross(axis, u)


def _frustum(base, axis, length, r0, r1, caps=True):
    """Truncated cone from ``base`` along ``axis``: radius r0 at the base, r1 at the far end (r0=r1: cylinder)."""
    base = np.asarray(base, float)
    a, u, v = _frame(axis)
    slant = np.hypot(length, r0 - r1)
    side = np.pi * (r0 + r1) * slant
    cap0 = np.pi * r0**2 if caps else 0.0
    cap1 = np.pi * r1**2 if caps else 0.0
    areas = np.array([side, cap0, cap1])

    def sample(rng, k):
        which = rng.choice(3, size=k, p=areas / areas.sum())
        phi = rng.uniform(0, 2 * np.pi, size=k)
        radial = np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v
        # side: t with density ∝ radius(t)
        w = rng.uniform(size=k)
        if abs(r1 - r0) < 1e-9:
            t = w
        else:
            t = (np.sqrt(r0**2 + w * (r1**2 - r0**2)) - r0) / (r1 - r0)
        rad = r0 + (r1 - r0) * t
        pts = base + (t * length)[:, None] * a + rad[:, None] * radial
        nrm = radial * length + a * (r0 - r1)
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        # caps: uniform on discs
        s = np.sqrt(rng.uniform(size=k))
        cap0_pts = base + (s * r0)[:, None] * radial
        cap1_pts = base + length * a + (s * r1)[:, None] * radial
        pts = np.where((which == 1)[:, None], cap0_pts, pts)
        pts = np.where((which == 2)[:, None], cap1_pts, pts)
        nrm = np.where((which == 1)[:, None], -a, nrm)
        nrm = np.where((which == 2)[:, None], a, nrm)
        return pts, nrm

    return areas.sum(), sample


def _ellipsoid(center, radii):
    center, radii = np.asarray(center, float), np.asarray(radii, float)
    p = 1.6075
    a, b, c = radii
    area = 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)

    def sample(rng, k):
        d = rng.normal(size=(k, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pts = d * radii
        nrm = d / radii
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        return pts + center, nrm

    return area, sample


def _sample_parts(rng, parts, num_points):
    """parts: list of (global part id, primitive). Area-proportional sampling of ``num_points`` points."""
    areas = np.array([prim[0] for _, prim in parts])
    counts = rng.multinomial(num_points, areas / areas.sum())
    pts, nrm, lab = [], [], []
    for (label, (_, sampler)), k in zip(parts, counts, strict=False):
        if k == 0:
            continue
        p, n = sampler(rng, int(k))
        pts.append(p)
        nrm.append(n)
        lab.append(np.full(int(k), label))
    return np.concatenate(pts), np.concatenate(nrm), np.concatenate(lab)


# --------------------------------------------------------------------------------------------------------
# categories (y up, x right, z forward)


def _airplane(rng):
    body, wing, tail, engine = CATEGORY_PARTS["Airplane"]
    length = rng.uniform(2.0, 2.4)
    r = rng.uniform(0.2, 0.26)
    span = rng.uniform(2.0, 2.4)
    chord = rng.uniform(0.45, 0.6)
    wing_z = rng.uniform(0.0, 0.2)
    thick = rng.uniform(0.05, 0.08)
    parts = [
        (body, _frustum((0, 0, -length / 2), (0, 0, 1), length * 0.8, r, r)),
        (body, _frustum((0, 0, length * 0.3), (0, 0, 1), length * 0.2, r, r * 0.3, caps=False)),
        (wing, _box((0, -r * 0.3, wing_z), (span, thick, chord))),
    ]
    fin_h = rng.uniform(0.45, 0.6)
    fin_c = rng.uniform(0.35, 0.45)
    tail_z = -length / 2 + fin_c / 2
    parts += [
        (tail, _box((0, r + fin_h / 2, tail_z), (thick, fin_h, fin_c))),
        (tail, _box((0, r * 0.5, tail_z), (rng.uniform(0.7, 0.9), thick, fin_c))),
    ]
    eng_r = rng.uniform(0.1, 0.13)
    eng_l = rng.uniform(0.5, 0.7)
    for sx in (-1, 1) if rng.uniform() < 0.4 else ():
        x = sx * span * rng.uniform(0.28, 0.34)
        parts.append((engine, _frustum((x, -r * 0.3 - thick / 2 - eng_r, wing_z + chord / 2 - eng_l * 0.8),
                                       (0, 0, 1), eng_l, eng_r, eng_r)))
    return parts


def _chair(rng):
    back, seat, leg, arm = CATEGORY_PARTS["Chair"]
    w = rng.uniform(1.2, 1.4)
    d = rng.uniform(1.2, 1.4)
    seat_h = rng.uniform(0.9, 1.0)
    seat_t = rng.uniform(0.15, 0.2)
    back_h = rng.uniform(1.1, 1.3)
    back_t = rng.uniform(0.12, 0.18)
    leg_t = rng.uniform(0.12, 0.16)
    parts = [
        (seat, _box((0, seat_h, 0), (w, seat_t, d))),
        (back, _box((0, seat_h + seat_t / 2 + back_h / 2, -d / 2 + back_t / 2), (w, back_h, back_t))),
    ]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append((leg, _box((sx * (w / 2 - leg_t / 2), (seat_h - seat_t / 2) / 2,
                                     sz * (d / 2 - leg_t / 2)), (leg_t, seat_h - seat_t / 2, leg_t))))
    if rng.uniform() < 0.2:
        arm_h = rng.uniform(0.3, 0.4)
        for sx in (-1, 1):
            parts.append((arm, _box((sx * (w / 2 + 0.08), seat_h + seat_t / 2 + arm_h, 0.1),
                                    (0.16, 0.12, d * 0.8))))
    return parts


def _lamp(rng):
    base, shade, bulb, pole = CATEGORY_PARTS["Lamp"]
    base_r = rng.uniform(0.45, 0.6)
    base_h = rng.uniform(0.1, 0.15)
    pole_h = rng.uniform(1.0, 1.3)
    pole_r = rng.uniform(0.05, 0.07)
    shade_h = rng.uniform(0.5, 0.7)
    top_r = rng.uniform(0.25, 0.35)
    bot_r = top_r + rng.uniform(0.2, 0.3)
    bulb_r = rng.uniform(0.1, 0.14)
    top = base_h + pole_h
    return [
        (base, _frustum((0, 0, 0), (0, 1, 0), base_h, base_r, base_r * 0.9)),
        (pole, _frustum((0, base_h, 0), (0, 1, 0), pole_h, pole_r, pole_r, caps=False)),
        (bulb, _ellipsoid((0, top + shade_h * 0.75, 0), (bulb_r, bulb_r * 1.3, bulb_r))),
        (shade, _frustum((0, top, 0), (0, 1, 0), shade_h, bot_r, top_r, caps=False)),
    ]


def _table(rng):
    top, leg, support = CATEGORY_PARTS["Table"]
    w = rng.uniform(1.4, 1.8)
    d = rng.uniform(0.9, 1.2)
    h = rng.uniform(1.0, 1.2)
    top_t = rng.uniform(0.1, 0.15)
    leg_t = rng.uniform(0.12, 0.16)
    shelf_h = rng.uniform(0.1, 0.2) * h
    parts = [(top, _box((0, h, 0), (w, top_t, d)))]
    xs, zs = w / 2 - leg_t / 2, d / 2 - leg_t / 2
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append((leg, _box((sx * xs, (h - top_t / 2) / 2, sz * zs), (leg_t, h - top_t / 2, leg_t))))
    if rng.uniform() < 0.3:
        parts.append((support, _box((0, shelf_h, 0), (2 * xs - leg_t, rng.uniform(0.06, 0.1), 2 * zs - leg_t))))
    return parts


def _knife(rng):
    blade, handle = CATEGORY_PARTS["Knife"]
    bl, hl = rng.uniform(1.1, 1.4), rng.uniform(0.7, 0.9)
    bw, hw = rng.uniform(0.2, 0.3), rng.uniform(0.15, 0.2)
    return [
        (blade, _box((0, 0, bl / 2), (rng.uniform(0.03, 0.05), bw, bl))),
        (handle, _box((0, 0, -hl / 2), (rng.uniform(0.1, 0.14), hw, hl))),
    ]


def _laptop(rng):
    keyboard, screen = CATEGORY_PARTS["Laptop"]
    w, d = rng.uniform(1.2, 1.5), rng.uniform(0.8, 1.0)
    t = rng.uniform(0.04, 0.07)
    ang = np.radians(rng.uniform(95, 125))
    sd = rng.uniform(0.75, 0.95) * d
    u = np.array([0.0, np.sin(ang), -np.cos(ang)])  # screen direction from the hinge
    hinge = np.array([0.0, t, -d / 2])
    center = hinge + u * sd / 2
    a, b, c = (np.array([1.0, 0, 0]), u, np.cross([1.0, 0, 0], u))
    box = _box((0, 0, 0), (w, sd, t))

    def rotated(rng_, k):
        p, n = box[1](rng_, k)
        rot = np.stack([a, b, c], axis=1)
        return p @ rot.T + center, n @ rot.T

    return [(keyboard, _box((0, t / 2, 0), (w, t, d))), (screen, (box[0], rotated))]


def _mug(rng):
    handle, body = CATEGORY_PARTS["Mug"]
    r, h = rng.uniform(0.45, 0.6), rng.uniform(0.9, 1.2)
    hh = rng.uniform(0.5, 0.7) * h
    return [
        (body, _frustum((0, 0, 0), (0, 1, 0), h, r, r * rng.uniform(1.0, 1.15))),
        (handle, _box((r + 0.25, h / 2, 0), (0.12, hh, 0.14))),
        (handle, _box((r + 0.12, h / 2 + hh / 2 - 0.06, 0), (0.26, 0.12, 0.14))),
        (handle, _box((r + 0.12, h / 2 - hh / 2 + 0.06, 0), (0.26, 0.12, 0.14))),
    ]


def _rocket(rng):
    body, fin, nose = CATEGORY_PARTS["Rocket"]
    r, length = rng.uniform(0.25, 0.3), rng.uniform(2.0, 2.4)
    nose_l = rng.uniform(0.7, 0.9)
    fin_h, fin_w = rng.uniform(0.5, 0.6), rng.uniform(0.3, 0.4)
    parts = [
        (body, _frustum((0, 0, 0), (0, 1, 0), length, r, r)),
        (nose, _frustum((0, length, 0), (0, 1, 0), nose_l, r, 0.02, caps=False)),
    ]
    for ang in (0, 90, 180, 270):
        dx, dz = np.cos(np.radians(ang)), np.sin(np.radians(ang))
        size = (fin_w if dx else 0.05, fin_h, fin_w if dz else 0.05)
        parts.append((fin, _box((dx * (r + fin_w / 2), fin_h / 2, dz * (r + fin_w / 2)), size)))
    return parts


_BUILDERS = {"Airplane": _airplane, "Chair": _chair, "Knife": _knife, "Lamp": _lamp, "Laptop": _laptop,
             "Mug": _mug, "Rocket": _rocket, "Table": _table}


def make_shape(category: str, rng: np.random.Generator, num_points: int = DEFAULT_POINTS_PER_SHAPE):
    """One random shape of ``category``: ``(points [N,3], normals [N,3], labels [N])`` (global part ids).

    The shape is in its category's canonical frame (y up), with a random uniform scale in [0.8, 1.2] and
    a small random offset, like ShapeNet models before normalization.
    """
    if category not in _BUILDERS:
        raise ValueError(f"no procedural generator for category {category!r}; have {sorted(_BUILDERS)}")
    parts = _BUILDERS[category](rng)
    pts, nrm, lab = _sample_parts(rng, parts, num_points)
    pts = pts * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1, size=3)
    order = rng.permutation(len(pts))
    return pts[order], nrm[order], lab[order]


def make_dataset(out: str | os.PathLike, *, shapes_per_category: int = DEFAULT_SHAPES_PER_CATEGORY,
                 num_points: int = DEFAULT_POINTS_PER_SHAPE, seed: int = DEFAULT_SEED,
                 categories: tuple[str, ...] = PROCEDURAL_CATEGORIES,
                 split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Path:
    """Write the procedural dataset into ``out`` (created; must not hold a dataset already).

    Deterministic for a given seed. Splits take (train, val, test) fractions of each category.
    Returns ``out``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    lines = []
    for category in categories:
        synset = CATEGORY_SYNSETS[category]
        lines.append(f"{category}\t{synset}")
        (out / synset).mkdir(exist_ok=True)
        n_train = round(shapes_per_category * split_fractions[0])
        n_val = round(shapes_per_category * split_fractions[1])
        for i in range(shapes_per_category):
            shape_id = f"proc{seed:03d}{synset[-4:]}{i:05d}"
            pts, nrm, lab = make_shape(category, rng, num_points)
            rows = np.concatenate([pts, nrm, lab[:, None].astype(float)], axis=1)
            np.savetxt(out / synset / f"{shape_id}.txt", rows, fmt="%.6f")
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            splits[split].append(f"shape_data/{synset}/{shape_id}")
    (out / "synsetoffset2category.txt").write_text("\n".join(lines) + "\n")
    split_dir = out / "train_test_split"
    split_dir.mkdir(exist_ok=True)
    for split, items in splits.items():
        order = np.random.default_rng(seed + 1).permutation(len(items))
        (split_dir / f"shuffled_{split}_file_list.json").write_text(json.dumps([items[j] for j in order]))
    return out


def default_dataset(**kwargs) -> Path:
    """The default procedural dataset, generated once into the cache (temp folder + rename) and reused."""
    seed = kwargs.get("seed", DEFAULT_SEED)
    spc = kwargs.get("shapes_per_category", DEFAULT_SHAPES_PER_CATEGORY)
    from geocert.pipeline import cache_root

    target = cache_root("pointcloud", f"procedural_v{_DATASET_VERSION}_s{seed}_n{spc}")
    if (target / "synsetoffset2category.txt").is_file():
        return target
    try:
        with atomic_directory(target, replace=False) as tmp:
            make_dataset(tmp, **kwargs)
    except OSError:  # another process finished first
        if not (target / "synsetoffset2category.txt").is_file():
            raise
    return target
