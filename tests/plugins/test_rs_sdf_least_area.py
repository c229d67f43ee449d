"""The least-area completion of the RS-SDF occupancy (geocert_rs_sdf.carve.least_area / min_area_cut)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from geocert_rs_sdf.carve import flat_pixels, least_area, min_area_cut
from geocert_rs_sdf.config import FieldSettings
from geocert_rs_sdf.data import pixel_rays
from geocert_rs_sdf.render import render_rays
from geocert_rs_sdf.scenes import look_at
from geocert_rs_sdf.train import build_field

RES = 32
FIELD = FieldSettings(grid_res=RES, samples=128, color_samples=4, hash_levels=2, hash_log2=8, hash_max_res=8,
                      hidden=8, sigma=1.0, sharpness=0.05)


def _faces(inside: np.ndarray) -> int:
    """Voxel faces between inside and outside within the grid (its border costs nothing)."""
    return sum(int((np.diff(inside.astype(np.int8), axis=a) != 0).sum()) for a in range(3))


@pytest.mark.parametrize("seed", range(12))
def test_min_area_cut_is_the_exact_minimum(seed):
    """Against every labelling of up to 12 free voxels: the cut's cost is the least one, and its labelling
    has that cost (faces between inside and outside plus the removal cost of each free voxel made outside)."""
    rng = np.random.default_rng(seed)
    keep = rng.random((4, 4, 4)) < 0.35
    free = np.zeros_like(keep)
    cand = np.argwhere(~keep)
    pick = cand[rng.choice(len(cand), size=min(12, len(cand)), replace=False)]
    free[tuple(pick.T)] = True
    cost_per_voxel = [0.02, 0.5, 2.0, -0.02, -0.5, -2.0][seed % 6]  # negative: a reward for removing

    def cost(inside):
        return _faces(inside) + cost_per_voxel * int((free & ~inside).sum())

    best = min(cost(keep | _assign(free, bits)) for bits in itertools.product((False, True), repeat=len(pick)))
    inside, reported = min_area_cut(free, keep, cost_per_voxel)
    assert (inside[keep]).all() and not inside[~keep & ~free].any()
    assert cost(inside) == pytest.approx(best, abs=1e-9)
    # the reported cost leaves out the faces between fixed voxels (kept / outside), which no labelling changes
    assert reported == pytest.approx(best - _fixed_faces(keep, free), abs=1e-9)


def _assign(free: np.ndarray, bits) -> np.ndarray:
    out = np.zeros_like(free)
    out[tuple(np.argwhere(free).T)] = bits
    return out


def _fixed_faces(keep: np.ndarray, free: np.ndarray) -> int:
    """Faces between a kept voxel and a fixed outside one (not free), within the grid."""
    k = keep & ~free
    out = ~keep & ~free
    n = 0
    for a in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[a], hi[a] = slice(None, -1), slice(1, None)
        n += int((k[tuple(lo)] & out[tuple(hi)]).sum() + (out[tuple(lo)] & k[tuple(hi)]).sum())
    return n


def test_min_area_cut_flattens_a_hill_and_keeps_a_block():
    """A floor with a hill on it: removing the hill lowers the area, so it goes. A free block goes unless a
    held shell around its core makes carving the core add area."""
    z = np.arange(12)[None, None, :]
    x, y = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    floor = np.broadcast_to(z < 3, (12, 12, 12)).copy()
    hill = (z >= 3) & (z < 3 + np.maximum(0, 4 - np.hypot(x - 5.5, y - 5.5))[..., None])
    keep = floor.copy()
    inside, _ = min_area_cut(hill, keep)
    assert hill.sum() > 20 and not inside[hill].any() and inside[floor].all()
    block = np.zeros((12, 12, 12), bool)
    block[3:9, 3:9, 3:9] = True
    inside, _ = min_area_cut(block, np.zeros_like(block), 0.02)
    assert not inside.any()  # with nothing to hold it, a free block has the least area gone...
    held = block.copy()
    held[4:8, 4:8, 4:8] = False  # ...but inside a held shell, its core stays: carving any of it adds area
    inside, _ = min_area_cut(block & ~held, held, 0.02)
    assert inside[block].all()
    bottom = np.zeros_like(block)
    bottom[3:9, 3:9, 3] = True  # held by its bottom layer only, the rest goes (a slab has less area)
    inside, _ = min_area_cut(block & ~bottom, bottom, 0.02)
    assert inside[bottom].all() and not inside[block & ~bottom].any()


def test_min_area_cut_settles_ties_by_its_removal_cost():
    """A staircase fillet in the corner between a square hollow's floor and one wall, reaching one side wall:
    it has exactly the faces of the corner it fills, so only the removal cost decides. The default (a small
    reward) removes it; a small cost keeps it."""
    n = 14
    x, y, z = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    hollow = (x >= 3) & (x < 11) & (y >= 3) & (y < 11) & (z >= 3)
    keep = ~hollow
    fillet = hollow & (y < 7) & ((x - 3) + (z - 3) < 3)  # 45° steps, 3 voxels high, from the wall y = 3 to y = 6
    assert fillet.sum() == 24 and _faces(keep | fillet) == _faces(keep)
    inside, cost = min_area_cut(fillet, keep)
    assert not inside[fillet].any() and inside[keep].all()
    # its cost: the corner's faces it bares, minus the reward (faces between fixed voxels are not counted)
    assert cost == pytest.approx(_faces(keep) - _fixed_faces(keep, fillet) - 0.02 * fillet.sum(), abs=1e-9)
    inside, _ = min_area_cut(fillet, keep, 0.02)
    assert inside[fillet].all()


def test_flat_pixels_marks_edges_and_blends():
    img = torch.zeros(1, 8, 8, 3)
    img[0, :, 4:] = 1.0
    flat = flat_pixels(img).reshape(8, 8)
    assert flat[:, :3].all() and flat[:, 5:].all() and not flat[:, 3:5].any()


def _centres() -> torch.Tensor:
    lin = -1.0 + (torch.arange(RES) + 0.5) * (2.0 / RES)
    return torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1)


def _cup_field(hill: bool, bump: bool = False):
    """A cup (outer radius 0.75, hollow of radius 0.45 over a floor at z = −0.3, walls up to z = 0.5, base down to
    −0.7) as a decided occupancy, with a cone of matter on the floor (height 0.45, reaching the wall at the
    floor: the images cannot tell it from the floor) and, with ``bump``, a cap on the outside wall."""
    field = build_field(FIELD, 1.0, torch.Generator().manual_seed(0))
    c = _centres()
    r = torch.hypot(c[..., 0], c[..., 1])
    z = c[..., 2]
    solid = (r < 0.75) & (z > -0.7) & (z < 0.5) & ~((r < 0.45) & (z > -0.3))
    cone = (r < 0.45) & (z > -0.3) & (z < -0.3 + 0.45 * (1 - r / 0.45))
    if hill:
        solid |= cone
    cap = (c - torch.tensor([0.75, 0.0, 0.0])).norm(dim=-1) < 0.2
    if bump:
        solid |= cap
    with torch.no_grad():
        field.logits.copy_(torch.where(solid, 8.0, -8.0))
    return field, cone, cap


def _views(width: int = 40):
    poses = []
    for k in range(32):
        el = math.radians((-10.0, 25.0, 55.0, 80.0)[k % 4])
        az = 2 * math.pi * k / 32 + 0.3 * (k % 4)
        eye = 4.0 * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        poses.append(look_at(eye))
    c2w = torch.from_numpy(np.stack(poses)).float()
    o, d = pixel_rays(c2w, width, width, 0.5 * width / math.tan(0.35))
    return o.reshape(-1, 3), d.reshape(-1, 3), width


def _colours(field, o, d, texture):
    """Each ray's colour: white on the background, else ``texture`` of the point its expected depth gives."""
    with torch.no_grad():
        out = render_rays(field, field.geometry_state(), o, d, near=2.0, far=6.0, n_samples=128, color_samples=1)
    hit = o + out["depth"][:, None] * d
    return torch.where(out["opacity"][:, None] > 0.5, texture(hit), torch.ones(len(o), 3))


