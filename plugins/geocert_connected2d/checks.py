"""The guarantee's checks of ``geocert segment2d``: connectivity of the mask and the model's own properties.

The predicted foreground is {x ∈ [0,1]² : h(g(x)) ≤ 0} (h = the FICNN score times the temperature, g = the
square flow; with ``--model ficnn`` g is the identity); the mask marks the pixels whose centre lies in it.
Checks written to metrics.json (see :func:`connectivity_checks` and :func:`model_checks`):

- connected components of the pixel mask (4- and 8-connectivity) and of the same set sampled on a grid
  ``check_grid`` times finer (sub-pixel filaments show up there);
- every extra pixel component is joined to the largest one by the certified path g⁻¹((1-t)g(a) + t g(b)):
  the score is evaluated densely along it (must stay ≤ 0) and the path must stay inside the image. Extra
  pixel components joined this way are the pixel discretization of a thin part of a connected set, not a
  failure of the guarantee;
- FICNN midpoint convexity on random pairs, flow round trip g⁻¹(g(x)) on the pixel grid, the flow keeping
  the pixel grid inside and the square's boundary on the boundary.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .data import pixel_positions
from .model import ConnectedSegmenter
from .train import predict_logits

__all__ = ["connectivity_checks", "model_checks", "iou", "components"]

_EIGHT = np.ones((3, 3), dtype=bool)


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = int((pred | gt).sum())
    return float((pred & gt).sum() / union) if union else 1.0


def components(mask: np.ndarray) -> int:
    """8-connected components of a boolean mask."""
    return int(ndimage.label(mask, _EIGHT)[1])


def _grid(H: int, W: int, f: int) -> torch.Tensor:
    return torch.from_numpy(pixel_positions(H * f, W * f))


@torch.no_grad()
def connectivity_checks(model: ConnectedSegmenter, mask: np.ndarray, *, fine: int = 4,
                        path_samples: int = 2001, max_step_px: float = 0.25) -> tuple[dict, np.ndarray]:
    """Component counts of the pixel-centre mask and of a ``fine``× finer sampling; the certified joining
    paths between the centre mask's 8-components (see the module docstring).

    Returns ``(report, joined_mask)``: ``joined_mask`` is ``mask`` plus every pixel whose cell a joining
    path passes through (each such cell contains points of the foreground set, witnessed by the path
    samples; the sampling is refined until they are ≤ ``max_step_px`` apart), so it is 8-connected whenever
    all paths check out."""
    H, W = mask.shape
    lab8, n8 = ndimage.label(mask, _EIGHT)
    out: dict = {"components_4conn": int(ndimage.label(mask)[1]), "components_8conn": int(n8)}
    fine_mask = (predict_logits(model, _grid(H, W, fine)) >= 0).numpy().reshape(H * fine, W * fine)
    out[f"components_fine{fine}x_4conn"] = int(ndimage.label(fine_mask)[1])
    out[f"components_fine{fine}x_8conn"] = int(ndimage.label(fine_mask, _EIGHT)[1])
    paths: dict = {"extra_components": max(int(n8) - 1, 0)}
    joined = mask.copy()
    if n8 > 1:
        xy = torch.from_numpy(pixel_positions(H, W))
        score = model.score(xy).numpy()
        sizes = ndimage.sum(np.ones_like(lab8), lab8, index=np.arange(1, n8 + 1))
        main = int(np.argmax(sizes)) + 1
        flat = lab8.ravel()

        def rep(k: int) -> int:  # the most confidently foreground pixel of component k
            idx = np.flatnonzero(flat == k)
            return int(idx[np.argmin(score[idx])])

        a = model.latent(xy[rep(main)][None])
        t = torch.linspace(0.0, 1.0, path_samples, dtype=torch.float64)[:, None]
        scale = torch.tensor([W, H], dtype=torch.float64)
        worst, outside, step_px = -np.inf, 0.0, 0.0
        for k in range(1, n8 + 1):
            if k == main:
                continue
            b = model.latent(xy[rep(k)][None])
            x = _path(model, a, b, t, scale, max_step_px)
            sc = model.score(x)
            worst = max(worst, float(sc.max()))
            outside = max(outside, float((x - x.clamp(0.0, 1.0)).abs().max()))
            step_px = max(step_px, float(((x[1:] - x[:-1]) * scale).norm(dim=1).max()))
            cells = torch.floor(x[sc <= 0] * scale).long()
            cells[:, 0].clamp_(0, W - 1)
            cells[:, 1].clamp_(0, H - 1)
            joined[cells[:, 1].numpy(), cells[:, 0].numpy()] = True
        ok = worst <= 0.0 and outside == 0.0 and step_px <= max(max_step_px, 0.5)
        paths.update({"max_score_on_paths": worst, "max_outside_image": outside, "max_step_px": step_px,
                      "all_joined": bool(ok), "pixels_added": int(joined.sum() - mask.sum())})
    out["joining_paths"] = paths
    out["components_8conn_joined_mask"] = int(ndimage.label(joined, _EIGHT)[1])
    return out, joined


def _path(model: ConnectedSegmenter, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, scale: torch.Tensor,
          max_step_px: float, max_samples: int = 2_000_000) -> torch.Tensor:
    """Image-space samples of the path g⁻¹((1 - t) a + t b), with samples inserted where consecutive ones
    are more than ``max_step_px`` pixels apart (until none is, or ``max_samples`` is reached)."""

    def image_points(tt: torch.Tensor) -> torch.Tensor:
        u = (1.0 - tt) * a + tt * b
        return u if model.flow is None else predict_latent_inverse(model.flow, u)

    t = t[:, 0]
    x = image_points(t[:, None])
    while len(t) < max_samples:
        step = ((x[1:] - x[:-1]) * scale).norm(dim=1)
        bad = torch.nonzero(step > max_step_px)[:, 0]
        if len(bad) == 0:
            break
        m = torch.ceil(step[bad] / max_step_px).clamp(max=64).long()  # sub-intervals per bad segment
        seg = torch.repeat_interleave(bad, m - 1)
        frac = torch.cat([torch.arange(1, int(k)) for k in m]).to(torch.float64) / torch.repeat_interleave(m, m - 1)
        t_new = t[seg] + frac * (t[seg + 1] - t[seg])
        t, order = torch.sort(torch.cat([t, t_new]))
        x = torch.cat([x, image_points(t_new[:, None])])[order]
    return x


def predict_latent_inverse(flow, u: torch.Tensor, chunk: int = 262144) -> torch.Tensor:
    """g⁻¹(u) in chunks."""
    return torch.cat([flow.inverse(u[i:i + chunk]) for i in range(0, len(u), chunk)])


@torch.no_grad()
def model_checks(model: ConnectedSegmenter, H: int, W: int, *, seed: int = 0, pairs: int = 20000) -> dict:
    """Midpoint convexity of the (temperature-scaled) FICNN on random pairs of latent points in [-1.5, 1.5]²
    (the latent image square is [-1, 1]²) and on pairs of the pixels' latent points; flow round trip, flow
    keeping the grid inside the square and the square's boundary on the boundary."""
    g = torch.Generator().manual_seed(seed)
    f = model.ficnn
    T = model.temperature
    a = (torch.rand(pairs, 2, generator=g, dtype=torch.float64) * 3.0 - 1.5)
    b = (torch.rand(pairs, 2, generator=g, dtype=torch.float64) * 3.0 - 1.5)
    viol = T * (f((a + b) / 2) - (f(a) + f(b)) / 2)
    xy = torch.from_numpy(pixel_positions(H, W))
    lat = model.latent(xy) * 2.0 - 1.0
    i = torch.randint(0, len(lat), (pairs,), generator=g)
    j = torch.randint(0, len(lat), (pairs,), generator=g)
    viol_px = T * (f((lat[i] + lat[j]) / 2) - (f(lat[i]) + f(lat[j])) / 2)
    out = {"convexity_pairs": 2 * pairs,
           "convexity_max_violation": float(torch.cat([viol, viol_px]).clamp_min(0.0).max()),
           "z_weights_min": float(min(lin.weight.min() for lin in f.z_layers))}
    if f.quadratic:
        out["ficnn_quadratic_weight"] = float(torch.nn.functional.softplus(f.rho))
    if model.flow is not None:
        z = model.flow(xy)
        back = model.flow.inverse(z)
        s = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64)
        zero, one = torch.zeros_like(s), torch.ones_like(s)
        edge = torch.cat([torch.stack(p, 1) for p in ((s, zero), (s, one), (zero, s), (one, s))])
        ez = model.flow(edge)
        dist_to_edge = torch.minimum(torch.minimum(ez[:, 0], 1 - ez[:, 0]), torch.minimum(ez[:, 1], 1 - ez[:, 1]))
        out.update({"flow_roundtrip_max_err": float((back - xy).abs().max()),
                    "flow_roundtrip_max_err_px": float(((back - xy) * torch.tensor([W, H])).abs().max()),
                    "flow_grid_outside_square": float((z - z.clamp(0.0, 1.0)).abs().max()),
                    "flow_boundary_max_dist": float(dist_to_edge.abs().max())})
    return out
