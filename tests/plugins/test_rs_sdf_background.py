"""Tests of the learned background (``background.py``): the contraction, inverse-CDF sampling, the volume's
shapes, gradients and seeded reproducibility, the skipping of rays behind an opaque object, the checkpoint
round trip (also of a checkpoint of the sky MLP alone), and a short fit on a textured ground plane that the
volume learns much better than the sky MLP alone."""

from __future__ import annotations

import math

import pytest
import torch
from geocert_rs_sdf import background as bgm
from geocert_rs_sdf.background import Background, contract, sample_pdf

torch.set_num_threads(1)

RADIUS = 8.0  # the sky sphere: twice the farthest camera's distance (4), the contraction's unit


def _rays(n: int, seed: int, dist: float = 3.5, elev=(0.25, 0.9)) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays ``[n, 3]`` from cameras on a sphere of radius ``dist`` (elevations in ``elev`` radians) through
    points near the origin."""
    g = torch.Generator().manual_seed(seed)
    az = torch.rand(n, generator=g) * 2 * math.pi
    el = elev[0] + torch.rand(n, generator=g) * (elev[1] - elev[0])
    o = dist * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], -1)
    target = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([4.0, 4.0, 1.0])
    return o, torch.nn.functional.normalize(target - o, dim=-1)


def test_contract_keeps_the_unit_cube_and_maps_space_into_the_shell():
    x = torch.tensor([[0.5, -0.9, 0.2], [3.0, 0.0, 0.0], [1e6, 2e5, -3e5], [2.0, 2.0, 1.0]])
    c = contract(x, 2.0)
    assert torch.allclose(c[0], x[0] / 2.0)  # inside the cube ‖x/scale‖∞ ≤ 1: unchanged (scaled)
    assert torch.allclose(c[1], torch.tensor([2.0 - 1.0 / 1.5, 0.0, 0.0]))
    assert c.abs().max() < 2.0 and c[2].abs().max() > 1.999 and torch.allclose(c[3], x[3] / 2.0)
    edge = contract(torch.tensor([[2.0 + 1e-6, 0.3, 0.0], [2.0 - 1e-6, 0.3, 0.0]]), 2.0)  # continuous at the wall
    assert torch.allclose(edge[0], edge[1], atol=1e-5)


def test_sample_pdf_draws_the_quantiles_of_the_weights():
    edges = torch.tensor([[0.0, 1.0, 2.0, 4.0]])
    weights = torch.tensor([[0.0, 1.0, 3.0]])
    u = torch.linspace(0.01, 0.99, 25)[None]
    s = sample_pdf(edges, weights, u)
    assert bool((s[:, 1:] >= s[:, :-1]).all()) and float(s.min()) >= 0.0 and float(s.max()) <= 4.0
    # the CDF of the piecewise-constant density (weights + 1e-5 per bin) at each sample gives back u
    w = weights + 1e-5
    cdf = torch.cat([torch.zeros(1, 1), torch.cumsum(w, -1)], -1) / w.sum()
    i = torch.searchsorted(edges[0], s[0], right=True).clamp(1, 3) - 1
    back = cdf[0, i] + (s[0] - edges[0, i]) / (edges[0, i + 1] - edges[0, i]) * w[0, i] / w.sum()
    assert torch.allclose(back, u[0], atol=1e-5)
    assert float((s < 1.0).float().mean()) == 0.0  # the empty bin gets no sample


def test_learned_background_shapes_gradients_and_seeds():
    o, d = _rays(64, 0)
    bg = Background("learned", RADIUS, generator=torch.Generator().manual_seed(0))
    assert bg.volume and float(bg.scale) == RADIUS / bgm.RADIUS_FACTOR
    col = bg(o, d, training=True, generator=torch.Generator().manual_seed(1))
    assert col.shape == (64, 3) and bool(((col > 0) & (col < 1)).all())
    col.sum().backward()
    for name, p in bg.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name  # the volume, its colour and the sky
    again = bg(o, d, training=True, generator=torch.Generator().manual_seed(1))
    other = bg(o, d, training=True, generator=torch.Generator().manual_seed(2))
    assert torch.equal(col, again) and not torch.equal(col, other)  # the jitter comes from the generator
    assert torch.equal(bg(o, d), bg(o, d))  # rendering is deterministic
    twin = Background("learned", RADIUS, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(twin.state_dict().values(), bg.state_dict().values(), strict=True))
    out = bg.render_volume(o, d)
    assert out["rgb"].shape == (64, 3) and bool(((out["opacity"] >= 0) & (out["opacity"] <= 1)).all())
    assert bool((out["depth"] > 0).all()) and bg.parameters_to_train()


def test_rays_behind_an_opaque_object_get_the_sky_alone():
    o, d = _rays(32, 3)
    bg = Background("learned", RADIUS, generator=torch.Generator().manual_seed(0))
    opacity = torch.zeros(32)
    opacity[::2] = 1.0
    full, skipped = bg(o, d), bg(o, d, opacity)
    sky = Background("learned", RADIUS, generator=torch.Generator().manual_seed(0))
    sky.volume = False
    assert torch.allclose(skipped[1::2], full[1::2], atol=1e-6)  # rays the object lets through: unchanged
    assert torch.allclose(skipped[::2], sky(o, d)[::2])
    assert Background("white")(o, d, opacity) == 1.0


def test_checkpoint_round_trip_and_a_sky_only_checkpoint():
    o, d = _rays(16, 4)
    bg = Background("learned", RADIUS, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        bg.density.add_(0.3 * torch.randn(bg.density.shape, generator=torch.Generator().manual_seed(5)))
    back = Background("learned", 1.0)
    back.load_state_dict(bg.state_dict())
    assert back.volume and float(back.radius) == RADIUS and torch.equal(back(o, d), bg(o, d))
    # a checkpoint written before the volume: the radius and the sky MLP only -> loads as the sky alone
    old = {k: v for k, v in bg.state_dict().items() if k == "radius" or k.startswith("mlp.")}
    legacy = Background("learned", 1.0)
    legacy.load_state_dict(old)
    assert not legacy.volume and set(legacy.state_dict()) == set(old)
    sky = torch.sigmoid(bg.mlp(torch.cat([bgm.fourier(bgm.sphere_exit(o, d, RADIUS)),
                                          bgm.fourier(d, bgm.DIR_FREQUENCIES)], -1)))
    assert torch.allclose(legacy(o, d), sky)
    with pytest.raises(RuntimeError, match="Missing key"):  # a volume without its sky is damaged, not old
        Background("learned", 1.0).load_state_dict({k: v for k, v in bg.state_dict().items()
                                                     if not k.startswith("mlp.")})


def _ground_scene(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Colours ``[R, 3]`` of a checkerboard disc (radius 2.5, squares of 0.5) on z = 0 under a sky."""
    t = -o[:, 2] / d[:, 2].clamp(max=-1e-6)
    p = o + t[:, None] * d
    hit = (d[:, 2] < 0) & (p[:, :2].norm(dim=-1) < 2.5)
    check = ((torch.floor(p[:, 0] / 0.5) + torch.floor(p[:, 1] / 0.5)) % 2)[:, None]
    ground = check * torch.tensor([0.85, 0.85, 0.8]) + (1 - check) * torch.tensor([0.2, 0.45, 0.4])
    up = d[:, 2:3].clamp(min=0)
    sky = (1 - up) * torch.tensor([0.9, 0.85, 0.75]) + up * torch.tensor([0.3, 0.5, 0.9])
    return torch.where(hit[:, None], ground, sky)


