"""What a ray sees besides the object: the background model of ``--background``.

The RS-SDF box holds the object; everything else a ray meets (the ground, walls, the sky) is the
background colour, composited behind the object with the ray's remaining transmittance:
rgb = opacity · c̄ + (1 − opacity) · bg. The object's opacity stays the object field's alone (the masks
supervise it), whatever the background holds.

- ``white`` / ``black``: a constant colour (NeRF-synthetic scenes: RGBA images on white).
- ``random``: in training, a random colour per ray, and the target is the RGBA image composited on that
  same colour with its alpha (so a semi-transparent haze cannot hide by taking the background's colour);
  rendered on white. Needs alpha or masks.
- ``learned``: a small volumetric field of the surroundings (NeRF++ / mip-NeRF 360 style) in front of a sky.
  Space is contracted (mip-NeRF 360's contraction in the ∞-norm, the unit being ``scale`` = the farthest
  training camera's distance from the box centre, so the cameras, the box and the near ground keep their
  true shape and all of space beyond fits in the shell 1 < ‖c‖∞ < 2). Density is a dense ``DENSITY_RES``³
  grid of log-densities over the contracted cube (trilinear, then exp: one cheap lookup per sample, as the
  object's density), colour a multiresolution hash grid (:class:`~geocert_rs_sdf.hashgrid.HashGrid`) and a
  small MLP of the point and the view direction, queried only at each ray's ``COLOR_TOPK`` samples of
  largest weight. Each ray takes ``COARSE`` samples from the camera to ``FAR_RATIO`` × ``scale`` (three
  quarters uniform in distance up to the contracted cube's inner wall, the rest uniform in disparity beyond;
  jittered in training), then ``FINE`` more drawn from the coarse weights (inverse CDF), and is composited
  over all of them, optical depth measured in contracted length. Whatever the ray's transmittance leaves
  is the sky: an MLP of Fourier features of the point where the ray leaves a sphere of radius ``radius``
  and of its direction. A checkpoint written before the volume existed (the sky MLP alone) loads as that
  model and renders as it did.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geocert_rs_sdf.hashgrid import HashGrid

__all__ = ["Background", "BACKGROUNDS", "sphere_exit", "fourier", "contract", "sample_pdf"]

BACKGROUNDS = ("white", "black", "random", "learned")
FREQUENCIES = 4  # Fourier octaves of the sky's exit point
DIR_FREQUENCIES = 2  # Fourier octaves of the direction
HIDDEN = 64  # the sky MLP's width
RADIUS_FACTOR = 2.0  # the sky sphere's radius, times the farthest camera's distance from the centre
# the volume
DENSITY_RES = 96  # dense log-density grid over the contracted cube [-2, 2]³
DENSITY_GAIN = 10.0  # density = exp(GAIN · θ): θ moves GAIN× faster under the shared Adam learning rate
DENSITY_INIT = 0.05  # initial density, per unit of contracted length (a ray's whole length is ≤ 4√3)
HASH_LEVELS, HASH_LOG2, HASH_BASE, HASH_MAX_RES = 8, 15, 16, 1024  # colour hash grid over [-2, 2]³
COLOR_HIDDEN = 32
COARSE, FINE, COLOR_TOPK = 32, 16, 4  # samples per ray
INNER_SHARE = 0.75  # share of the coarse samples uniform in distance (the rest uniform in disparity)
NEAR_RATIO, FAR_RATIO = 0.02, 1000.0  # the ray's first and last sample, times ``scale``
OPAQUE = 0.999  # rays behind an object at least this opaque get the sky alone (forward's ``opacity``)


def sphere_exit(origins: torch.Tensor, dirs: torch.Tensor, radius: torch.Tensor | float) -> torch.Tensor:
    """Unit vectors ``[R, 3]`` of the points where rays (unit ``dirs``) leave the sphere of ``radius`` around
    the origin (origins outside it: the far intersection, or the closest approach when they miss)."""
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - radius * radius
    t = -b + torch.sqrt((b * b - c).clamp(min=0.0))
    p = origins + t[:, None] * dirs
    return p / p.norm(dim=-1, keepdim=True).clamp(min=1e-9)


def fourier(x: torch.Tensor, octaves: int = FREQUENCIES) -> torch.Tensor:
    """``[P, 3]`` → ``[P, 3 + 6·octaves]``: x, sin(2^k π x), cos(2^k π x)."""
    freq = (2.0 ** torch.arange(octaves, dtype=x.dtype, device=x.device)) * math.pi
    xf = (x[..., None] * freq).flatten(-2)
    return torch.cat([x, torch.sin(xf), torch.cos(xf)], dim=-1)


def contract(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """mip-NeRF 360's contraction in the ∞-norm of points ``[..., 3]`` in units of ``scale``: y = x/scale is
    kept where ‖y‖∞ ≤ 1, else mapped to (2 − 1/‖y‖∞) · y/‖y‖∞; the result lies in [-2, 2]³."""
    y = x / scale
    n = y.abs().amax(-1, keepdim=True).clamp(min=1e-12)
    return torch.where(n <= 1.0, y, (2.0 - 1.0 / n) * (y / n))


def sample_pdf(edges: torch.Tensor, weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF samples ``[R, K]`` of the piecewise-constant densities ``weights [R, S]`` on the bins
    ``edges [R, S + 1]`` at the quantiles ``u [R, K]`` in [0, 1)."""
    w = weights + 1e-5
    cdf = torch.cat([torch.zeros_like(w[:, :1]), torch.cumsum(w, -1)], -1)
    cdf = cdf / cdf[:, -1:]
    i = torch.searchsorted(cdf, u.contiguous(), right=True).clamp(1, w.shape[1])
    c0, c1 = cdf.gather(1, i - 1), cdf.gather(1, i)
    e0, e1 = edges.gather(1, i - 1), edges.gather(1, i)
    return e0 + (u - c0) / (c1 - c0).clamp(min=1e-12) * (e1 - e0)


