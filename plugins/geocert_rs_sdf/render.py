"""Volume rendering along rays with empty-space skipping (pure PyTorch, vectorized over rays and samples).

``render_rays``: stratified density samples across the part of each ray inside the scene box (each a cheap
trilinear lookup of the per-step geometry grid; samples in voxels the occupancy bitfield marks empty get
density 0 without a lookup), front-to-back compositing, then the expensive colour (hash grid + MLP) only at
each ray's ``color_samples`` samples of largest weight (a packed list; weights below ``min_weight`` are
dropped). In training, a no-grad pass finds the samples that can matter (visible: transmittance > 1e-4, and
not empty) and only those are looked up again inside the autograd graph. The ray colour is ``opacity · c̄ + (1 − opacity) · background`` where c̄ is the weight-normalised
colour of those samples, exact when they hold all of the ray's weight (a surface), and the opacity and
depth come from all samples. The background is a constant or, per ray, the field's background model
(:mod:`geocert_rs_sdf.background`).

``render_image`` / ``render_views`` render whole views through the scene's cameras
(:class:`~geocert_rs_sdf.data.Cameras`: per-view intrinsics and distortion), on the ray segment and with the
background model that travel with the field (``field.near``, ``field.far``, ``field.background_model``).
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["ray_box", "render_rays", "composite", "transmittance", "voxel_cells", "render_image", "render_views", "orbit_poses", "scene_up"]
# composite_reference and render_rays_dense are the slow twins of the tests and the benchmark


def ray_box(origins: torch.Tensor, dirs: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances ``[R]`` of rays ``[R, 3]`` through the box ``[-bound, bound]³``
    (exit ≤ entry where a ray misses the box)."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    inv = 1.0 / safe
    t_a = (-bound - origins) * inv
    t_b = (bound - origins) * inv
    t_near = torch.minimum(t_a, t_b).amax(dim=-1)
    t_far = torch.maximum(t_a, t_b).amin(dim=-1)
    return t_near, t_far


def transmittance(tau: torch.Tensor) -> torch.Tensor:
    """Transmittance ``[R, S]`` in front of each sample of optical depths τ ``[R, S]``: T_i = exp(−Σ_{j<i} τ_j)."""
    return torch.exp(-(torch.cumsum(tau, dim=-1) - tau))


def voxel_cells(pts: torch.Tensor, bound: float, res: int) -> torch.Tensor:
    """Integer cell ``[..., 3]`` of the ``res³`` grid over ``[-bound, bound]³`` that each point ``[..., 3]`` lies
    in (unclamped: points outside the box get indices outside 0..res−1)."""
    return torch.floor((pts + bound) * (res / (2.0 * bound))).long()


def composite(density: torch.Tensor, dt: float | torch.Tensor) -> torch.Tensor:
    """Weights ``[R, S]`` of samples with densities ``[R, S]`` on segments of length ``dt`` (a number or
    ``[R, 1]``/``[R, S]``): w_i = T_i · (1 − exp(−σ_i dt)), T_i = exp(−Σ_{j<i} σ_j dt)."""
    tau = density * dt
    return transmittance(tau) * (1.0 - torch.exp(-tau))


def composite_reference(density: torch.Tensor, dt: float) -> torch.Tensor:
    """Slow twin of :func:`composite`: the alpha-compositing loop per ray."""
    out = torch.zeros_like(density)
    for r in range(density.shape[0]):
        trans = 1.0
        for i in range(density.shape[1]):
            alpha = 1.0 - math.exp(-float(density[r, i]) * dt)
            out[r, i] = trans * alpha
            trans *= 1.0 - alpha
    return out


def _samples(origins, dirs, bound, near, far, n_samples, perturb, generator):
    t_near, t_far = ray_box(origins, dirs, bound)
    t_near = t_near.clamp(min=near)
    t_far = torch.maximum(t_far.clamp(max=far), t_near)  # empty segment where the ray misses the box
    length = (t_far - t_near)[:, None]
    r = origins.shape[0]
    dev = origins.device
    jitter = (torch.rand(r, n_samples, generator=generator, device=dev) if perturb else
              torch.full((r, n_samples), 0.5, device=dev))
    t = t_near[:, None] + (torch.arange(n_samples, dtype=origins.dtype, device=dev)[None] + jitter) * (length / n_samples)
    return t, length / n_samples


def _lookup_skip(skip_grid: torch.Tensor, pts: torch.Tensor, bound: float) -> torch.Tensor:
    res = skip_grid.shape[0]
    cell = voxel_cells(pts, bound, res).clamp(0, res - 1)
    flat = (cell[..., 0] * res + cell[..., 1]) * res + cell[..., 2]
    return skip_grid.reshape(-1)[flat]


def _masked_density(field, state, pts, mask, base=None):
    """Density ``[R, S]`` looked up at the samples where ``mask`` (None: all) holds, ``base`` (or 0) elsewhere,
    and the number of lookups."""
    r, s = pts.shape[:2]
    if mask is None:
        return field.density(pts.reshape(-1, 3), state).reshape(r, s), r * s
    sel = mask.nonzero(as_tuple=True)
    out = torch.zeros(r, s, dtype=pts.dtype, device=pts.device) if base is None else base
    if sel[0].numel():
        out = out.index_put(sel, field.density(pts[sel], state))
    return out, sel[0].numel()


def render_rays(field, state: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor, *, near: float,
                far: float, n_samples: int = 192, color_samples: int = 12, skip_grid: torch.Tensor | None = None,
                min_weight: float = 1e-4, background: float | torch.Tensor = 1.0, perturb: bool = False,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Render rays ``[R, 3]`` (unit directions) through ``field`` (a :class:`RadianceField`).

    Args:
        state: ``field.geometry_state()`` of this step.
        near, far: the ray segment considered (clipped to the field's box).
        n_samples: S stratified density samples per ray over its segment inside the box.
        color_samples: K, colour queries per ray (the K largest weights).
        skip_grid: ``[X, X, X]`` bool occupancy bitfield; samples in False voxels get zero density.
        min_weight: samples of smaller weight get no colour query.
        background: colour behind the scene (1 = white), a number or ``[R, 3]`` per ray, or a function of the
            rays' opacity ``[R]`` (detached) returning either (a background model that skips opaque rays).
        perturb: jitter the samples within their strata (training), from ``generator``.

    Returns:
        dict with ``rgb [R, 3]``, ``depth [R]`` (expected distance, ``far`` where empty), ``opacity [R]``,
        ``samples`` (density lookups) and ``color_samples`` (colour queries).
    """
    r = origins.shape[0]
    t, dt = _samples(origins, dirs, field.bound, near, far, n_samples, perturb, generator)
    pts = origins[:, None, :] + t[..., None] * dirs[:, None, :]  # [R, S, 3]
    keep = None if skip_grid is None else _lookup_skip(skip_grid, pts, field.bound)
    with torch.no_grad():
        density, n_lookups = _masked_density(field, state, pts, keep)
    if torch.is_grad_enabled() and state.requires_grad:
        # the autograd graph only where a sample can matter: visible (T > 1e-4) and not empty (τ > 1e-6)
        with torch.no_grad():
            tau = density * dt
            visible = transmittance(tau) > 1e-4
            need = visible & (tau > 1e-6)
        density, _ = _masked_density(field, state, pts, need, base=density.detach())
    weights = composite(density, dt)
    opacity = weights.sum(-1)
    k = min(color_samples, n_samples)
    top_w, top_i = weights.detach().topk(k, dim=-1)
    ray_k, slot = (top_w > min_weight).nonzero(as_tuple=True)
    samp = top_i[ray_k, slot]
    num = torch.zeros(r, 3, dtype=origins.dtype, device=origins.device)
    den = torch.zeros(r, dtype=origins.dtype, device=origins.device)
    if ray_k.numel():
        w_sel = weights[ray_k, samp]
        col = field.color(pts[ray_k, samp], dirs[ray_k])
        num = num.index_add(0, ray_k, w_sel[:, None] * col)
        den = den.index_add(0, ray_k, w_sel)
    c_bar = num / den.clamp(min=1e-8)[:, None]
    if callable(background):
        background = background(opacity.detach())
    rgb = opacity[:, None] * c_bar + (1.0 - opacity[:, None]) * background
    depth = (weights * t).sum(-1) + (1.0 - opacity) * far
    return {"rgb": rgb, "depth": depth, "opacity": opacity, "samples": torch.tensor(n_lookups),
            "color_samples": torch.tensor(ray_k.numel())}


