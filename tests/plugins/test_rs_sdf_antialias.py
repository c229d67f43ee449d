"""--antialias: rendered views with each pixel as an area (the mean of a 2×2 grid of rays per pixel)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from geocert_rs_sdf.data import Cameras, Split, load_split, pixel_rays
from geocert_rs_sdf.render import render_image, render_rays
from geocert_rs_sdf.scenes import SceneSpec, look_at, make_scene
from geocert_rs_sdf.train import (
    ANTIALIAS_SAMPLES,
    AUTO_FIELD,
    FieldSettings,
    FitSettings,
    build_field,
    edge_rays,
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


def test_auto_sharpness_and_colour_model_per_scene(tmp_path):
    """None (auto): the bundled scene keeps its crisp edge and small colour model, a scene given as DATA gets
    AUTO_FIELD's softer edge and wider colour model; values given on the command line stay."""
    scene = make_scene(tmp_path / "s", SceneSpec(width=16, n_train=2, n_val=1, n_test=1, mesh_res=24))
    split = load_split(scene, "train")
    auto = FieldSettings()
    assert auto.sharpness is None and auto.hidden is None
    for bundled, kind in ((True, "bundled"), (False, "data")):
        fs = resolve_field(auto, split, bundled=bundled)
        assert {k: getattr(fs, k) for k in AUTO_FIELD[kind]} == AUTO_FIELD[kind]
    assert AUTO_FIELD["data"]["sharpness"] == 2 * AUTO_FIELD["bundled"]["sharpness"]
    given = resolve_field(dataclasses.replace(auto, sharpness=0.1, hidden=16), split, bundled=False)
    assert (given.sharpness, given.hidden, given.hash_levels) == (0.1, 16, AUTO_FIELD["data"]["hash_levels"])
    field = build_field(auto, 1.0)  # unresolved: the bundled scene's values
    assert field.sharpness == AUTO_FIELD["bundled"]["sharpness"]
    assert field.mlp[0].out_features == AUTO_FIELD["bundled"]["hidden"]


def _edge_split():
    """A one-view split of the slab's edge whose alpha is the slab's coverage of each pixel (the 8×8-ray mean):
    fractional on the pixels the edge crosses."""
    c2w = torch.from_numpy(look_at(np.array([0.0, -4.0, 0.0]))).float()
    cam = Cameras.pinhole(12.0, 24, 24)
    alpha = render_image(_edge_field(64), 48, 4, c2w, 24, 24, cam)["opacity"][None]
    return Split(images=torch.ones(1, 24, 24, 3), alpha=alpha, c2w=c2w[None], cameras=cam, height=24, width=24,
                 bound=1.0, mesh=None, files=[])


def test_partly_covered_training_pixels_are_drawn_as_the_renders_draw_them():
    """With --antialias on, a training pixel the object covers in part is the mean of the same 2×2 rays that
    render_image draws for it (the loss compares what the renders show); every other pixel is its centre ray."""
    split = _edge_split()
    alpha = split.alpha.reshape(-1)
    field = _edge_field(ANTIALIAS_SAMPLES)
    edge = edge_rays(field, split, alpha, None, "white", "cpu")
    part = (alpha > 0.01) & (alpha < 0.99)
    assert edge is not None and part.sum() >= 6 and len(edge.sub_dirs) == int(part.sum())
    o, d = pixel_rays(split.c2w, 24, 24, split.cameras)
    idx = torch.arange(24 * 24)
    ray_o, ray_d, group = edge.expand(idx, o.reshape(-1, 3), d.reshape(-1, 3))
    assert len(ray_o) == 24 * 24 + 3 * int(part.sum())
    state = field.geometry_state()
    out = render_rays(field, state, ray_o, ray_d, near=field.near, far=field.far, n_samples=48, color_samples=4,
                      skip_grid=field.skip_grid(state))
    opacity = edge.mean(out["opacity"], group, len(idx))
    rgb = edge.mean(out["rgb"], group, len(idx))
    area = render_image(field, 48, 4, split.c2w[0], 24, 24, split.cameras)
    centre = render_image(_edge_field(1), 48, 4, split.c2w[0], 24, 24, split.cameras)
    torch.testing.assert_close(opacity[part], area["opacity"].reshape(-1)[part], atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb[part], area["rgb"].reshape(-1, 3)[part], atol=1e-5, rtol=0)
    torch.testing.assert_close(opacity[~part], centre["opacity"].reshape(-1)[~part], atol=1e-5, rtol=0)
    assert (area["opacity"].reshape(-1)[part] - centre["opacity"].reshape(-1)[part]).abs().max() > 0.1


def test_edge_rays_only_where_renders_draw_areas():
    split = _edge_split()
    alpha = split.alpha.reshape(-1)
    assert edge_rays(_edge_field(1), split, alpha, None, "white", "cpu") is None  # --antialias off
    assert edge_rays(_edge_field(4), split, None, None, "learned", "cpu") is None  # no alpha, no masks
    assert edge_rays(_edge_field(4), split, alpha, None, "random", "cpu") is None  # colours per ray
    assert edge_rays(_edge_field(4), split, (alpha > 0.5).float(), None, "white", "cpu") is None  # binary masks
    valid = torch.zeros_like(alpha, dtype=torch.bool)
    assert edge_rays(_edge_field(4), split, alpha, valid, "white", "cpu") is None  # all masked out


def test_training_does_not_depend_on_antialias_without_partly_covered_pixels(tmp_path):
    """The bundled renderer samples pixel centres, so its alpha is 0 or 1: no pixel is drawn as an area."""
    scene = make_scene(tmp_path / "s", SceneSpec(width=16, n_train=3, n_val=1, n_test=1, mesh_res=24))
    train = load_split(scene, "train")
    assert set(train.alpha.unique().tolist()) <= {0.0, 1.0}
    st = FitSettings(steps=6, rays=64, foreground_fraction=0.0, carve=False)

    def run(antialias: str) -> torch.Tensor:
        fs = dataclasses.replace(TINY, antialias=antialias)
        field = build_field(fs, 1.0, torch.Generator().manual_seed(0))
        fit(field, fs, st, train, progress=False)
        return field.logits.detach().clone()

    torch.testing.assert_close(run("on"), run("off"), atol=0, rtol=0)  # rays through the pixel centres


def test_training_log_counts_lookups_per_ray_marched():
    """The log's lookups and colour queries per ray divide by the rays the step marched, a silhouette pixel's
    2×2 rays included, so they never exceed the samples and colour queries one ray can make."""
    split = _edge_split()
    fs = dataclasses.replace(TINY, antialias="on")
    field = build_field(fs, 1.0, torch.Generator().manual_seed(0))
    out = fit(field, fs, FitSettings(steps=1, rays=64, foreground_fraction=1.0, carve=False), split, progress=False)
    assert edge_rays(field, split, split.alpha.reshape(-1), None, "white", "cpu") is not None
    assert 0 < out["last"]["lookups_per_ray"] <= fs.samples
    assert 0 < out["last"]["color_per_ray"] <= fs.color_samples
