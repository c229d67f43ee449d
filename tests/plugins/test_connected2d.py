import numpy as np
import pytest
import torch
from geocert_connected2d.data import load_scribbles
from geocert_connected2d.model import FICNN, SquareFlow
from geocert_connected2d.spline import rq_spline_forward, rq_spline_forward_reference, spline_params

from geocert.errors import InputError


def test_spline_matches_reference_and_inverts():
    g = torch.Generator().manual_seed(0)
    K = 6
    raw = torch.randn(200, 3 * K - 1, generator=g, dtype=torch.float64)
    x = torch.rand(200, generator=g, dtype=torch.float64)
    y = rq_spline_forward(x, raw, K)
    xk, yk, dk = spline_params(raw, K)
    for i in range(0, 200, 20):
        ref = rq_spline_forward_reference(float(x[i]), (xk[i, 1:] - xk[i, :-1]).tolist(),
                                          (yk[i, 1:] - yk[i, :-1]).tolist(), dk[i].tolist())
        assert abs(ref - float(y[i])) < 1e-12


def test_flow_maps_square_onto_itself_and_round_trips():
    torch.manual_seed(0)
    flow = SquareFlow(4, 8, 16).to(torch.float64)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        xy = torch.rand(4000, 2, dtype=torch.float64)
        z = flow(xy)
        assert z.min() >= 0.0 and z.max() <= 1.0
        assert (flow.inverse(z) - xy).abs().max() < 1e-9


def test_ficnn_is_convex():
    torch.manual_seed(1)
    f = FICNN(2, 32, 3).to(torch.float64)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(torch.randn_like(p))
    f.project()
    a, b = torch.randn(5000, 2, dtype=torch.float64) * 3, torch.randn(5000, 2, dtype=torch.float64) * 3
    with torch.no_grad():
        viol = f((a + b) / 2) - (f(a) + f(b)) / 2
    assert viol.max() <= 1e-6


def test_scribbles_errors(tmp_path):
    import imageio.v3 as iio

    s = np.zeros((8, 8, 3), np.uint8)
    s[1, 1] = (255, 0, 0)
    iio.imwrite(tmp_path / "s.png", s)
    with pytest.raises(InputError, match="no background"):
        load_scribbles(tmp_path / "s.png", (8, 8))
    with pytest.raises(InputError, match="does not match|but the image"):
        load_scribbles(tmp_path / "s.png", (9, 8))
    s[2, 2] = (0, 0, 255)
    iio.imwrite(tmp_path / "s.png", s)
    lab = load_scribbles(tmp_path / "s.png", (8, 8))
    assert lab[1, 1] == 1 and lab[2, 2] == 0 and (lab == -1).sum() == 62