def render_rays_dense(field, state: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor, *, near: float,
                      far: float, n_samples: int = 192, background: float = 1.0) -> dict[str, torch.Tensor]:
    """The naive reference renderer: density and colour at every one of the S samples of every ray, plain
    alpha compositing (no skipping, no colour selection). Used by tests and the benchmark."""
    r = origins.shape[0]
    t, dt = _samples(origins, dirs, field.bound, near, far, n_samples, False, None)
    pts = origins[:, None, :] + t[..., None] * dirs[:, None, :]
    flat = pts.reshape(-1, 3)
    density = field.density(flat, state).reshape(r, n_samples)
    col = field.color(flat, dirs[:, None, :].expand_as(pts).reshape(-1, 3)).reshape(r, n_samples, 3)
    weights = composite(density, dt)
    opacity = weights.sum(-1)
    rgb = (weights[..., None] * col).sum(1) + (1.0 - opacity[:, None]) * background
    depth = (weights * t).sum(-1) + (1.0 - opacity) * far
    return {"rgb": rgb, "depth": depth, "opacity": opacity}


def _view_background(field, origins: torch.Tensor, dirs: torch.Tensor):
    bg = getattr(field, "background_model", None)
    return 1.0 if bg is None else functools.partial(bg, origins, dirs)  # called with the rays' opacity


