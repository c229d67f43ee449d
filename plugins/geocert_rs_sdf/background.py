"""What a ray sees behind the scene box: the background model of ``--background``.

The RS-SDF box holds the object; everything a ray meets outside it (sky, walls, the far ground) is the
background colour, composited with the ray's remaining transmittance: rgb = opacity · c̄ + (1 − opacity) · bg.

- ``white`` / ``black``: a constant colour (NeRF-synthetic scenes: RGBA images on white; today's behaviour).
- ``random``: in training, a random colour per ray, and the target is the RGBA image composited on that
  same colour with its alpha (so a semi-transparent haze cannot hide by taking the background's colour);
  rendered on white. Needs alpha or masks.
- ``learned``: an environment at a finite distance — the colour is a small MLP of the point where the ray
  leaves a sphere of radius ``radius`` around the box centre and of the ray's direction (Fourier features
  of both: the exit point is the view direction for a distant sky and moves with the camera for a nearer
  ground or walls; the pair fixes the ray's line, so the MLP can place near background too). Without it, a
  real background must be painted onto the box's walls by the density, as floaters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Background", "BACKGROUNDS", "sphere_exit", "fourier"]

BACKGROUNDS = ("white", "black", "random", "learned")
FREQUENCIES = 4  # Fourier octaves of the exit point
DIR_FREQUENCIES = 2  # Fourier octaves of the direction
HIDDEN = 64
RADIUS_FACTOR = 2.0  # the environment sphere's radius, times the farthest camera's distance from the centre


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


class Background(nn.Module):
    """The background colour of rays. ``mode`` is one of :data:`BACKGROUNDS`; ``radius`` the environment
    sphere's radius (learned), stored with the weights."""

    def __init__(self, mode: str = "white", radius: float = 10.0, hidden: int = HIDDEN,
                 generator: torch.Generator | None = None):
        super().__init__()
        if mode not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {mode!r}")
        self.mode = mode
        self.register_buffer("radius", torch.tensor(float(radius)))
        self.mlp = None
        if mode == "learned":
            self.mlp = nn.Sequential(nn.Linear(6 + 6 * (FREQUENCIES + DIR_FREQUENCIES), hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                     nn.ReLU(), nn.Linear(hidden, 3))
            with torch.no_grad():  # PyTorch's default uniform bounds, drawn from ``generator``
                for lin in (m for m in self.mlp if isinstance(m, nn.Linear)):
                    for t in (lin.weight, lin.bias):
                        t.uniform_(-lin.in_features ** -0.5, lin.in_features ** -0.5, generator=generator)

    def forward(self, origins: torch.Tensor, dirs: torch.Tensor, *, training: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor | float:
        """Background colour ``[R, 3]`` (or a number for a constant) of rays ``[R, 3]``; ``training`` draws
        the ``random`` mode's colours from ``generator``."""
        if self.mode == "black":
            return 0.0
        if self.mode == "random" and training:
            return torch.rand(origins.shape[0], 3, generator=generator, device=origins.device, dtype=origins.dtype)
        if self.mode != "learned":
            return 1.0
        feats = torch.cat([fourier(sphere_exit(origins, dirs, self.radius)), fourier(dirs, DIR_FREQUENCIES)], -1)
        return torch.sigmoid(self.mlp(feats))

    def parameters_to_train(self) -> list[nn.Parameter]:
        return [] if self.mlp is None else list(self.mlp.parameters())
