"""Multiresolution hash-grid encoding (Instant-NGP style) in plain PyTorch.

Level l has resolution ``N_l = floor(base · b^l)`` cells per side, b chosen so the last level has ``max_res``.
A level whose ``(N_l + 1)³`` corners fit in the table is stored densely (one row per corner); finer levels
hash their corners with the Instant-NGP primes. All levels are read by one gather of the 8 corners of
every point (backward: one scatter-add into the table). Each point's
feature at a level is the trilinear interpolation of its cell's 8 corner features; the levels' features
are concatenated. :func:`encode_reference` is the loop-per-point twin used by the tests.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["HashGrid", "trilinear_corners", "PRIMES"]  # encode_reference: the tests' slow twin

PRIMES = (1, 2654435761, 805459861)
_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.int64)


def trilinear_corners(pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Corner integer coordinates and trilinear weights of points in grid units.

    Args:
        pos: ``[..., 3]`` positions in cell units (corner lattice coordinates).

    Returns:
        ``([..., 8, 3]`` int64 corners, ``[..., 8]`` weights summing to 1).
    """
    p0 = pos.floor()
    frac = pos - p0
    corners = p0.long().unsqueeze(-2) + _CORNERS.to(pos.device)
    c = _CORNERS.to(pos.device, pos.dtype)
    f = frac.unsqueeze(-2)
    w = (c * f + (1 - c) * (1 - f)).prod(dim=-1)
    return corners, w


