"""Gaussian smoothing: Monte-Carlo sampling of a base model under noise, exact grid blur, RS-SDF.

Shape letters: B batch, M Monte-Carlo samples, C classes, X Y Z voxels, H W pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "sample_counts",
    "sample_counts_reference",
    "gaussian_taps",
    "blur_matrix",
    "gaussian_blur",
    "gaussian_blur_reference",
    "sdf_from_probability",
    "smooth_occupancy",
]


def _check_labels(labels: torch.Tensor, b: int, num_classes: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"base model must return a tensor of class labels, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"base model must return integer class labels [B, *components], got dtype {labels.dtype}")
    if labels.ndim < 1 or labels.shape[0] != b:
        raise ValueError(f"base model must return labels of shape [B={b}, *components], got {tuple(labels.shape)}")
    if labels.numel():
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"base model returned labels outside [0, {num_classes}): min {lo}, max {hi}")
    return labels


def _noise(shape: tuple[int, ...], x: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype) * sigma


def sample_counts(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    sigma: float,
    n: int,
    num_classes: int,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    progress: bool | str = False,
) -> torch.Tensor:
    """Count the base model's votes under Gaussian noise, streamed in batches.

    Every one of the ``n`` samples gets its own noise draw ε ~ N(0, σ²I) of the shape of ``x``; the model sees
    batches ``x + ε`` of shape ``[B, *x.shape]`` (B ≤ ``batch_size``) and must return integer class labels of
    shape ``[B, *components]`` (for an image ``[3, H, W]`` → ``[B, H, W]``; for points ``[N, 3]`` → ``[B, N]``).

    Args:
        f: the base model, a callable batch → labels.
        x: the clean input, any shape; its device and dtype are used for the noise.
        sigma: noise standard deviation σ > 0, in the units of ``x``.
        n: number of Monte-Carlo samples M.
        num_classes: C; labels must lie in ``[0, C)``.
        batch_size: samples per forward pass.
        generator: the source of randomness (on ``x``'s device); ``None`` uses torch's global generator.
        progress: show a progress bar (a string is used as its label).

    Returns:
        ``[*components, C]`` int64 counts on ``x``'s device; each component's counts sum to ``n``.
        Memory is O(components × C) whatever ``n`` is.
    """
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    counts: torch.Tensor | None = None
    comp_shape: tuple[int, ...] | None = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=progress if isinstance(progress, str) else "sampling", unit="sample", leave=False)
    done = 0
    try:
        with torch.inference_mode():
            while done < n:
                b = min(batch_size, n - done)
                batch = x.unsqueeze(0) + _noise((b, *x.shape), x, sigma, generator)
                labels = _check_labels(f(batch), b, num_classes)
                if comp_shape is None:
                    comp_shape = tuple(labels.shape[1:])
                    m = math.prod(comp_shape)
                    counts = torch.zeros(m * num_classes, dtype=torch.int64, device=labels.device)
                    offsets = torch.arange(m, device=labels.device, dtype=torch.int64) * num_classes
                elif tuple(labels.shape[1:]) != comp_shape:
                    raise ValueError(f"base model changed its output shape from {comp_shape} to {tuple(labels.shape[1:])}")
                idx = (labels.reshape(b, -1).to(torch.int64) + offsets).reshape(-1)
                counts += torch.bincount(idx, minlength=counts.numel())
                done += b
                if bar is not None:
                    bar.update(b)
    finally:  # also on error, so that an error message starts on its own line
        if bar is not None:
            bar.close()
    if counts is None:  # n == 0: ask the model once for its output shape
        with torch.inference_mode():
            comp_shape = tuple(_check_labels(f(x.unsqueeze(0)), 1, num_classes).shape[1:])
        return torch.zeros((*comp_shape, num_classes), dtype=torch.int64, device=x.device)
    return counts.reshape(*comp_shape, num_classes)


def sample_counts_reference(f, samples: torch.Tensor, *, num_classes: int) -> torch.Tensor:
    """Slow twin of :func:`sample_counts` given the noisy samples ``[M, *x.shape]`` themselves: the model
    sees one sample at a time and votes are tallied by Python loops over components."""
    counts = None
    for sample in samples:
        labels = f(sample.unsqueeze(0))[0]
        if counts is None:
            counts = torch.zeros((*labels.shape, num_classes), dtype=torch.int64)
        flat = labels.reshape(-1)
        cflat = counts.reshape(-1, num_classes)
        for i in range(flat.numel()):
            cflat[i, int(flat[i])] += 1
    return counts


# --------------------------------------------------------------------------------------------- grid blur


def gaussian_taps(sigma: float, truncate: float = 4.0, dtype=torch.float64, device=None) -> torch.Tensor:
    """Taps of the exact Gaussian for a grid of unit cells: ``w_j = Φ((j+½)/σ) − Φ((j−½)/σ)``.

    The grid is read as piecewise-constant voxels, so each tap is the Gaussian mass falling on cell j and a
    half-space whose boundary lies on voxel faces blurs to exactly ``Φ(d/σ)`` (d = signed distance of the
    voxel centre). Taps cover ``|j| ≤ ceil(truncate·σ)`` and are renormalized to sum to 1; σ → 0 gives [1].

    Returns:
        ``[2r+1]`` taps, r = ceil(truncate·σ).
    """
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    if sigma == 0:
        return torch.ones(1, dtype=dtype, device=device)
    r = max(1, math.ceil(truncate * sigma))
    j = torch.arange(-r, r + 1, dtype=torch.float64)
    cdf = torch.special.ndtr((j + 0.5) / sigma) - torch.special.ndtr((j - 0.5) / sigma)
    return (cdf / cdf.sum()).to(dtype=dtype, device=device)


def _pad_axis(x: torch.Tensor, dim: int, r: int, mode: str, value: float) -> torch.Tensor:
    if r == 0:
        return x
    size = list(x.shape)
    if mode == "replicate":
        lo = x.narrow(dim, 0, 1).expand(*size[:dim], r, *size[dim + 1:])
        hi = x.narrow(dim, x.shape[dim] - 1, 1).expand(*size[:dim], r, *size[dim + 1:])
    elif mode == "constant":
        size[dim] = r
        lo = hi = x.new_full(size, value)
    else:
        raise ValueError(f"mode must be 'replicate' or 'constant', got {mode!r}")
    return torch.cat([lo, x, hi], dim=dim)


def _blur_axis_shifts(x: torch.Tensor, dim: int, taps: torch.Tensor, mode: str, value: float) -> torch.Tensor:
    r = (taps.numel() - 1) // 2
    if r == 0:
        return x * taps[0]
    xp = _pad_axis(x, dim, r, mode, value)
    length = x.shape[dim]
    w = taps.tolist()
    out = xp.narrow(dim, r, length) * w[r]  # a fresh tensor: safe to accumulate into in place (autograd too)
    for j in range(1, r + 1):
        out.add_(xp.narrow(dim, r - j, length) + xp.narrow(dim, r + j, length), alpha=w[r + j])
    return out


def blur_matrix(length: int, taps: torch.Tensor, mode: str = "replicate") -> torch.Tensor:
    """The ``[L, L]`` matrix B with ``(B @ v)_i = Σ_t taps_t · v_{i+t}``, the border rule folded in
    (``replicate``: indices clamp to the edge; ``constant``: outside terms dropped, the fill added apart)."""
    r = (taps.numel() - 1) // 2
    i = torch.arange(length)
    mat = torch.zeros(length, length, dtype=taps.dtype)
    for t in range(-r, r + 1):
        j = i + t
        if mode == "replicate":
            mat.index_put_((i, j.clamp(0, length - 1)), taps[t + r].expand(length), accumulate=True)
        else:
            ok = (j >= 0) & (j < length)
            mat.index_put_((i[ok], j[ok]), taps[t + r].expand(int(ok.sum())), accumulate=True)
    return mat


_MATMUL_MAX_LENGTH = 1024


def _blur_axis(x: torch.Tensor, dim: int, taps: torch.Tensor, mode: str, value: float) -> torch.Tensor:
    """Blur along ``dim``. Axes up to 1024 long use one banded-matrix product (BLAS, no padded copies, cost
    independent of σ); longer axes use shifted multiply-adds."""
    length = x.shape[dim]
    if mode not in ("replicate", "constant"):
        raise ValueError(f"mode must be 'replicate' or 'constant', got {mode!r}")
    if length > _MATMUL_MAX_LENGTH or taps.numel() == 1:
        return _blur_axis_shifts(x, dim, taps, mode, value)
    mat = blur_matrix(length, taps, mode).to(dtype=x.dtype, device=x.device)
    pre = math.prod(x.shape[:dim])
    post = math.prod(x.shape[dim + 1:])
    if post == 1:
        out = (x.reshape(pre, length) @ mat.T).reshape(x.shape)
    else:
        out = torch.matmul(mat, x.reshape(pre, length, post)).reshape(x.shape)
    if mode == "constant" and value != 0.0:
        # the fill's share: value × (mass of the taps that fall outside the grid), per position
        outside = (1.0 - mat.sum(1)).to(dtype=x.dtype, device=x.device) * value
        shape = [1] * x.ndim
        shape[dim] = length
        out = out + outside.reshape(shape)
    return out


def gaussian_blur(
    grid: torch.Tensor,
    sigma: float | tuple[float, ...],
    *,
    spatial_dims: int | None = None,
    mode: str = "replicate",
    value: float = 0.0,
    truncate: float = 4.0,
) -> torch.Tensor:
    """Separable Gaussian blur of a 2D or 3D grid with exact taps (see :func:`gaussian_taps`).

    Args:
        grid: ``[..., H, W]`` or ``[..., X, Y, Z]`` float tensor; leading batch/channel dims are kept.
        sigma: σ in grid units (cells), one value or one per spatial dim; 0 leaves that axis unchanged.
        spatial_dims: how many trailing dims are spatial (2 or 3); default ``grid.ndim`` when that is 2 or 3.
        mode: padding outside the grid: ``"replicate"`` (edge values continue; right for occupancy that
            extends past the border) or ``"constant"`` (filled with ``value``; keeps total mass when
            ``value`` is 0 and the content lies ≥ truncate·σ inside the grid).
        truncate: taps stop at ``ceil(truncate·σ)`` cells.

    Returns:
        Tensor of the same shape, dtype and device; differentiable in ``grid``.
    """
    if spatial_dims is None:
        if grid.ndim not in (2, 3):
            raise ValueError(f"grid has {grid.ndim} dims: pass spatial_dims=2 or 3 for batched/channel grids")
        spatial_dims = grid.ndim
    if spatial_dims not in (1, 2, 3) or spatial_dims > grid.ndim:
        raise ValueError(f"spatial_dims must be 1, 2 or 3 and <= grid.ndim, got {spatial_dims}")
    if not grid.dtype.is_floating_point:
        raise TypeError(f"grid must be a floating-point tensor, got {grid.dtype}")
    sigmas = (sigma,) * spatial_dims if isinstance(sigma, (int, float)) else tuple(sigma)
    if len(sigmas) != spatial_dims:
        raise ValueError(f"need {spatial_dims} sigmas, got {len(sigmas)}")
    out = grid
    for axis, s in enumerate(sigmas):
        dim = grid.ndim - spatial_dims + axis
        taps = gaussian_taps(float(s), truncate)
        out = _blur_axis(out, dim, taps, mode, value)
    return out


def gaussian_blur_reference(grid: torch.Tensor, sigma: float, *, mode: str = "replicate", value: float = 0.0,
                            truncate: float = 4.0) -> torch.Tensor:
    """Slow twin of :func:`gaussian_blur` for an unbatched 2D/3D grid: a direct dense N-D sum per cell."""
    import itertools

    taps = gaussian_taps(sigma, truncate).tolist()
    r = (len(taps) - 1) // 2
    g = grid.detach().double()
    out = torch.zeros_like(g)
    shape = g.shape
    for idx in itertools.product(*(range(s) for s in shape)):
        acc = 0.0
        for off in itertools.product(range(-r, r + 1), repeat=g.ndim):
            w = 1.0
            src = []
            outside = False
            for d, o in enumerate(off):
                w *= taps[o + r]
                k = idx[d] + o
                if k < 0 or k >= shape[d]:
                    if mode == "constant":
                        outside = True
                    k = min(max(k, 0), shape[d] - 1)
                src.append(k)
            acc += w * (value if outside else float(g[tuple(src)]))
        out[idx] = acc
    return out.to(grid.dtype)


def sdf_from_probability(p: torch.Tensor, sigma: float, eps: float = 1e-6) -> torch.Tensor:
    """RS-SDF: the certified radius σ·Φ⁻¹(p) of the smoothed occupancy classifier, as a signed distance.

    Positive inside (p > ½), negative outside, zero on the ½ level set. ``p`` is clamped to
    ``[eps, 1 − eps]`` so that p ∈ {0, 1} gives a finite distance of ±σ·Φ⁻¹(1 − eps) (≈ ±4.75σ for 1e-6)
    and gradients stay finite. Same shape as ``p``.
    """
    return sigma * torch.special.ndtri(p.clamp(eps, 1.0 - eps))


def smooth_occupancy(occupancy: torch.Tensor, sigma: float, **kwargs) -> torch.Tensor:
    """Gaussian-smoothed occupancy p = (occupancy ∗ N(0, σ²)) clamped to [0, 1] (σ in voxels)."""
    return gaussian_blur(occupancy, sigma, **kwargs).clamp(0.0, 1.0)