def _uniform(r: int, n: int, training: bool, generator, like: torch.Tensor) -> torch.Tensor:
    """Stratified quantiles ``[R, n]`` in [0, 1): jittered in their strata in training, centred otherwise."""
    jitter = (torch.rand(r, n, generator=generator, device=like.device, dtype=like.dtype) if training
              else torch.full((r, n), 0.5, device=like.device, dtype=like.dtype))
    return (torch.arange(n, device=like.device, dtype=like.dtype) + jitter) / n


def _linear(n_in: int, n_out: int, generator) -> nn.Linear:
    lin = nn.Linear(n_in, n_out)
    with torch.no_grad():  # PyTorch's default uniform bounds, drawn from ``generator``
        for t in (lin.weight, lin.bias):
            t.uniform_(-n_in ** -0.5, n_in ** -0.5, generator=generator)
    return lin


class Background(nn.Module):
    """The background colour of rays. ``mode`` is one of :data:`BACKGROUNDS`; ``radius`` the sky sphere's
    radius (learned; the volume's contraction unit is ``radius / RADIUS_FACTOR``), stored with the weights.
    ``volume`` (learned) is False for a model loaded from a checkpoint of the sky alone."""

    def __init__(self, mode: str = "white", radius: float = 10.0, hidden: int = HIDDEN,
                 generator: torch.Generator | None = None):
        super().__init__()
        if mode not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {mode!r}")
        self.mode = mode
        self.register_buffer("radius", torch.tensor(float(radius)))
        self.mlp = None
        self.volume = mode == "learned"
        if mode == "learned":
            self.mlp = nn.Sequential(_linear(6 + 6 * (FREQUENCIES + DIR_FREQUENCIES), hidden, generator), nn.ReLU(),
                                     _linear(hidden, hidden, generator), nn.ReLU(), _linear(hidden, 3, generator))
            self.density = nn.Parameter(torch.full((1, 1, DENSITY_RES, DENSITY_RES, DENSITY_RES),
                                                   math.log(DENSITY_INIT) / DENSITY_GAIN))
            self.grid = HashGrid(HASH_LEVELS, 2, HASH_LOG2, HASH_BASE, HASH_MAX_RES, bound=2.0, generator=generator)
            self.color = nn.Sequential(_linear(self.grid.out_dim + 3, COLOR_HIDDEN, generator), nn.ReLU(),
                                       _linear(COLOR_HIDDEN, 3, generator))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if self.volume and prefix + "mlp.0.weight" in state_dict and prefix + "density" not in state_dict:
            self.volume = False  # a checkpoint of the sky MLP alone (before the volume): load it as that
            del self.density, self.grid, self.color
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def scale(self) -> torch.Tensor:
        """The contraction's unit: the farthest training camera's distance from the box centre."""
        return self.radius / RADIUS_FACTOR

    def forward(self, origins: torch.Tensor, dirs: torch.Tensor, opacity: torch.Tensor | None = None, *,
                training: bool = False, generator: torch.Generator | None = None) -> torch.Tensor | float:
        """Background colour ``[R, 3]`` (or a number for a constant) of rays ``[R, 3]`` (unit directions);
        ``training`` draws the ``random`` mode's colours, or jitters the ``learned`` volume's samples, from
        ``generator``. ``opacity [R]``, the object's opacity in front (optional): rays at least ``OPAQUE``
        opaque (whose background weighs ≤ 1 − OPAQUE) get the sky alone, without the volume's cost."""
        if self.mode == "black":
            return 0.0
        if self.mode == "random" and training:
            return torch.rand(origins.shape[0], 3, generator=generator, device=origins.device, dtype=origins.dtype)
        if self.mode != "learned":
            return 1.0
        sky = torch.sigmoid(self.mlp(torch.cat([fourier(sphere_exit(origins, dirs, self.radius)),
                                                fourier(dirs, DIR_FREQUENCIES)], -1)))
        if not self.volume:
            return sky
        if opacity is None:
            return self._behind(origins, dirs, sky, training, generator)
        rays = (opacity < OPAQUE).nonzero().squeeze(1)
        return sky.index_put((rays,), self._behind(origins[rays], dirs[rays], sky[rays], training, generator))

    def _behind(self, origins, dirs, sky, training, generator):
        """The volume of rays ``[R, 3]`` composited over their ``sky [R, 3]``."""
        if origins.shape[0] == 0:
            return sky
        out = self.render_volume(origins, dirs, training=training, generator=generator)
        return out["rgb"] + (1.0 - out["opacity"])[:, None] * sky

    # ------------------------------------------------------------------------------------------- the volume

    def log_density(self, c: torch.Tensor) -> torch.Tensor:
        """GAIN · θ at contracted points ``[N, 3]`` (trilinear in the dense grid): the log-density ``[N]``."""
        g = (c / 2.0).reshape(1, -1, 1, 1, 3)
        v = torch.nn.functional.grid_sample(self.density, g, mode="bilinear", padding_mode="border",
                                            align_corners=True)
        return DENSITY_GAIN * v.reshape(-1)

    def _weights(self, origins, dirs, t):
        """Contracted points ``[R, S, 3]`` and compositing weights ``[R, S]`` of samples at distances
        ``t [R, S]`` (sorted; the last one's interval is as long as the one before it)."""
        c = contract(origins[:, None, :] + t[..., None] * dirs[:, None, :], self.scale)
        step = (c[:, 1:] - c[:, :-1]).norm(dim=-1)
        step = torch.cat([step, step[:, -1:]], -1)
        sigma = torch.exp(self.log_density(c.reshape(-1, 3)).clamp(max=15.0)).reshape(t.shape)
        tau = sigma * step
        trans = torch.exp(-(torch.cumsum(tau, -1) - tau))
        return c, trans * (1.0 - torch.exp(-tau))

    def sample_distances(self, origins: torch.Tensor, dirs: torch.Tensor, training: bool = False,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """The coarse sample distances ``[R, COARSE]``: uniform in distance from ``NEAR_RATIO · scale`` to where
        the ray leaves the cube ``[-scale, scale]³`` (the contraction's linear part), then uniform in
        disparity to ``FAR_RATIO · scale``."""
        from geocert_rs_sdf.render import ray_box

        s = float(self.scale)
        t_in, t_out = ray_box(origins, dirs, s)
        t0 = t_in.clamp(min=NEAR_RATIO * s)
        t1 = torch.maximum(t_out, t0 + NEAR_RATIO * s)[:, None]
        t0 = t0[:, None]
        q = _uniform(origins.shape[0], COARSE, training, generator, origins)
        inner = t0 + (t1 - t0) * (q / INNER_SHARE)
        far = FAR_RATIO * s
        disparity = 1.0 / t1 + (1.0 / far - 1.0 / t1) * ((q - INNER_SHARE) / (1.0 - INNER_SHARE))
        return torch.where(q < INNER_SHARE, inner, 1.0 / disparity)

    def render_volume(self, origins: torch.Tensor, dirs: torch.Tensor, training: bool = False,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The volume alone along rays ``[R, 3]``: ``rgb [R, 3]`` (premultiplied: the weight-normalised colour of
        the top samples times the opacity), ``opacity [R]`` and ``depth [R]`` (expected distance of the
        volume's weight, normalised)."""
        r = origins.shape[0]
        with torch.no_grad():
            t_c = self.sample_distances(origins, dirs, training, generator)
            _, w_c = self._weights(origins, dirs, t_c)
            last = t_c[:, -1:] * (t_c[:, -1:] / t_c[:, -2:-1])  # one more step, in disparity
            t_f = sample_pdf(torch.cat([t_c, last], -1), w_c, _uniform(r, FINE, training, generator, origins))
            t = torch.sort(torch.cat([t_c, t_f], -1), -1).values
        c, w = self._weights(origins, dirs, t)
        opacity = w.sum(-1)
        k = min(COLOR_TOPK, t.shape[1])
        top = w.detach().topk(k, -1).indices
        w_k = w.gather(1, top)
        c_k = c.gather(1, top[..., None].expand(-1, -1, 3))
        feats = torch.cat([self.grid(c_k.reshape(-1, 3)), dirs[:, None, :].expand(-1, k, -1).reshape(-1, 3)], -1)
        col = torch.sigmoid(self.color(feats)).reshape(r, k, 3)
        c_bar = (w_k[..., None] * col).sum(1) / w_k.sum(1, keepdim=True).clamp(min=1e-8)
        depth = (w * t).sum(-1) / opacity.clamp(min=1e-8)
        return {"rgb": opacity[:, None] * c_bar, "opacity": opacity, "depth": depth}

    def parameters_to_train(self) -> list[nn.Parameter]:
        return list(self.parameters())