class _WeightedGather(torch.autograd.Function):
    """``out[n] = Σ_c w[n, c] · table[idx[n, c]]`` with a scatter-add backward into the table (no sort, no
    gradient to the weights: the encoded positions are not learned)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx, w)
        ctx.table_shape = table.shape
        feats = table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[1])
        return (feats * w.unsqueeze(-1)).sum(-2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        idx, w = ctx.saved_tensors
        contrib = (w.unsqueeze(-1) * grad.unsqueeze(-2)).reshape(-1, grad.shape[-1])
        g_table = torch.zeros(ctx.table_shape, dtype=grad.dtype, device=grad.device)
        g_table.index_add_(0, idx.reshape(-1), contrib)
        return g_table, None, None


class HashGrid(nn.Module):
    """Hash-grid encoding of points in the box ``[-bound, bound]³``.

    forward: ``[P, 3]`` points → ``[P, n_levels · n_features]`` features (differentiable in the table).
    The table is one parameter ``[n_levels · 2^log2_table, n_features]``; a dense level uses its first
    ``(N_l + 1)³`` rows (x fastest), a hashed level row ``(x·π₁ ⊕ y·π₂ ⊕ z·π₃) mod 2^log2_table``."""

    def __init__(self, n_levels: int = 8, n_features: int = 2, log2_table: int = 15, base_res: int = 16,
                 max_res: int = 256, bound: float = 1.0, generator: torch.Generator | None = None):
        super().__init__()
        self.n_levels, self.n_features, self.bound = int(n_levels), int(n_features), float(bound)
        self.table_size = 2 ** int(log2_table)
        growth = math.exp((math.log(max_res) - math.log(base_res)) / max(n_levels - 1, 1))
        self.res = [int(math.floor(base_res * growth**lvl)) for lvl in range(n_levels)]
        self.is_dense = [(r + 1) ** 3 <= self.table_size for r in self.res]
        init = (torch.rand(n_levels * self.table_size, n_features, generator=generator) * 2 - 1) * 1e-4
        self.table = nn.Parameter(init)
        for name, keep in (("dense", True), ("hashed", False)):
            levels = [lvl for lvl in range(n_levels) if self.is_dense[lvl] == keep]
            self.register_buffer(f"_{name}_res", torch.tensor([self.res[lvl] for lvl in levels],
                                                              dtype=torch.int64).view(-1, 1), persistent=False)
            self.register_buffer(f"_{name}_off", torch.tensor([lvl * self.table_size for lvl in levels],
                                                              dtype=torch.int64).view(-1, 1, 1), persistent=False)
        self.order = [lvl for lvl in range(n_levels) if self.is_dense[lvl]] + \
            [lvl for lvl in range(n_levels) if not self.is_dense[lvl]]

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.n_features

    def _rows(self, u: torch.Tensor, res: torch.Tensor, offsets: torch.Tensor, dense: bool):
        """Table rows ``[L, P, 8]`` and trilinear weights ``[L, P, 8]`` of points ``u ∈ [0, 1]³`` at levels
        of resolutions ``res [L, 1]``."""
        pos = u.unsqueeze(0) * res.unsqueeze(-1).to(u.dtype)  # [L, P, 3]
        p0 = pos.floor()
        frac = pos - p0
        i0 = p0.long()
        ax = [[torch.minimum(i0[..., k] + d, res) for d in (0, 1)] for k in range(3)]
        if dense:
            stride = res + 1
            ax[1] = [a * stride for a in ax[1]]
            ax[2] = [a * (stride * stride) for a in ax[2]]
        else:
            ax = [[a * PRIMES[k] for a in ax[k]] for k in range(3)]
        fx, fy, fz = frac.unbind(-1)
        wx, wy, wz = (1 - fx, fx), (1 - fy, fy), (1 - fz, fz)
        rows, wts = [], []
        for a in (0, 1):
            for b in (0, 1):
                xy = ax[0][a] + ax[1][b] if dense else ax[0][a] ^ ax[1][b]
                wxy = wx[a] * wy[b]
                for c in (0, 1):
                    rows.append(xy + ax[2][c] if dense else (xy ^ ax[2][c]) & (self.table_size - 1))
                    wts.append(wxy * wz[c])
        return torch.stack(rows, -1) + offsets, torch.stack(wts, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = ((x + self.bound) / (2 * self.bound)).clamp(0.0, 1.0)  # [P, 3]
        rows, wts = [], []
        for name, dense in (("dense", True), ("hashed", False)):
            res = getattr(self, f"_{name}_res")
            if res.numel():
                r, w = self._rows(u, res, getattr(self, f"_{name}_off"), dense)
                rows.append(r)
                wts.append(w)
        rows_t, w_t = torch.cat(rows), torch.cat(wts)  # [L, P, 8] in self.order
        out = _WeightedGather.apply(self.table, rows_t, w_t.to(self.table.dtype))  # [L, P, F]
        if self.order != list(range(self.n_levels)):
            out = out[torch.tensor(self.order, device=out.device).argsort()]
        return out.permute(1, 0, 2).reshape(x.shape[0], -1)


def encode_reference(grid: HashGrid, x: torch.Tensor) -> torch.Tensor:
    """Slow twin of :meth:`HashGrid.forward`: Python loops over points, levels and corners."""
    rows = []
    for p in range(x.shape[0]):
        u = ((x[p] + grid.bound) / (2 * grid.bound)).clamp(0.0, 1.0)
        feats = []
        for lvl in range(grid.n_levels):
            n = grid.res[lvl]
            pos = [float(v) * n for v in u]
            base = [int(math.floor(v)) for v in pos]
            acc = torch.zeros(grid.n_features, dtype=grid.table.dtype)
            for dx in (0, 1):
                for dy in (0, 1):
                    for dz in (0, 1):
                        c = [min(base[0] + dx, n), min(base[1] + dy, n), min(base[2] + dz, n)]
                        wt = 1.0
                        for k, d in enumerate((dx, dy, dz)):
                            f = pos[k] - base[k]
                            wt *= f if d else 1.0 - f
                        if (n + 1) ** 3 <= grid.table_size:
                            row = c[0] + (n + 1) * (c[1] + (n + 1) * c[2])
                        else:
                            row = ((c[0] * PRIMES[0]) ^ (c[1] * PRIMES[1]) ^ (c[2] * PRIMES[2])) % grid.table_size
                        acc = acc + wt * grid.table[lvl * grid.table_size + row]
            feats.append(acc)
        rows.append(torch.cat(feats))
    return torch.stack(rows)
