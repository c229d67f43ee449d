"""Space carving of the RS-SDF occupancy (geocert_rs_sdf.carve) and the surface metrics of geocert render."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from geocert_rs_sdf.carve import carve, undecided_fraction, visibility
from geocert_rs_sdf.config import FieldSettings
from geocert_rs_sdf.data import pixel_rays
from geocert_rs_sdf.metrics import mesh_bodies, mesh_quality
from geocert_rs_sdf.scenes import look_at
from geocert_rs_sdf.train import build_field, load_checkpoint, save_checkpoint

RES = 24
FIELD = FieldSettings(grid_res=RES, samples=96, color_samples=4, hash_levels=2, hash_log2=8, hash_max_res=8,
                      hidden=8, sigma=1.0, sharpness=0.05)


def _centres(field) -> torch.Tensor:
    lin = -field.bound + (torch.arange(RES) + 0.5) * field.voxel
    return torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1)


def _shell_field(open_top: bool):
    """A ball of radius 0.6 whose shell (0.45 < r < 0.6) is decided inside, the ball's interior undecided
    (logit 0, p̂ = ½: what training leaves behind a surface) and the outside decided outside; with
    ``open_top`` the shell and interior are cut away above z = 0.3 (a cup: its cavity open to the sky)."""
    field = build_field(FIELD, 1.0, torch.Generator().manual_seed(0))
    c = _centres(field)
    r = c.norm(dim=-1)
    logits = torch.full((RES,) * 3, -8.0)
    logits[r < 0.6] = 8.0
    logits[r < 0.45] = 0.0
    if open_top:
        logits[(r < 0.6) & (c[..., 2] > 0.3)] = -8.0
        logits[(r < 0.45) & (c[..., 2] > -0.25)] = -1.5  # the cavity is (faintly) empty: p̂ = 0.18
    with torch.no_grad():
        field.logits.copy_(logits)
    return field, c


def _rays(views: int = 24, width: int = 32, elevations=(-10.0, 20.0, 50.0, 80.0)):
    poses = []
    for k in range(views):
        el = math.radians(elevations[k % len(elevations)])
        az = 2 * math.pi * k / views
        eye = 4.0 * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        poses.append(look_at(eye))
    c2w = torch.from_numpy(np.stack(poses)).float()
    o, d = pixel_rays(c2w, width, width, 0.5 * width / math.tan(0.35))
    return o.reshape(-1, 3), d.reshape(-1, 3)


def test_carving_fills_what_no_camera_sees_and_decides_everything():
    field, c = _shell_field(open_top=False)
    o, d = _rays()
    r = c.norm(dim=-1)
    sdf_before = field.sdf_grid()
    assert undecided_fraction(field) > 0.02  # the interior is undecided before
    info = carve(field, o, d, near=2.0, far=6.0, n_samples=96)
    assert info["carved"] and info["hidden_fraction"] > 0
    deep = r < 0.3
    assert (field.fixed[deep] == 1).all()  # the interior is hidden from every camera: fixed inside
    assert (field.fixed[r > 0.75] <= 0).all()  # outside is never filled
    assert undecided_fraction(field) == 0.0
    sdf = field.sdf_grid()
    assert (sdf[deep] > 0).all() and (sdf[r > 0.75] < 0).all()  # positive well inside, negative well outside
    assert float(sdf[deep].min()) > float(sdf_before[deep].max())
    # the surface stays where it was: the zero level on the x axis between the old shell's voxels
    line = sdf[:, RES // 2, RES // 2]
    xs = c[:, RES // 2, RES // 2, 0]
    assert ((line > 0) == (xs.abs() < 0.6 + field.voxel)).float().mean() > 0.9


def test_carving_keeps_a_cavity_a_camera_looks_into():
    field, c = _shell_field(open_top=True)
    o, d = _rays()
    carve(field, o, d, near=2.0, far=6.0, n_samples=96)
    r = c.norm(dim=-1)
    cavity = (r < 0.35) & (c[..., 2] > 0.0)
    assert cavity.any() and (field.fixed[cavity] != 1).all()  # seen from above: not filled
    assert (field.sdf_grid()[cavity] < 0).all()


def test_unseen_space_is_fixed_outside_and_fixed_voxels_stay_fixed(tmp_path):
    field, c = _shell_field(open_top=False)
    o, d = _rays(views=6, elevations=(0.0,))
    keep = torch.zeros(o.shape[0], dtype=torch.bool)
    keep[: o.shape[0] // 6] = True  # one camera only: most of the box is outside its frustum
    reached, free = visibility(field, field.geometry_state(), o[keep], d[keep], near=2.0, far=6.0, n_samples=96)
    assert (free <= reached).all() and not reached.all()
    carve(field, o[keep], d[keep], near=2.0, far=6.0, n_samples=96)
    assert (field.fixed[~reached] == -1).all()
    fixed = field.fixed.clone()
    with torch.no_grad():
        field.logits.fill_(0.0)
    p = field.base_occupancy()
    assert (p[fixed == 1] == 1).all() and (p[fixed == -1] == 0).all() and (p[fixed == 0] == 0.5).all()
    path = save_checkpoint(tmp_path / "c.pt", field, FIELD, __import__("geocert_rs_sdf.config").config.FitSettings(),
                           0)
    loaded, *_ = load_checkpoint(path)
    assert torch.equal(loaded.fixed, fixed)
    # checkpoints written before carving (no "fixed" in the state) still load, with nothing fixed
    data = torch.load(path, weights_only=False)
    del data["model"]["fixed"]
    torch.save(data, tmp_path / "old.pt")
    old, *_ = load_checkpoint(tmp_path / "old.pt")
    assert not old.fixed.any()


def test_plain_density_is_not_carved():
    field = build_field(FieldSettings(**{**FIELD.__dict__, "density": "plain"}), 1.0)
    o, d = _rays(views=2)
    assert carve(field, o, d, near=2.0, far=6.0, n_samples=32) == {"carved": False}


def _sphere(radius: float, centre=(0.0, 0.0, 0.0)):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    return np.asarray(m.vertices) + np.asarray(centre), np.asarray(m.faces)


def test_mesh_quality_and_bodies():
    v, f = _sphere(1.0)
    same = mesh_quality(v, f, v, f, 4000, 0)
    assert same["l1"] < 1e-6 and same["bodies"] == 1 and same["beyond_2pct"] == 0.0
    assert same["object_size"] == pytest.approx(2 * math.sqrt(3), rel=0.01)
    # a concentric sphere 0.1 smaller: every predicted point is 0.1 away (2.9 % of the size 3.46)
    v2, f2 = _sphere(0.9)
    q = mesh_quality(v2, f2, v, f, 4000, 0)
    assert q["accuracy"] == pytest.approx(0.1, abs=0.003) and q["completeness"] == pytest.approx(0.1, abs=0.003)
    assert q["beyond_2pct"] == 1.0 and q["l2"] == pytest.approx(0.01, rel=0.06)
    # the sphere plus a small floater far away: two bodies, the floater's area share, all of it beyond 2 %
    vf, ff = _sphere(0.1, (3.0, 0.0, 0.0))
    both_v = np.concatenate([v, vf])
    both_f = np.concatenate([f, ff + len(v)])
    q = mesh_quality(both_v, both_f, v, f, 8000, 0)
    share = 0.01 / 1.01
    assert q["bodies"] == 2 and q["body_areas"][1] == pytest.approx(share, rel=0.02)
    assert q["beyond_2pct"] == pytest.approx(share, abs=0.005)
    assert mesh_bodies(both_f) == pytest.approx([len(f) / len(both_f), len(ff) / len(both_f)])
