"""geocert.smoothing: exact Gaussian blur properties, RS-SDF recovery, fast path vs reference."""

import math

import numpy as np
import pytest
import torch

from geocert.smoothing import (
    gaussian_blur,
    gaussian_blur_reference,
    gaussian_taps,
    sample_counts,
    sdf_from_probability,
    smooth_occupancy,
)


def phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2))


@pytest.mark.parametrize("sigma", [0.6, 1.0, 2.5])
def test_half_space_blurs_to_phi_and_sdf_recovers_distance(sigma):
    # occupied for x < 20 (boundary on a voxel face); voxel centre i + 0.5 has signed distance 20 − (i + 0.5)
    occ = torch.zeros(40, 8, 8, dtype=torch.float64)
    occ[:20] = 1.0
    p = gaussian_blur(occ, sigma)
    d = 20.0 - (torch.arange(40, dtype=torch.float64) + 0.5)
    expect = torch.tensor([phi(v / sigma) for v in d.tolist()], dtype=torch.float64)
    # exact up to the truncated tail mass Φ(−4) at the default truncate=4, and to 1e-12 with a long kernel
    torch.testing.assert_close(p[:, 4, 4], expect, atol=4e-5, rtol=0)
    torch.testing.assert_close(gaussian_blur(occ, sigma, truncate=9.0)[:, 4, 4], expect, atol=1e-12, rtol=0)
    sdf = sdf_from_probability(p, sigma)[:, 4, 4]
    band = d.abs() < 2.5 * sigma
    assert (sdf[band] - d[band]).abs().max() < 0.05


def _oblique_error(sigma: float, size: int = 64, s: int = 8) -> float:
    normal = torch.tensor([0.8, 0.6], dtype=torch.float64)
    c = (torch.arange(size * s, dtype=torch.float64) + 0.5) / s
    xx, yy = torch.meshgrid(c, c, indexing="ij")
    occ = ((xx * normal[0] + yy * normal[1]) < 0.6 * size).double().reshape(size, s, size, s).mean((1, 3))
    ctr = torch.arange(size, dtype=torch.float64) + 0.5
    cx, cy = torch.meshgrid(ctr, ctr, indexing="ij")
    d = 0.6 * size - (cx * normal[0] + cy * normal[1])
    sdf = sdf_from_probability(gaussian_blur(occ, sigma), sigma)
    mask = d.abs() < 2 * sigma
    b = int(5 * sigma)
    mask[:b], mask[-b:], mask[:, :b], mask[:, -b:] = False, False, False, False
    assert mask.sum() > 50
    return float((sdf - d)[mask].abs().max())


def test_oblique_half_space_error_is_partial_volume_and_shrinks_with_resolution():
    # an oblique plane cannot be represented exactly by voxels (partial-volume occupancy): the recovered
    # distance is off by a bounded amount that shrinks as σ spans more voxels
    coarse, fine = _oblique_error(1.5), _oblique_error(3.0)
    assert coarse < 0.12
    assert fine < 0.6 * coarse


def test_sigma_to_zero_is_identity():
    g = torch.rand(6, 7, 5)
    assert torch.equal(gaussian_blur(g, 0.0), g)
    torch.testing.assert_close(gaussian_blur(g, 1e-3), g, atol=1e-6, rtol=0)
    assert gaussian_taps(0.0).tolist() == [1.0]


def test_mass_is_kept():
    g = torch.zeros(32, 32, 32, dtype=torch.float64)
    g[10:20, 12:18, 14:16] = torch.rand(10, 6, 2, dtype=torch.float64)
    out = gaussian_blur(g, 1.7, mode="constant")
    assert out.sum().item() == pytest.approx(g.sum().item(), rel=1e-12)
    assert gaussian_taps(2.3).sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("shape,sigma,mode", [((5, 6, 4), 1.3, "replicate"), ((7, 9), 0.8, "constant"), ((6, 5), 2.0, "replicate"), ((5, 4, 3), 1.0, "constant")])
def test_matches_dense_reference(shape, sigma, mode):
    g = torch.rand(shape, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(g, sigma, mode=mode), gaussian_blur_reference(g, sigma, mode=mode))


def test_batch_and_channel_dims_and_anisotropic_sigma():
    g = torch.rand(2, 3, 10, 11, dtype=torch.float64)
    out = gaussian_blur(g, (1.0, 0.0), spatial_dims=2)
    assert out.shape == g.shape
    torch.testing.assert_close(out[1, 2], gaussian_blur(g[1, 2], (1.0, 0.0)))
    # σ = 0 on the last axis: each column is blurred on its own
    col = g[..., :, 3]
    torch.testing.assert_close(out[..., :, 3], gaussian_blur(col, 1.0, spatial_dims=1))
    with pytest.raises(ValueError, match="spatial_dims"):
        gaussian_blur(g, 1.0)


def test_gradients_flow():
    g = torch.rand(5, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sdf_from_probability(smooth_occupancy(t, 0.9) * 0.8 + 0.1, 0.9), (g,))
    p = torch.tensor([0.0, 1.0, 0.5], requires_grad=True)
    s = sdf_from_probability(p, 2.0)
    s.sum().backward()
    assert torch.isfinite(s).all() and torch.isfinite(p.grad).all()
    assert s[2].item() == 0.0 and s[0] < 0 < s[1]


def test_blur_matches_scipy_away_from_cell_model():
    # for large σ the cell-integrated taps approach sampled Gaussian taps (scipy's), so results agree closely
    from scipy.ndimage import gaussian_filter

    g = np.random.default_rng(0).random((30, 30))
    ours = gaussian_blur(torch.from_numpy(g), 4.0, mode="replicate").numpy()
    ref = gaussian_filter(g, math.sqrt(4.0**2 + 1 / 12), mode="nearest", truncate=4.0)
    assert np.abs(ours - ref)[8:-8, 8:-8].max() < 2e-3


@pytest.mark.parametrize("mode,value", [("replicate", 0.0), ("constant", 0.0), ("constant", 0.7)])
def test_matrix_path_matches_shift_path(mode, value):
    from geocert.smoothing import _blur_axis_shifts, blur_matrix  # noqa: F401

    g = torch.rand(3, 12, 9, 10, dtype=torch.float64)
    taps = gaussian_taps(1.7, dtype=torch.float64)
    from geocert import smoothing

    for dim in (1, 2, 3):
        fast = smoothing._blur_axis(g, dim, taps, mode, value)
        slow = _blur_axis_shifts(g, dim, taps, mode, value)
        torch.testing.assert_close(fast, slow)


def test_sample_counts_closes_its_progress_bar_when_the_model_fails(monkeypatch):
    import tqdm.auto

    bars = []

    class Bar:
        def __init__(self, *args, **kwargs):
            self.closed = False
            bars.append(self)

        def update(self, k):
            pass

        def close(self):
            self.closed = True

    def failing(batch):
        raise RuntimeError("model broke")

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    with pytest.raises(RuntimeError, match="model broke"):
        sample_counts(failing, torch.zeros(3), sigma=1.0, n=10, num_classes=2, progress=True)
    assert len(bars) == 1 and bars[0].closed
