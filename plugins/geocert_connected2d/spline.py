"""Bounded monotone rational-quadratic splines on [0, 1] (Durkan et al., "Neural Spline Flows", 2019).

A spline with K bins is defined by K bin widths, K bin heights (both positive, each summing to 1) and the
derivatives at the K - 1 interior knots (positive). The derivatives at the two end knots are fixed to 1, so
the map is the identity outside [0, 1] and the whole map R → R is a C¹ increasing bijection that sends
[0, 1] onto [0, 1] (the end knots are fixed points). Used as the element-wise transform of a coupling layer,
it makes a flow that maps the unit square onto itself.

Shapes: ``x`` is ``[B]``; the raw parameters are ``[B, 3K - 1]`` (K width logits, K height logits,
K - 1 derivative pre-activations), one spline per element of ``x``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "spline_params",
    "rq_spline_forward",
    "rq_spline_inverse",
    "rq_spline_forward_reference",
    "MIN_BIN",
    "MIN_DERIVATIVE",
]

MIN_BIN = 1e-3
"""Smallest bin width / height (as a fraction of [0, 1])."""
MIN_DERIVATIVE = 1e-3
"""Smallest knot derivative."""
_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_ONE) == 1


def spline_params(raw: torch.Tensor, num_bins: int, min_bin: float = MIN_BIN,
                  min_derivative: float = MIN_DERIVATIVE) -> tuple[torch.Tensor, ...]:
    """Turn raw parameters ``[B, 3K - 1]`` into knots and derivatives.

    Returns ``(xk, yk, dk)``: knot abscissae ``[B, K + 1]`` and ordinates ``[B, K + 1]`` (both running from
    exactly 0 to exactly 1, strictly increasing) and knot derivatives ``[B, K + 1]`` (end values 1).
    Zero raw parameters give the identity map (equal bins, all derivatives 1). ``min_bin`` (a fraction of
    [0, 1], < 1/K) and ``min_derivative`` (< 1) bound how much one spline can compress or stretch: slopes lie
    within [min_derivative, 1/min_bin]-ish, so larger values regularise the flow.
    """
    K = num_bins
    if not (0.0 < min_bin * K < 1.0 and 0.0 < min_derivative < 1.0):
        raise ValueError(f"need 0 < min_bin < 1/{K} and 0 < min_derivative < 1")
    if raw.shape[-1] != 3 * K - 1:
        raise ValueError(f"expected {3 * K - 1} spline parameters for {K} bins, got {raw.shape[-1]}")
    uw, uh, ud = raw[..., :K], raw[..., K:2 * K], raw[..., 2 * K:]

    def knots(u: torch.Tensor) -> torch.Tensor:
        w = min_bin + (1.0 - min_bin * K) * torch.softmax(u, dim=-1)
        c = torch.cumsum(w, dim=-1)
        zero = torch.zeros_like(c[..., :1])
        c = torch.cat([zero, c], dim=-1)
        # pin the end knots to exactly 0 and 1 (cumsum rounding must not move them)
        return torch.cat([zero, c[..., 1:-1], torch.ones_like(zero)], dim=-1)

    xk, yk = knots(uw), knots(uh)
    inner = min_derivative + (1.0 - min_derivative) * F.softplus(ud + _SOFTPLUS_ONE)
    one = torch.ones_like(inner[..., :1])
    dk = torch.cat([one, inner, one], dim=-1)
    return xk, yk, dk


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.gather(-1, idx[..., None])[..., 0]


def _bin_index(knots: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Index k of the bin [knots[k], knots[k+1]) holding v, clamped to [0, K - 1]."""
    K = knots.shape[-1] - 1
    idx = (v[..., None] >= knots[..., 1:-1]).sum(dim=-1)
    return idx.clamp(0, K - 1)


def rq_spline_forward(x: torch.Tensor, raw: torch.Tensor, num_bins: int, min_bin: float = MIN_BIN,
                      min_derivative: float = MIN_DERIVATIVE) -> torch.Tensor:
    """y = s(x) for ``x: [B]`` with spline parameters ``raw: [B, 3K - 1]``; identity outside [0, 1]."""
    xk, yk, dk = spline_params(raw, num_bins, min_bin, min_derivative)
    inside = (x >= 0.0) & (x <= 1.0)
    xc = x.clamp(0.0, 1.0)
    k = _bin_index(xk, xc)
    x0, x1 = _gather(xk, k), _gather(xk, k + 1)
    y0, y1 = _gather(yk, k), _gather(yk, k + 1)
    d0, d1 = _gather(dk, k), _gather(dk, k + 1)
    w, h = x1 - x0, y1 - y0
    s = h / w
    xi = ((xc - x0) / w).clamp(0.0, 1.0)
    t = xi * (1.0 - xi)
    y = y0 + h * (s * xi * xi + d0 * t) / (s + (d0 + d1 - 2.0 * s) * t)
    return torch.where(inside, y, x)


def rq_spline_inverse(y: torch.Tensor, raw: torch.Tensor, num_bins: int, min_bin: float = MIN_BIN,
                      min_derivative: float = MIN_DERIVATIVE) -> torch.Tensor:
    """x = s⁻¹(y) for ``y: [B]`` (closed-form root of the bin's quadratic); identity outside [0, 1]."""
    xk, yk, dk = spline_params(raw, num_bins, min_bin, min_derivative)
    inside = (y >= 0.0) & (y <= 1.0)
    yc = y.clamp(0.0, 1.0)
    k = _bin_index(yk, yc)
    x0, x1 = _gather(xk, k), _gather(xk, k + 1)
    y0, y1 = _gather(yk, k), _gather(yk, k + 1)
    d0, d1 = _gather(dk, k), _gather(dk, k + 1)
    w, h = x1 - x0, y1 - y0
    s = h / w
    dy = yc - y0
    m = d0 + d1 - 2.0 * s
    a = h * (s - d0) + dy * m
    b = h * d0 - dy * m
    c = -s * dy
    disc = (b * b - 4.0 * a * c).clamp_min(0.0)
    # the numerically stable root: xi = 2c / (-b - sqrt(disc)); denominator is < 0 since b > 0 here
    xi = (2.0 * c) / (-b - torch.sqrt(disc))
    x = x0 + xi.clamp(0.0, 1.0) * w
    return torch.where(inside, x, y)


def rq_spline_forward_reference(x: float, widths: list[float], heights: list[float],
                                derivatives: list[float]) -> float:
    """Slow scalar reference of the forward map from explicit bin widths, heights and knot derivatives.

    ``widths`` and ``heights`` have K entries summing to 1, ``derivatives`` K + 1 entries. Loops over bins.
    """
    if x < 0.0 or x > 1.0:
        return x
    xl, yl = 0.0, 0.0
    for k in range(len(widths)):
        xr, yr = xl + widths[k], yl + heights[k]
        if x <= xr or k == len(widths) - 1:
            s = heights[k] / widths[k]
            xi = min(max((x - xl) / widths[k], 0.0), 1.0)
            num = heights[k] * (s * xi**2 + derivatives[k] * xi * (1 - xi))
            den = s + (derivatives[k + 1] + derivatives[k] - 2 * s) * xi * (1 - xi)
            return yl + num / den
        xl, yl = xr, yr
    raise AssertionError("unreachable")
