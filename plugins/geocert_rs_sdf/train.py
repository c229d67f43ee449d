"""Fitting a :class:`RadianceField` to a NeRF-synthetic scene, rendering views, and checkpoints."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from geocert_rs_sdf.data import FAR, NEAR, Split, pixel_rays
from geocert_rs_sdf.field import RadianceField
from geocert_rs_sdf.render import render_rays

__all__ = ["FieldSettings", "FitSettings", "build_field", "fit", "render_image", "render_views", "psnr",
           "save_checkpoint", "load_checkpoint", "make_optimizer", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "geocert-rs-sdf-nerf/1"
SKIP_EVERY = 16  # steps between refreshes of the empty-space bitfield during training
SHARPNESS_START = 8.0  # default multiple of the sharpness s that training starts at (see sharpness_at)
FOREGROUND_BELOW = 0.99  # a training pixel with a channel below this is not background (ray sampling)


@dataclasses.dataclass
class FieldSettings:
    """Everything that defines the model and its renderer (stored in checkpoints)."""

    bound: float = 1.0
    grid_res: int = 96
    sigma: float = 1.0
    sharpness: float = 0.025
    density: str = "rs-sdf"
    hash_levels: int = 8
    hash_log2: int = 15
    hash_max_res: int = 128
    hidden: int = 64
    view_dependent: bool = False
    samples: int = 192
    color_samples: int = 12


@dataclasses.dataclass
class FitSettings:
    """Optimisation settings."""

    steps: int = 4000
    rays: int = 2048
    lr: float = 1e-2
    grid_lr: float = 0.1
    foreground_fraction: float = 0.5
    mask_weight: float = 1.0
    sharpness_start: float = SHARPNESS_START
    seed: int = 0


def build_field(fs: FieldSettings, generator: torch.Generator | None = None,
                init_sharpness: float | None = None) -> RadianceField:
    """The field of ``fs``; its initial density refers to ``init_sharpness`` (default: the sharpness that
    training starts at, ``SHARPNESS_START · fs.sharpness``)."""
    init_sharpness = fs.sharpness * SHARPNESS_START if init_sharpness is None else init_sharpness
    return RadianceField(init_sharpness=init_sharpness, bound=fs.bound, grid_res=fs.grid_res, sigma=fs.sigma, sharpness=fs.sharpness,
                         density=fs.density, hash_levels=fs.hash_levels, hash_log2=fs.hash_log2,
                         hash_max_res=fs.hash_max_res, hidden=fs.hidden, view_dependent=fs.view_dependent,
                         generator=generator)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = torch.mean((pred.clamp(0, 1) - target) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def make_optimizer(field: RadianceField, lr: float, grid_lr: float) -> torch.optim.Adam:
    groups = [{"params": [field.logits], "lr": grid_lr, "eps": 1e-8},
              {"params": list(field.encoding.parameters()), "lr": lr, "eps": 1e-15},
              {"params": list(field.mlp.parameters()), "lr": lr, "eps": 1e-15, "weight_decay": 1e-6}]
    return torch.optim.Adam(groups, betas=(0.9, 0.99))


def lr_scale(step: int, total: int) -> float:
    """Learning-rate factor: a 2% linear warm-up, then exponential decay to 0.1 at the last step."""
    warm = max(1, total // 50)
    if step < warm:
        return (step + 1) / warm
    return 0.1 ** ((step - warm) / max(total - warm, 1))


def sharpness_at(step: int, total: int, final: float, start_factor: float) -> float:
    """The annealed sharpness s: ``start_factor · final`` at step 0, geometrically down to ``final`` at half
    the run, then constant (smooth, far-reaching geometry gradients first, a crisp surface at the end)."""
    frac = min(1.0, step / max(0.5 * total, 1.0))
    return final * start_factor ** (1.0 - frac)


def fit(field: RadianceField, fs: FieldSettings, st: FitSettings, train: Split, *,
        log: Callable[[int, dict[str, float]], None] | None = None, progress: bool = True,
        start_step: int = 0, optimizer_state: dict | None = None,
        checkpoint_fn: Callable[[int, torch.optim.Optimizer], None] | None = None,
        checkpoint_every: int = 0) -> dict[str, Any]:
    """Optimise ``field`` on the training rays from ``start_step`` to ``st.steps``.

    Every step draws ``st.rays`` random pixels of all training views (a ``foreground_fraction`` of them from
    the pixels that are not white background, the rest uniformly from all pixels), recomputes the geometry grid (for
    rs-sdf: sigmoid → exact Gaussian blur → σ·Φ⁻¹, inside the step's autograd graph; the sharpness s is
    annealed by :func:`sharpness_at`), renders and takes one
    Adam step on the MSE (plus ``mask_weight`` × the MSE of the ray opacity against the images' alpha,
    when they have one). Returns timing and the last step's statistics."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(st.seed * 1000003 + start_step)
    origins, dirs = pixel_rays(train.c2w, train.height, train.width, train.focal)
    view_of_ray = torch.arange(train.c2w.shape[0]).repeat_interleave(train.height * train.width)
    cam_origin = train.c2w[:, :3, 3].float()
    dirs = dirs.reshape(-1, 3)
    del origins
    colors = train.images.reshape(-1, 3)
    alpha = train.alpha.reshape(-1) if train.alpha is not None and st.mask_weight > 0 else None
    fg = (colors < FOREGROUND_BELOW).any(-1).nonzero().squeeze(1)
    n_fg = int(round(st.rays * st.foreground_fraction)) if len(fg) else 0
    opt = make_optimizer(field, st.lr, st.grid_lr)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    base_lrs = [st.grid_lr, st.lr, st.lr]
    skip = None
    t0, c0 = time.perf_counter(), time.process_time()
    bar = tqdm(range(start_step, st.steps), desc="train-nerf", initial=start_step, total=st.steps,
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    stats: dict[str, float] = {}
    ema = None
    for step in bar:
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * lr_scale(step, st.steps)
        field.sharpness = sharpness_at(step, st.steps, fs.sharpness, st.sharpness_start)
        idx = torch.randint(0, dirs.shape[0], (st.rays,), generator=gen)
        if n_fg:
            idx[:n_fg] = fg[torch.randint(0, len(fg), (n_fg,), generator=gen)]
        state = field.geometry_state()
        if skip is None or step % SKIP_EVERY == 0:
            skip = field.skip_grid(state)
        out = render_rays(field, state, cam_origin[view_of_ray[idx]], dirs[idx], near=NEAR, far=FAR,
                          n_samples=fs.samples, color_samples=fs.color_samples, skip_grid=skip, perturb=True,
                          generator=gen)
        loss = torch.mean((out["rgb"] - colors[idx]) ** 2)
        if alpha is not None:
            loss = loss + st.mask_weight * torch.mean((out["opacity"] - alpha[idx]) ** 2)
        opt.zero_grad(set_to_none=True)
        if loss.requires_grad:  # (no sample of the batch in occupied space: nothing to update)
            loss.backward()
            opt.step()
        lv = loss.item()
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        stats = {"loss": lv, "train_psnr": -10 * math.log10(max(ema, 1e-10)),
                 "lookups_per_ray": out["samples"].item() / st.rays,
                 "color_per_ray": out["color_samples"].item() / st.rays}
        if step % 10 == 0 or step == st.steps - 1:
            bar.set_postfix(loss=f"{lv:.4f}", psnr=f"{stats['train_psnr']:.2f}",
                            lookups=f"{stats['lookups_per_ray']:.0f}", colour=f"{stats['color_per_ray']:.1f}")
        if log is not None and (step % 100 == 0 or step == st.steps - 1):
            log(step, stats)
        if checkpoint_fn is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 \
                and step + 1 < st.steps:
            checkpoint_fn(step + 1, opt)
    bar.close()
    field.sharpness = fs.sharpness
    return {"train_s": time.perf_counter() - t0, "train_cpu_s": time.process_time() - c0, "steps_run": st.steps - start_step, "last": stats,
            "optimizer": opt}


@torch.no_grad()
def render_image(field: RadianceField, fs: FieldSettings, c2w: torch.Tensor, height: int, width: int,
                 focal: float, *, state: torch.Tensor | None = None, skip: torch.Tensor | None = None,
                 chunk: int = 8192) -> dict[str, torch.Tensor]:
    """Render one view: ``rgb [H, W, 3]``, ``depth [H, W]``, ``opacity [H, W]``."""
    state = field.geometry_state() if state is None else state
    skip = field.skip_grid(state) if skip is None else skip
    o, d = pixel_rays(c2w[None], height, width, focal)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    parts: dict[str, list[torch.Tensor]] = {"rgb": [], "depth": [], "opacity": []}
    for i in range(0, o.shape[0], chunk):
        out = render_rays(field, state, o[i:i + chunk], d[i:i + chunk], near=NEAR, far=FAR,
                          n_samples=fs.samples, color_samples=fs.color_samples, skip_grid=skip)
        for k in parts:
            parts[k].append(out[k])
    return {"rgb": torch.cat(parts["rgb"]).reshape(height, width, 3).clamp(0, 1),
            "depth": torch.cat(parts["depth"]).reshape(height, width),
            "opacity": torch.cat(parts["opacity"]).reshape(height, width)}


@torch.no_grad()
def render_views(field: RadianceField, fs: FieldSettings, c2ws: torch.Tensor, height: int, width: int,
                 focal: float, progress: bool = True, desc: str = "render") -> list[dict[str, torch.Tensor]]:
    """Render several views (the geometry grid and bitfield computed once)."""
    from tqdm.auto import tqdm

    state = field.geometry_state()
    skip = field.skip_grid(state)
    return [render_image(field, fs, c, height, width, focal, state=state, skip=skip)
            for c in tqdm(c2ws, desc=desc, disable=not progress, leave=False, file=sys.stderr)]


def save_checkpoint(path: str | Path, field: RadianceField, fs: FieldSettings, st: FitSettings, step: int,
                    optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None) -> Path:
    """Atomically write a checkpoint (model state, settings as plain data, step, optimizer state)."""
    from geocert.io import atomic_write

    data = {"format": CHECKPOINT_FORMAT, "field": dataclasses.asdict(fs), "fit": dataclasses.asdict(st),
            "step": step, "model": field.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None, "extra": extra or {}}
    with atomic_write(path, "wb") as fh:
        torch.save(data, fh)
    return Path(path)


def load_checkpoint(path: str | Path) -> tuple[RadianceField, FieldSettings, FitSettings, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`; raises InputError naming the file if invalid."""
    from geocert.errors import InputError
    from geocert.io import read_checkpoint

    path = Path(path)
    data = read_checkpoint(path)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a geocert rs-sdf NeRF checkpoint (written by `geocert train-nerf`)")
    try:
        fs = FieldSettings(**data["field"])
        st = FitSettings(**data["fit"])
        field = build_field(fs)
        field.load_state_dict(data["model"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise InputError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from None
    return field, fs, st, data
