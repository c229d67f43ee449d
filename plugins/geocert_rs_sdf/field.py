"""The radiance field: RS-SDF density from a learnable occupancy grid, colour from a hash grid + small MLP.

RS-SDF density (the paper's construction), for a grid of occupancy logits θ ``[X, X, X]``:

    p̂ = sigmoid(θ)                         soft occupancy of each voxel (the base classifier)
    p  = p̂ ∗ N(0, σ²)                       exact Gaussian smoothing, σ in voxels, every step
    SDF = σ_w · Φ⁻¹(p)                      weak SDF = certified radius (σ_w = σ · voxel size), + inside
    G(x) = sigmoid(SDF(x) / s)              occupancy from the SDF (s = ``sharpness`` · voxel size)
    density g(x) = −30 · ln(1 + ε − G(x))

The smoothed occupancy p is computed at the voxel centres (cells of size 2·bound/X) once per step and read
at sample points by trilinear interpolation (``grid_sample``); Φ⁻¹, G and g are applied per point (so the
costly Φ⁻¹ runs on the few samples a step looks up, not on the whole grid). The plain-density variant
(Instant-NGP style) reads the same grid as log-density, density = exp(θ(x)), with no smoothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geocert.smoothing import sdf_from_probability, smooth_occupancy
from geocert_rs_sdf.hashgrid import HashGrid

__all__ = ["RadianceField", "sample_grid", "density_from_sdf", "sh_encode", "DENSITY_SCALE", "DENSITY_EPS"]
# sample_grid_reference is the tests' slow twin of sample_grid (not part of the API)

SDF_EPS = 1e-10  # p is clamped to [eps, 1 − eps] in σ·Φ⁻¹(p): small, so empty space keeps a gradient
DENSITY_SCALE = 30.0
DENSITY_EPS = 1e-6
SKIP_DENSITY = 0.01  # density per unit length below which a voxel (and its neighbours) counts as empty
PLAIN_MAX_LOG_DENSITY = 8.0


def density_from_sdf(sdf: torch.Tensor, sharpness: float, scale: float = DENSITY_SCALE,
                     eps: float = DENSITY_EPS) -> torch.Tensor:
    """g = −scale · ln(1 + ε − sigmoid(SDF / sharpness)) (SDF positive inside, same units as sharpness)."""
    # 1 − sigmoid(z) = sigmoid(−z): computed that way it keeps its precision deep inside the object
    return -scale * torch.log(torch.sigmoid(-sdf / sharpness) + eps)


def sample_grid(grid: torch.Tensor, points: torch.Tensor, bound: float) -> torch.Tensor:
    """Trilinear interpolation of a voxel-centred grid ``[X, Y, Z]`` covering ``[-bound, bound]³`` at
    ``[P, 3]`` points → ``[P]``; outside the outermost voxel centres the border value is used.
    Differentiable in both arguments."""
    g = (points / bound).flip(-1).reshape(1, -1, 1, 1, 3)  # grid_sample wants (z, y, x) for a [X, Y, Z] volume
    out = nn.functional.grid_sample(grid[None, None], g.to(grid.dtype), mode="bilinear",
                                    padding_mode="border", align_corners=False)
    return out.reshape(-1)


def sample_grid_reference(grid: torch.Tensor, points: torch.Tensor, bound: float) -> torch.Tensor:
    """Slow twin of :func:`sample_grid`, one point and one corner at a time."""
    out = torch.empty(points.shape[0], dtype=grid.dtype)
    shape = grid.shape
    for n in range(points.shape[0]):
        pos = [min(max((float(points[n, k]) + bound) / (2 * bound) * shape[k] - 0.5, 0.0), shape[k] - 1)
               for k in range(3)]
        base = [int(math.floor(v)) for v in pos]
        acc = 0.0
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    idx, wt = [], 1.0
                    for k, d in enumerate((dx, dy, dz)):
                        f = pos[k] - base[k]
                        wt *= f if d else 1.0 - f
                        idx.append(min(base[k] + d, shape[k] - 1))
                    acc += wt * float(grid[tuple(idx)])
        out[n] = acc
    return out


def sh_encode(dirs: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to degree 2 of unit directions ``[P, 3]`` → ``[P, 9]``."""
    x, y, z = dirs.unbind(-1)
    return torch.stack([
        torch.full_like(x, 0.28209479), -0.48860251 * y, 0.48860251 * z, -0.48860251 * x,
        1.09254843 * x * y, -1.09254843 * y * z, 0.31539157 * (3 * z * z - 1), -1.09254843 * x * z,
        0.54627422 * (x * x - y * y)], dim=-1)


