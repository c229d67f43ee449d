"""--antialias: rendered views with each pixel as an area (the mean of a 2×2 grid of rays per pixel)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from geocert_rs_sdf.data import Cameras, load_split, pixel_rays
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


def test_pixel_rays_offset_moves_the_rays_within_their_pixels():
    cams = Cameras(torch.tensor([[230, 231, 15, 10, -0.05, 0.01, 0.0, 0.002, -0.0015]], dtype=torch.float64))
    c2w = _poses()
    _, centre = pixel_rays(c2w, 20, 30, cams)
    _, same = pixel_rays(c2w, 20, 30, cams, offset=(0.5, 0.5))
    torch.testing.assert_close(same, centre, atol=0, rtol=0)
    _, corner = pixel_rays(c2w, 20, 30, cams, offset=(0.0, 0.0))
    _, next_corner = pixel_rays(c2w, 20, 30, cams, offset=(1.0, 1.0))
    torch.testing.assert_close(next_corner[:, :-1, :-1], corner[:, 1:, 1:], atol=1e-6, rtol=0)  # pixel (i+1, j+1)
    angle = torch.arccos((centre * corner).sum(-1).clamp(max=1.0))  # about half a pixel's diagonal
    assert (angle > 0.5 * math.sqrt(2) / 240).all() and (angle < 0.5 * math.sqrt(2) / 200).all()


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
    assert TINY.antialias == "auto"  # the default
    assert resolve_field(TINY, split, bundled=True).antialias == "off"
    fs = resolve_field(TINY, split, bundled=False)
    assert fs.antialias == "on"
    assert build_field(fs, 1.0).pixel_samples == ANTIALIAS_SAMPLES
    assert build_field(TINY, 1.0).pixel_samples == 1  # "auto" unresolved (a checkpoint from before the option)


def test_training_does_not_depend_on_antialias(tmp_path):
    scene = make_scene(tmp_path / "s", SceneSpec(width=16, n_train=3, n_val=1, n_test=1, mesh_res=24))
    train = load_split(scene, "train")
    st = FitSettings(steps=6, rays=64, foreground_fraction=0.0, carve=False)

    def run(antialias: str) -> torch.Tensor:
        fs = dataclasses.replace(TINY, antialias=antialias)
        field = build_field(fs, 1.0, torch.Generator().manual_seed(0))
        fit(field, fs, st, train, progress=False)
        return field.logits.detach().clone()

    torch.testing.assert_close(run("on"), run("off"), atol=0, rtol=0)  # rays through the pixel centres