def pixel_offsets(k: int) -> list[tuple[float, float]]:
    """Where in its pixel (x, y in [0, 1]) each ray of a k×k grid over the pixel passes, row by row."""
    return [((a + 0.5) / k, (b + 0.5) / k) for b in range(k) for a in range(k)]


@torch.no_grad()
def render_image(field, samples: int, color_samples: int, c2w: torch.Tensor, height: int, width: int,
                 camera, *, state: torch.Tensor | None = None, skip: torch.Tensor | None = None,
                 chunk: int = 8192) -> dict[str, torch.Tensor]:
    """Render one view of camera ``c2w [4, 4]`` with intrinsics ``camera`` (a one-view
    :class:`~geocert_rs_sdf.data.Cameras`, or a focal length in pixels) on the field's device with ``samples``
    density samples and ``color_samples`` colour queries per ray: ``rgb [H, W, 3]``, ``depth [H, W]``,
    ``opacity [H, W]``; each pixel the mean of a k×k grid of rays over its area when the field's
    ``pixel_samples`` is k² > 1 (``--antialias``)."""
    from geocert_rs_sdf.data import FAR, NEAR, pixel_rays

    state = field.geometry_state() if state is None else state
    skip = field.skip_grid(state) if skip is None else skip
    near, far = getattr(field, "near", NEAR), getattr(field, "far", FAR)
    k = max(1, int(round(math.sqrt(getattr(field, "pixel_samples", 1)))))
    c2w = c2w[None].to(state.device)
    total: dict[str, torch.Tensor] = {}
    for offset in pixel_offsets(k):
        o, d = pixel_rays(c2w, height, width, camera, offset=offset)
        o, d = o.reshape(-1, 3), d.reshape(-1, 3)
        parts: dict[str, list[torch.Tensor]] = {"rgb": [], "depth": [], "opacity": []}
        for i in range(0, o.shape[0], chunk):
            oc, dc = o[i:i + chunk], d[i:i + chunk]
            out = render_rays(field, state, oc, dc, near=near, far=far, n_samples=samples,
                              color_samples=color_samples, skip_grid=skip, background=_view_background(field, oc, dc))
            for key in parts:
                parts[key].append(out[key])
        for key in parts:
            total[key] = total.get(key, 0) + torch.cat(parts[key]) / (k * k)
    return {"rgb": total["rgb"].reshape(height, width, 3).clamp(0, 1),
            "depth": total["depth"].reshape(height, width),
            "opacity": total["opacity"].reshape(height, width)}


@torch.no_grad()
def render_views(field, samples: int, color_samples: int, c2ws: torch.Tensor, height: int, width: int,
                 cameras, progress: bool = True, desc: str = "render") -> list[dict[str, torch.Tensor]]:
    """Render several views (the geometry grid and bitfield computed once); results on the CPU. ``cameras``:
    the views' :class:`~geocert_rs_sdf.data.Cameras` (one camera serves all), or a focal length in pixels."""
    from geocert.pipeline.progress import progress as track
    from geocert_rs_sdf.data import Cameras

    state = field.geometry_state()
    skip = field.skip_grid(state)
    outs = []
    for k, c in enumerate(track(c2ws, desc, unit="views", disable=not progress)):
        cam = cameras[k if len(cameras) > 1 else 0] if isinstance(cameras, Cameras) else cameras
        outs.append({key: v.cpu() for key, v in render_image(field, samples, color_samples, c, height, width, cam,
                                                             state=state, skip=skip).items()})
    return outs


def orbit_poses(n: int, radius: float, elevation_deg: float, up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """``[n, 4, 4]`` camera-to-world matrices circling the ``up`` axis through the origin at ``radius``, raised
    ``elevation_deg`` above the plane perpendicular to it, looking at the origin."""
    import numpy as np

    from geocert_rs_sdf.scenes import look_at

    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    e1 = np.cross(up, (1.0, 0.0, 0.0) if abs(up[0]) < 0.9 else (0.0, 1.0, 0.0))
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    if np.allclose(up, (0.0, 0.0, 1.0)):
        e1, e2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])  # the bundled scenes' orbit, unchanged
    el = math.radians(elevation_deg)
    poses = []
    for k in range(n):
        az = 2 * math.pi * k / n
        eye = radius * (math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * up)
        poses.append(look_at(eye, up=tuple(up)))
    return torch.from_numpy(np.stack(poses)).float()


def scene_up(c2w: torch.Tensor) -> tuple[float, float, float]:
    """The scene's up direction: the mean of the cameras' up (y) axes, snapped to +z when within 10° of it."""
    up = c2w[:, :3, 1].double().mean(0)
    up = up / up.norm().clamp(min=1e-12)
    if float(up[2]) > math.cos(math.radians(10.0)):
        return (0.0, 0.0, 1.0)
    return tuple(float(v) for v in up)