def _run(field, texture, width: int = 40):
    o, d, w = _views(width)
    col = _colours(field, o, d, texture)
    flat = flat_pixels(col.reshape(-1, w, w, 3))
    inside_before = (field.sdf_grid() > 0).clone()
    info = least_area(field, o, d, col, flat, near=2.0, far=6.0, n_samples=128)
    return info, inside_before, (field.sdf_grid() > 0)


def _plain_colour(p):
    return torch.full((len(p), 3), 0.6)


def test_least_area_removes_a_hill_the_images_leave_open_and_keeps_the_cup():
    field, cone, _ = _cup_field(hill=True)
    c = _centres()
    info, before, after = _run(field, _plain_colour)
    assert info["least_area"] and info["cuts"] >= 1 and info["removed_fraction"] > 0
    upper = cone & (c[..., 2] > -0.3 + 2 * 2.0 / RES)  # the hill more than two voxels above the floor
    assert upper.sum() > 50 and not after[upper].any()
    # nothing else changed: the floor, the walls and the base are inside as before
    gone = before & ~after
    assert not (gone & ~cone).any()
    assert (field.fixed[gone] == -1).all()
    # the floor is where the cup's is: in the middle column, inside up to z = −0.3 and outside above
    mid = after[RES // 2, RES // 2]
    zc = c[RES // 2, RES // 2, :, 2]
    assert mid[(zc < -0.4) & (zc > -0.65)].all() and not mid[zc > -0.2].any()


def test_least_area_keeps_what_silhouettes_or_texture_pin():
    # a cap on the outside wall: silhouettes hold it
    field, cone, cap = _cup_field(hill=False, bump=True)
    info, before, after = _run(field, _plain_colour)
    assert before[cap].sum() > 10 and torch.equal(before, after)
    # a hill painted half red, half blue: the edge between the halves pins the surface voxels along it
    field, cone, _ = _cup_field(hill=True)

    def halves(p):
        on_hill = ((torch.hypot(p[:, 0], p[:, 1]) < 0.42) & (p[:, 2] > -0.27))[:, None]
        side = (p[:, :1] < 0).float()
        paint = side * torch.tensor([0.9, 0.2, 0.1]) + (1 - side) * torch.tensor([0.1, 0.3, 0.9])
        return torch.where(on_hill, paint, torch.full((len(p), 3), 0.6))
    info, before, after = _run(field, halves, width=80)  # pixels smaller than voxels, so the edge pins
    c = _centres()
    ridge = before & cone & (c[..., 0].abs() < 2.0 / RES) & (c[..., 2] > -0.2)  # on the edge, off the floor
    surface = ridge & (torch.nn.functional.max_pool3d((~before).float()[None, None], 3, 1, 1)[0, 0] > 0)
    assert surface.sum() >= 20 and after[surface].float().mean() > 0.8
    assert info["removed_fraction"] * RES**3 < (before & cone & (c[..., 2] > -0.2)).sum()  # less than the hill
    # the same hill in one colour: the ridge goes with the rest
    field, cone, _ = _cup_field(hill=True)
    _, _, after_plain = _run(field, _plain_colour)
    assert not after_plain[surface].any()


def _table_with_bump():
    """A table filling the views' lower half-space (z < −0.2) with a half ball of radius 0.4 on it; cameras
    look down at it from above with a narrow field of view, so no ray sees the background: no silhouette
    holds the bump."""
    field = build_field(FIELD, 1.0, torch.Generator().manual_seed(0))
    c = _centres()
    bump = ((c - torch.tensor([0.0, 0.0, -0.2])).norm(dim=-1) < 0.4) & (c[..., 2] >= -0.2)
    with torch.no_grad():
        field.logits.copy_(torch.where((c[..., 2] < -0.2) | bump, 8.0, -8.0))
    poses = []
    for k in range(24):
        el = math.radians((55.0, 70.0, 85.0)[k % 3])
        az = 2 * math.pi * k / 24
        eye = 4.0 * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        poses.append(look_at(eye, target=(0.0, 0.0, -0.2)))
    c2w = torch.from_numpy(np.stack(poses)).float()
    w = 48
    o, d = pixel_rays(c2w, w, w, 0.5 * w / math.tan(0.12))
    return field, bump, o.reshape(-1, 3), d.reshape(-1, 3), w


@pytest.mark.parametrize("shaded", [True, False])
def test_least_area_keeps_a_shaded_bump_that_no_silhouette_holds(shaded):
    """Without a silhouette, a bump on a table of one colour is as consistent with the views as the bare
    table, and the least-area choice removes it. Shaded (Lambertian), the rays that would end on the table
    under it disagree in colour, so it stays."""
    field, bump, o, d, w = _table_with_bump()
    light = torch.tensor([0.4, 0.2, 0.9]) / torch.tensor([0.4, 0.2, 0.9]).norm()

    def shade(p):
        centre = torch.tensor([0.0, 0.0, -0.2])
        on_bump = ((p - centre).norm(dim=-1) < 0.45) & (p[:, 2] > -0.17)
        n = torch.where(on_bump[:, None], (p - centre) / (p - centre).norm(dim=-1, keepdim=True).clamp(min=1e-6),
                        torch.tensor([0.0, 0.0, 1.0]))
        return (0.2 + 0.7 * (n @ light).clamp(min=0))[:, None].expand(-1, 3) if shaded else torch.full((len(p), 3), 0.5)
    col = _colours(field, o, d, shade)
    with torch.no_grad():
        seen = render_rays(field, field.geometry_state(), o, d, near=2.0, far=6.0, n_samples=128, color_samples=1)
    assert (seen["opacity"] > 0.5).all()  # every ray ends on the table or the bump: no background
    before = (field.sdf_grid() > 0).clone()
    info = least_area(field, o, d, col, flat_pixels(col.reshape(-1, w, w, 3)), near=2.0, far=6.0, n_samples=128)
    after = field.sdf_grid() > 0
    kept = float((after & bump).sum() / (before & bump).sum())
    if shaded:
        assert kept > 0.9
    else:
        assert info["removed_fraction"] > 0 and kept < 0.2
    table = _centres()[..., 2] < -0.35
    assert before[table].float().mean() > 0.9 and torch.equal(after[table], before[table])  # the table stays


def test_least_area_is_a_no_op_for_the_plain_density():
    field = build_field(FieldSettings(**{**FIELD.__dict__, "density": "plain"}), 1.0)
    o, d, _ = _views(8)
    assert least_area(field, o, d, torch.ones(len(o), 3), torch.ones(len(o), dtype=torch.bool), near=2.0,
                      far=6.0, n_samples=16) == {"least_area": False}
