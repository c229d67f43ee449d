"""The networks: a fully input-convex network (FICNN), a square-preserving spline coupling flow, their
composition (whose foreground is provably path-connected) and the teacher MLP.

Foreground convention: the FICNN outputs a convex score h(u); the foreground is the sublevel set
{x : h(g(x)) ≤ 0}, i.e. {N(g(x)) ≤ 1/2} with N = sigmoid(h). The foreground probability is sigmoid(-h).
Because h is convex, {u : h(u) ≤ 0} is convex; g is a diffeomorphism of the plane mapping the image square
[0, 1]² onto itself, so the foreground inside the image, g⁻¹({h ≤ 0} ∩ [0, 1]²), is the continuous image of
a convex (hence path-connected) set and is path-connected.
"""

from __future__ import annotations

import torch
from torch import nn

from .spline import rq_spline_forward, rq_spline_inverse

__all__ = ["FICNN", "SplineCoupling", "SquareFlow", "ConnectedSegmenter", "TeacherMLP"]


class FICNN(nn.Module):
    """Fully input-convex network (Amos et al. 2017, Prop. 1): ``u [B, D] -> h [B]`` convex in u.

    z₁ = act(W₀ u + b₀);  z_{i+1} = act(W_i^z z_i + W_i^u u + b_i);  h = W_k^z z_k + W_k^u u + b_k.
    The z-path weights W^z are kept non-negative by :meth:`project` (call it after every optimizer step);
    the activation is convex and non-decreasing (ReLU as in the paper, or softplus); the input pass-through
    weights W^u are free. A convex non-decreasing function of convex functions plus affine terms is convex.
    """

    def __init__(self, in_dim: int = 2, hidden: int = 64, layers: int = 2, activation: str = "relu"):
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
        return (self.z_layers[-1](z) + self.input_layers[-1](u))[..., 0]


class SplineCoupling(nn.Module):
    """One coupling layer on [0,1]²: coordinate ``dim`` goes through a rational-quadratic spline whose
    parameters are an MLP of the other coordinate. For every value of the other coordinate the spline is an
    increasing bijection of [0, 1] (and the identity outside it), so the layer maps the square onto itself
    and is a C¹ diffeomorphism of the plane. Zero-initialised output layer → the layer starts as identity."""

    def __init__(self, dim: int, num_bins: int = 8, hidden: int = 64):
        super().__init__()
        if dim not in (0, 1):
            raise ValueError("dim must be 0 or 1")
        self.dim, self.num_bins = dim, num_bins
        self.net = nn.Sequential(
            nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 3 * num_bins - 1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _params(self, cond: torch.Tensor) -> torch.Tensor:
        # condition on the centred, clamped coordinate (outside the square the layer is identity anyway)
        return self.net((cond.clamp(0.0, 1.0) * 2.0 - 1.0)[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        other = 1 - self.dim
        raw = self._params(x[:, other])
        moved = rq_spline_forward(x[:, self.dim], raw, self.num_bins)
        return _put(x, self.dim, moved)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        other = 1 - self.dim
        raw = self._params(y[:, other])
        moved = rq_spline_inverse(y[:, self.dim], raw, self.num_bins)
        return _put(y, self.dim, moved)


def _put(x: torch.Tensor, dim: int, col: torch.Tensor) -> torch.Tensor:
    cols = [x[:, 0], col] if dim == 1 else [col, x[:, 1]]
    return torch.stack(cols, dim=1)


class SquareFlow(nn.Module):
    """A stack of alternating :class:`SplineCoupling` layers: ``[B, 2] -> [B, 2]``, maps [0,1]² onto
    itself. Meant to run in float64 (round trips in float32 degrade after training)."""

    def __init__(self, layers: int = 6, num_bins: int = 8, hidden: int = 64):
        super().__init__()
        self.layers = nn.ModuleList(SplineCoupling(i % 2, num_bins, hidden) for i in range(layers))

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

    def __init__(self, ficnn: FICNN, flow: SquareFlow | None = None):
        super().__init__()
        self.ficnn, self.flow = ficnn, flow

    def latent(self, xy: torch.Tensor) -> torch.Tensor:
        return xy if self.flow is None else self.flow(xy)

    def score(self, xy: torch.Tensor) -> torch.Tensor:
        """The convex-in-latent score h(g(x)) ``[B]``; foreground where ≤ 0."""
        return self.ficnn(self.latent(xy) * 2.0 - 1.0)

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
