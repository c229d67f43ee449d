"""The networks: a fully input-convex network (FICNN), a square-preserving spline coupling flow, their
composition (whose foreground is provably path-connected) and the teacher MLP.

Foreground convention: h(u) = T · FICNN(u) (T > 0, the temperature) is convex in the latent point u; the
foreground is the sublevel set {x : h(g(x)) ≤ 0}, i.e. {N(g(x)) ≤ 1/2} with N = sigmoid(h); the model's
foreground logit is -h(g(x)) (training uses it with BCE against label 1 = foreground, the mask is
logit ≥ 0, the same threshold). Because h is convex, {u : h(u) ≤ 0} is convex; g is a bijection of the
plane with a continuous inverse (C¹ inside the open square) mapping the image square [0, 1]² onto itself,
so the foreground inside the image, g⁻¹({h ≤ 0} ∩ [0, 1]²), is the continuous image of a convex (hence
path-connected) set and is path-connected: the path between x₀ and x₁ is g⁻¹((1 - t) g(x₀) + t g(x₁)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .spline import MIN_BIN, MIN_DERIVATIVE, rq_spline_forward, rq_spline_inverse

__all__ = ["FICNN", "BSplineConditioner", "MLPConditioner", "SplineCoupling", "SquareFlow", "ConnectedSegmenter", "TeacherMLP"]


class FICNN(nn.Module):
    """Fully input-convex network (Amos et al. 2017, Prop. 1): ``u [B, D] -> h [B]`` convex in u.

    z₁ = act(W₀ u + b₀);  z_{i+1} = act(W_i^z z_i + W_i^u u + b_i);  h = W_k^z z_k + W_k^u u + b_k.
    The z-path weights W^z are kept non-negative by :meth:`project` (call it after every optimizer step);
    the activation is convex and non-decreasing (ReLU as in the paper, or softplus); the input pass-through
    weights W^u are free. A convex non-decreasing function of convex functions plus affine terms is convex.
    With ``quadratic > 0`` a term softplus(ρ)·|u|² (ρ learned, initial weight ``quadratic``) is added: still
    convex, and the initial sublevel set is a centred disc rather than a random half-plane.
    """

    def __init__(self, in_dim: int = 2, hidden: int = 64, layers: int = 2, activation: str = "relu",
                 quadratic: float = 0.0):
        super().__init__()
        if layers < 1:
            raise ValueError("FICNN needs at least one hidden layer")
        if activation not in ("relu", "softplus"):
            raise ValueError(f"activation must be relu or softplus, got {activation!r}")
        self.activation = activation
        self.input_layers = nn.ModuleList([nn.Linear(in_dim, hidden)])
        self.input_layers.extend(nn.Linear(in_dim, hidden) for _ in range(layers - 1))
        self.input_layers.append(nn.Linear(in_dim, 1))
        self.z_layers = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(layers - 1))
        self.z_layers.append(nn.Linear(hidden, 1, bias=False))
        with torch.no_grad():
            for lin in self.z_layers:  # small non-negative start (standard init, folded to ≥ 0)
                lin.weight.abs_().mul_(0.5)
        # optional strongly convex term softplus(ρ)·|u|² (convex: a non-negative multiple of a convex function);
        # it makes the initial sublevel set a centred disc instead of a random half-plane
        self.quadratic = quadratic > 0
        if self.quadratic:
            self.rho = nn.Parameter(torch.tensor(math.log(math.expm1(quadratic))))
        self.project()

    @torch.no_grad()
    def project(self) -> None:
        """Clamp every z-path weight to ≥ 0 (the projection step that keeps the network convex)."""
        for lin in self.z_layers:
            lin.weight.clamp_(min=0.0)

    def _act(self, v: torch.Tensor) -> torch.Tensor:
        return torch.relu(v) if self.activation == "relu" else nn.functional.softplus(v)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        z = self._act(self.input_layers[0](u))
        for i, lin in enumerate(self.z_layers[:-1]):
            z = self._act(lin(z) + self.input_layers[i + 1](u))
        out = (self.z_layers[-1](z) + self.input_layers[-1](u))[..., 0]
        if self.quadratic:
            out = out + nn.functional.softplus(self.rho) * (u * u).sum(dim=-1)
        return out


class BSplineConditioner(nn.Module):
    """``c ∈ R [B] -> raw spline parameters [B, P]``: a uniform cubic B-spline curve through ``knots`` learned
    control vectors over [0, 1] (C² in c; c is clamped to [0, 1], so the curve is constant outside).

    Compared with an MLP of c, a control-point table learns sharp changes along c (legs, a neck) directly,
    without the spectral bias of a small MLP, and costs a gather of 4 rows per point instead of matmuls.
    Zero-initialised: the coupling layer starts as the identity."""

    def __init__(self, out_dim: int, knots: int = 40):
        super().__init__()
        if knots < 4:
            raise ValueError("a cubic B-spline conditioner needs at least 4 control points")
        self.table = nn.Parameter(torch.zeros(knots, out_dim))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        n = self.table.shape[0]
        u = c.clamp(0.0, 1.0) * (n - 3)
        i = torch.floor(u).clamp(0, n - 4)
        f = (u - i)[:, None]
        i = i.long()
        f2, f3 = f * f, f * f * f
        w = torch.cat([(1 - f) ** 3, 3 * f3 - 6 * f2 + 4, -3 * f3 + 3 * f2 + 3 * f + 1, f3], dim=1) / 6.0
        rows = self.table[i[:, None] + torch.arange(4, device=c.device)]  # [B, 4, P]
        return (w[..., None] * rows).sum(dim=1)


class MLPConditioner(nn.Module):
    """``c ∈ R [B] -> raw spline parameters [B, P]``: a small SiLU MLP of the clamped, centred coordinate
    (smooth in c). Zero-initialised output layer: the coupling layer starts as the identity."""

    def __init__(self, out_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, out_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.net((c.clamp(0.0, 1.0) * 2.0 - 1.0)[:, None])


class SplineCoupling(nn.Module):
    """One coupling layer on [0,1]²: coordinate ``dim`` goes through a rational-quadratic spline whose
    parameters are a function (the conditioner) of the other coordinate, which passes through unchanged.

    For every value of the other coordinate the spline is a C¹ increasing bijection of R that maps [0, 1]
    onto [0, 1] (identity outside), so the layer is a bijection of the plane mapping the square onto
    itself, continuous with a continuous inverse (a homeomorphism; C¹ inside the open square, where the
    conditioner is smooth). ``conditioner``: ``"bspline"`` (cubic B-spline control-point table with
    ``size`` control points) or ``"mlp"`` (SiLU MLP with ``size`` hidden units)."""

    def __init__(self, dim: int, num_bins: int = 8, size: int = 40, conditioner: str = "bspline",
                 min_bin: float = MIN_BIN, min_derivative: float = MIN_DERIVATIVE):
        super().__init__()
        if dim not in (0, 1):
            raise ValueError("dim must be 0 or 1")
        self.dim, self.num_bins = dim, num_bins
        self.bounds = (min_bin, min_derivative)
        if conditioner == "bspline":
            self.cond = BSplineConditioner(3 * num_bins - 1, size)
        elif conditioner == "mlp":
            self.cond = MLPConditioner(3 * num_bins - 1, size)
        else:
            raise ValueError(f"conditioner must be bspline or mlp, got {conditioner!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.cond(x[:, 1 - self.dim])
        return _put(x, self.dim, rq_spline_forward(x[:, self.dim], raw, self.num_bins, *self.bounds))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        raw = self.cond(y[:, 1 - self.dim])
        return _put(y, self.dim, rq_spline_inverse(y[:, self.dim], raw, self.num_bins, *self.bounds))


def _put(x: torch.Tensor, dim: int, col: torch.Tensor) -> torch.Tensor:
    cols = [x[:, 0], col] if dim == 1 else [col, x[:, 1]]
    return torch.stack(cols, dim=1)


class SquareFlow(nn.Module):
    """A stack of alternating :class:`SplineCoupling` layers: ``[B, 2] -> [B, 2]``, maps [0,1]² onto
    itself. Meant to run in float64 (round trips in float32 degrade after training)."""

    def __init__(self, layers: int = 6, num_bins: int = 8, size: int = 40, conditioner: str = "bspline",
                 min_bin: float = MIN_BIN, min_derivative: float = MIN_DERIVATIVE):
        super().__init__()
        self.layers = nn.ModuleList(SplineCoupling(i % 2, num_bins, size, conditioner, min_bin, min_derivative)
                                    for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


class ConnectedSegmenter(nn.Module):
    """x ∈ [0,1]² ↦ logit of the foreground, -h(g(x)); with ``flow=None`` it is the plain FICNN baseline
    (convex foreground)."""

    def __init__(self, ficnn: FICNN, flow: SquareFlow | None = None, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError("temperature must be > 0")
        self.ficnn, self.flow, self.temperature = ficnn, flow, float(temperature)

    def latent(self, xy: torch.Tensor) -> torch.Tensor:
        return xy if self.flow is None else self.flow(xy)

    def score(self, xy: torch.Tensor) -> torch.Tensor:
        """The convex-in-latent score h(g(x)) ``[B]``; foreground where ≤ 0."""
        return self.ficnn(self.latent(xy) * 2.0 - 1.0) * self.temperature

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        """Foreground logits ``[B]`` for normalised pixel positions ``xy: [B, 2]``."""
        return -self.score(xy)

    def project(self) -> None:
        self.ficnn.project()


class TeacherMLP(nn.Module):
    """Unconstrained MLP teacher (two hidden layers of 130 as in the paper): features ``[B, F]`` → logits
    ``[B]``. It labels the unscribbled pixels for the constrained model."""

    def __init__(self, in_dim: int, hidden: int = 130):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats)[..., 0]