def _fit_psnr(volume: bool, steps: int = 150, rays: int = 512) -> float:
    g = torch.Generator().manual_seed(0)
    bg = Background("learned", RADIUS, generator=g)
    bg.volume = volume
    opt = torch.optim.Adam(bg.parameters(), lr=1e-2, eps=1e-15, betas=(0.9, 0.99))
    o_tr, d_tr = _rays(steps * rays, 10)
    target = _ground_scene(o_tr, d_tr)
    for s in range(steps):
        sl = slice(s * rays, (s + 1) * rays)
        loss = ((bg(o_tr[sl], d_tr[sl], training=True, generator=g) - target[sl]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    o, d = _rays(4000, 11)  # other cameras
    with torch.no_grad():
        mse = ((bg(o, d) - _ground_scene(o, d)) ** 2).mean()
    return float(-10 * torch.log10(mse))


def test_the_volume_learns_a_textured_ground_that_the_sky_alone_blurs():
    sky_only, volume = _fit_psnr(False), _fit_psnr(True)
    assert volume > sky_only + 3.0, (volume, sky_only)


def test_a_sky_only_train_nerf_checkpoint_loads_and_renders_as_before(tmp_path):
    import dataclasses

    from geocert_rs_sdf.render import render_image
    from geocert_rs_sdf.train import FitSettings, build_field, load_checkpoint, save_checkpoint
    from test_rs_sdf_nerf import TINY_FIELD

    fs = dataclasses.replace(TINY_FIELD, background="learned")
    field = build_field(fs, 1.0, torch.Generator().manual_seed(0), near=2.0, far=6.0, background_radius=RADIUS)
    path = save_checkpoint(tmp_path / "c.pt", field, fs, FitSettings(steps=1), 1)
    data = torch.load(path, weights_only=False)  # as written before the volume: the sky MLP's keys only
    data["model"] = {k: v for k, v in data["model"].items() if not k.startswith("background_model.")
                     or k == "background_model.radius" or k.startswith("background_model.mlp.")}
    torch.save(data, path)
    back, fs_back, _, _ = load_checkpoint(path)
    assert fs_back.background == "learned" and not back.background_model.volume
    field.background_model.volume = False  # the same sky alone
    c2w = torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, -4], [0, 1, 0, 0.5], [0, 0, 0, 1]])
    a = render_image(field, 32, 4, c2w, 6, 6, 8.0)["rgb"]
    b = render_image(back, 32, 4, c2w, 6, 6, 8.0)["rgb"]
    assert torch.equal(a, b)
