"""--antialias: pixels as areas (training rays through random points of their pixel, views rendered as the mean of a
2×2 grid of rays per pixel)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from geocert_rs_sdf.data import Cameras, load_split, pixel_rays, rays_at
from geocert_rs_sdf.render import render_image, render_rays
from geocert_rs_sdf.scenes import SceneSpec, look_at, make_scene
from geocert_rs_sdf.train import (
    ANTIALIAS_SAMPLES,
    FieldSettings,
    FitSettings,
    build_field,
    fit,
    resolve_field,
)

torch.set_num_threads(1)

TINY = FieldSettings(grid_res=16, sharpness=0.05, hash_levels=2, hash_log2=8, hash_max_res=16, hidden=8, samples=48,
                     color_samples=4)


def _poses() -> torch.Tensor:
    return torch.from_numpy(np.stack([look_at(np.array([3.0, 1.0, 2.0])), look_at(np.array([-2.0, 3.0, 1.0]))])).float()


@pytest.mark.parametrize("distorted", [False, True])
def test_rays_at_is_pixel_rays_anywhere_in_the_pixel(distorted):
    k = [-0.05, 0.01, 0.0, 0.002, -0.0015] if distorted else [0.0] * 5
    cams = Cameras(torch.tensor([[230, 231, 106, 96, *k], [200, 200, 50, 60, *k]], dtype=torch.float64))
    c2w = _poses()
    view, j, i = torch.tensor([0, 1, 1, 0]), torch.tensor([3, 50, 119, 0]), torch.tensor([7, 99, 0, 40])
    for offset in ((0.5, 0.5), (0.25, 0.75), (0.0, 0.999)):
        o, d = pixel_rays(c2w, 120, 100, cams, offset=offset)
        o2, d2 = rays_at(c2w, cams, view, i + offset[0], j + offset[1])
        torch.testing.assert_close(d2, d[view, j, i], atol=1e-6, rtol=0)
        torch.testing.assert_close(o2, o[view, j, i])
    # a ray through the pixel's corner differs from the centre's by about half a pixel's angle
    _, dc = rays_at(c2w, cams, view, i + 0.5, j + 0.5)
    _, d0 = rays_at(c2w, cams, view, i + 0.0, j + 0.0)
    angle = torch.arccos((dc * d0).sum(-1).clamp(max=1.0))
    assert (angle > 0.3 * math.sqrt(2) / 230).all() and (angle < 1.5 * math.sqrt(2) / 200).all()


def _edge_field(pixel_samples: int):
    """A field whose occupancy is a slab x < 0.1 (a sharp vertical edge in a frontal view), grey everywhere."""
    field = build_field(TINY, 1.0, torch.Generator().manual_seed(0), init_sharpness=TINY.sharpness)
    lin = -1 + (torch.arange(16) + 0.5) * (2 / 16)
    x = lin[:, None, None].expand(16, 16, 16)
    with torch.no_grad():
        field.logits.copy_(torch.where(x < 0.1, 8.0, -8.0))
    field.pixel_samples = pixel_samples
    return field


def test_antialiased_views_are_the_mean_over_the_pixel_and_closer_to_a_supersampled_image():
    c2w = torch.from_numpy(look_at(np.array([0.0, -4.0, 0.0]))).float()
    cam = Cameras.pinhole(12.0, 24, 24)  # pixels 1/3 of a scene unit wide at the edge: wider than its blur
    renders = {k: render_image(_edge_field(k), 48, 4, c2w, 24, 24, cam)["opacity"] for k in (1, 4, 64)}
    # the 2×2 render is the mean of the four offset renders
    one = _edge_field(1)
    parts = []
    for offset in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        o, d = pixel_rays(c2w[None], 24, 24, cam, offset=offset)


        state = one.geometry_state()
        parts.append(render_rays(one, state, o.reshape(-1, 3), d.reshape(-1, 3), near=one.near, far=one.far,
                                 n_samples=48, color_samples=4, skip_grid=one.skip_grid(state))["opacity"].reshape(24, 24))
    torch.testing.assert_close(renders[4], torch.stack(parts).mean(0), atol=1e-5, rtol=0)
    # against an 8×8-supersampled image of the edge, the 2×2 mean errs less than one ray at the centre
    err = {k: float((renders[k] - renders[64]).abs().sum()) for k in (1, 4)}
    assert err[4] < 0.3 * err[1]
    edge = (renders[64] > 0.05) & (renders[64] < 0.95)
    assert edge.any()  # the edge crosses pixels


def test_auto_is_off_for_the_bundled_scene_and_on_for_data(tmp_path):
    scene = make_scene(tmp_path / "s", SceneSpec(width=16, n_train=2, n_val=1, n_test=1, mesh_res=24))
    split = load_split(scene, "train")
    assert resolve_field(TINY, split, bundled=True).antialias == "off"
    fs = resolve_field(TINY, split, bundled=False)
    assert fs.antialias == "on"
    assert build_field(fs, 1.0).pixel_samples == ANTIALIAS_SAMPLES
    assert build_field(TINY, 1.0).pixel_samples == 1  # "auto" (a checkpoint written before the option): off


def test_training_with_antialias_is_seeded_and_uses_rays_off_the_centres(tmp_path):
    scene = make_scene(tmp_path / "s", SceneSpec(width=16, n_train=3, n_val=1, n_test=1, mesh_res=24))
    train = load_split(scene, "train")
    st = FitSettings(steps=6, rays=64, foreground_fraction=0.0, carve=False)

    def run(antialias: str) -> torch.Tensor:
        fs = dataclasses.replace(TINY, antialias=antialias)
        field = build_field(fs, 1.0, torch.Generator().manual_seed(0))
        fit(field, fs, st, train, progress=False)
        return field.logits.detach().clone()

    on = run("on")
    torch.testing.assert_close(run("on"), on, atol=0, rtol=0)  # same seed, same weights
    assert not torch.equal(on, run("off"))  # the jittered rays are other rays