class RadianceField(nn.Module):
    """Occupancy grid (density) + hash grid and MLP (colour) in the box ``[-bound, bound]³``.

    Args:
        grid_res: X, voxels per side of the occupancy grid.
        sigma: smoothing σ in voxels (rs-sdf variant).
        sharpness: s of G = sigmoid(SDF / s), in voxels.
        density: ``"rs-sdf"`` or ``"plain"``.
        init_density: initial density per unit length everywhere (both variants start equally foggy).
        view_dependent: feed SH-encoded view directions to the colour MLP.
        init_sharpness: the sharpness (voxels) the initial density refers to (default ``sharpness``; training
            that anneals s starts at a larger one).
    """

    def __init__(self, *, bound: float, grid_res: int = 96, sigma: float = 1.0, sharpness: float = 0.025,
                 density: str = "rs-sdf", init_density: float = 0.3, hash_levels: int = 8,
                 hash_log2: int = 15, hash_max_res: int = 128, hidden: int = 64, view_dependent: bool = False,
                 init_sharpness: float | None = None, generator: torch.Generator | None = None):
        super().__init__()
        if density not in ("rs-sdf", "plain"):
            raise ValueError(f"density must be 'rs-sdf' or 'plain', got {density!r}")
        self.bound, self.grid_res = float(bound), int(grid_res)
        self.sigma, self.sharpness = float(sigma), float(sharpness)
        self.density_mode, self.view_dependent = density, bool(view_dependent)
        self.voxel = 2 * self.bound / self.grid_res
        if density == "rs-sdf":
            init = self._logit_for_density(init_density, self.sharpness if init_sharpness is None else init_sharpness)
        else:
            init = math.log(init_density)
        self.logits = nn.Parameter(torch.full((self.grid_res,) * 3, init))
        # space carving's decisions (geocert_rs_sdf.carve): +1 inside, −1 outside, 0 = the learned occupancy
        self.register_buffer("fixed", torch.zeros((self.grid_res,) * 3, dtype=torch.int8))
        self.encoding = HashGrid(n_levels=hash_levels, log2_table=hash_log2, max_res=hash_max_res,
                                 bound=bound, generator=generator)
        n_in = self.encoding.out_dim + (9 if self.view_dependent else 0)
        self.mlp = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 3))
        with torch.no_grad():
            for m in self.mlp:
                if isinstance(m, nn.Linear):
                    bw = 1.0 / math.sqrt(m.in_features)
                    m.weight.uniform_(-bw, bw, generator=generator)
                    m.bias.uniform_(-bw, bw, generator=generator)

    def _logit_for_density(self, target: float, sharpness: float) -> float:
        """The constant logit whose (blurred, constant) occupancy gives ``target`` density at ``sharpness``
        (bisection)."""
        lo, hi = -15.0, 0.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            p = torch.sigmoid(torch.tensor(mid, dtype=torch.float64))
            sdf = sdf_from_probability(p, self.sigma * self.voxel, eps=SDF_EPS)
            if float(density_from_sdf(sdf, sharpness * self.voxel)) < target:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    # ---------------------------------------------------------------- geometry
    def base_occupancy(self) -> torch.Tensor:
        """The base classifier p̂ ``[X, X, X]``: sigmoid(θ), or 1 / 0 where space carving fixed a voxel inside /
        outside (``fixed``; no gradient reaches θ there). Differentiable."""
        return torch.where(self.fixed == 0, torch.sigmoid(self.logits), (self.fixed > 0).to(self.logits.dtype))

    def smoothed_occupancy(self) -> torch.Tensor:
        """p = p̂ ∗ N(0, σ²) at the voxel centres ``[X, X, X]``, p̂ = :meth:`base_occupancy` (rs-sdf;
        differentiable)."""
        return smooth_occupancy(self.base_occupancy(), self.sigma)

    def geometry_state(self) -> torch.Tensor:
        """The per-step grid the density is read from: the smoothed occupancy p (rs-sdf) or the log-density
        (plain). Differentiable; compute it once per step and pass it to :meth:`density`."""
        if self.density_mode == "rs-sdf":
            return self.smoothed_occupancy()
        return self.logits

    def sdf_from_state(self, values: torch.Tensor) -> torch.Tensor:
        """RS-SDF σ_w·Φ⁻¹(p) (world units, + inside) of smoothed-occupancy values (rs-sdf). p is clamped to
        [1e-10, 1 − the dtype's epsilon] (1 − 1e-10 rounds to 1 in float32, where Φ⁻¹ is infinite: p = 1
        happens deep inside space carving's filled voxels), so the SDF stays finite: ≤ 5.2σ_w inside in
        float32."""
        top = 1.0 - torch.finfo(values.dtype).eps
        return sdf_from_probability(values.clamp(max=top), self.sigma * self.voxel, eps=SDF_EPS)

    def density_from_state(self, values: torch.Tensor) -> torch.Tensor:
        """Density per unit length from interpolated :meth:`geometry_state` values."""
        if self.density_mode == "rs-sdf":
            return density_from_sdf(self.sdf_from_state(values), self.sharpness * self.voxel)
        return torch.exp(values.clamp(max=PLAIN_MAX_LOG_DENSITY))

    def density(self, points: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Density ``[P]`` at ``[P, 3]`` points, per world unit of length."""
        return self.density_from_state(sample_grid(state, points, self.bound))

    @torch.no_grad()
    def sdf_grid(self) -> torch.Tensor:
        """A signed distance at the voxel centres ``[X, X, X]`` (world units, positive inside): the RS-SDF;
        for the plain variant the level set of density ln 2 · 30 (where G would be ½) stands in, scaled by s."""
        state = self.geometry_state()
        if self.density_mode == "rs-sdf":
            return self.sdf_from_state(state)
        return (state - math.log(DENSITY_SCALE * math.log(2.0))) * self.sharpness * self.voxel

    @torch.no_grad()
    def skip_grid(self, state: torch.Tensor, threshold: float = SKIP_DENSITY) -> torch.Tensor:
        """Empty-space-skipping bitfield ``[X, X, X]`` (bool): voxels whose density, or a neighbour's, exceeds
        ``threshold``; a sample in a False voxel gets density 0 without a query."""
        dens = self.density_from_state(state.detach())
        occ = (dens > threshold).float()[None, None]
        return torch.nn.functional.max_pool3d(occ, 3, stride=1, padding=1)[0, 0] > 0

    # ---------------------------------------------------------------- appearance
    def color(self, points: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """RGB ``[P, 3]`` in [0, 1] at ``[P, 3]`` points seen along unit ``[P, 3]`` directions."""
        h = self.encoding(points)
        if self.view_dependent:
            h = torch.cat([h, sh_encode(dirs)], dim=-1)
        return torch.sigmoid(self.mlp(h))
