"""Fitting a :class:`RadianceField` to a NeRF-synthetic scene, and its checkpoints.

The field and its optimisation are described by the nested settings of ``geocert train-nerf``'s config
(:class:`~geocert_rs_sdf.config.FieldSettings`, :class:`~geocert_rs_sdf.config.FitSettings`); the scene box
(``bound``), the ray segment and the background model's sphere come from the data. Everything runs on the field's device; on the CPU the numbers are the same
for the same seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from geocert_rs_sdf.background import Background
from geocert_rs_sdf.carve import carve, flat_pixels, least_area, seal
from geocert_rs_sdf.config import AUTO_FIELD, SHARPNESS_START, FieldSettings, FitSettings
from geocert_rs_sdf.data import FAR, NEAR, Split, pixel_rays
from geocert_rs_sdf.field import RadianceField
from geocert_rs_sdf.render import render_rays

__all__ = ["FieldSettings", "FitSettings", "build_field", "fit", "save_checkpoint", "load_checkpoint",
           "make_optimizer", "lr_scale", "sharpness_at", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "geocert-rs-sdf-nerf/1"
SKIP_EVERY = 16  # steps between refreshes of the empty-space bitfield during training
CARVE_AT = (0.5, 0.7, 0.9)  # space carving after these fractions of the run (rs-sdf, --carve)
CARVE_MIN_STEPS = 1000
CARVE_RAYS = 1_000_000  # at most this many training rays per carving pass (every k-th pixel per axis)
ANTIALIAS_SAMPLES = 4  # rays per pixel (a 2×2 grid) of rendered views with --antialias on
EDGE_OPAQUE = 0.99  # training pixels with FOREGROUND_ALPHA < alpha < this are the silhouette's (EdgeRays)
FOREGROUND_ALPHA = 0.01  # a training pixel whose alpha (or mask) exceeds this is the object's (ray sampling)


def fill_auto(fs: FieldSettings, *, bundled: bool) -> FieldSettings:
    """``fs`` with its None (auto) sharpness and colour-model sizes set to ``AUTO_FIELD``'s values for the
    bundled scene or for a scene given as DATA."""
    values = AUTO_FIELD["bundled" if bundled else "data"]
    return dataclasses.replace(fs, **{k: v for k, v in values.items() if getattr(fs, k) is None})


def resolve_field(fs: FieldSettings, split: Split, *, bundled: bool = False) -> FieldSettings:
    """``fs`` with its "auto" settings decided for the scene: :func:`fill_auto`; ``background`` white for RGBA images, learned
    otherwise; ``view_dependent`` and ``antialias`` off for the ``bundled`` (Lambertian, procedural,
    pixel-centre sampled) scene, on otherwise.
    InputError when ``random`` has no alpha or masks to composite with."""
    from geocert.errors import InputError

    fs = fill_auto(fs, bundled=bundled)
    if fs.view_dependent == "auto":
        fs = dataclasses.replace(fs, view_dependent="off" if bundled else "on")
    if fs.antialias == "auto":
        fs = dataclasses.replace(fs, antialias="off" if bundled else "on")
    if fs.background == "auto":
        return dataclasses.replace(fs, background=split.background)
    if fs.background == "random" and split.alpha is None:
        raise InputError(f"{split.files[0]}: --background random needs images with alpha or masks; these have "
                         f"neither (use --background learned)")
    return fs


def build_field(fs: FieldSettings, bound: float, generator: torch.Generator | None = None,
                init_sharpness: float | None = None, *, near: float = NEAR, far: float = FAR,
                background_radius: float = 10.0) -> RadianceField:
    """The field of ``fs`` over the box ``[-bound, bound]³`` (on the CPU; move it with ``.to(device)``); its
    initial density refers to ``init_sharpness`` (default: the sharpness that training starts at,
    ``SHARPNESS_START · fs.sharpness``). The scene's ray segment (``near``, ``far``) and its background
    model (``background_model``, a :class:`~geocert_rs_sdf.background.Background` of ``fs.background``,
    "auto" read as white) and the rays per rendered pixel (``pixel_samples``: ``ANTIALIAS_SAMPLES`` with
    ``antialias`` on, else 1) ride along as attributes of the field; ``view_dependent`` and ``antialias``
    "auto" are read as off."""
    fs = fill_auto(fs, bundled=True)  # (None read as the bundled scene's values)
    init_sharpness = fs.sharpness * SHARPNESS_START if init_sharpness is None else init_sharpness
    field = RadianceField(init_sharpness=init_sharpness, bound=bound, grid_res=fs.grid_res, sigma=fs.sigma,
                          sharpness=fs.sharpness,
                          density=fs.density, hash_levels=fs.hash_levels, hash_log2=fs.hash_log2,
                          hash_max_res=fs.hash_max_res, hidden=fs.hidden, view_dependent=fs.view_dependent == "on",
                          generator=generator)
    field.near, field.far = float(near), float(far)
    field.pixel_samples = ANTIALIAS_SAMPLES if fs.antialias == "on" else 1  # rays per pixel in rendered views
    mode = "white" if fs.background == "auto" else fs.background
    field.background_model = Background(mode, background_radius, generator=generator)
    return field


def background_radius(split: Split) -> float:
    """The learned background's sphere: twice the farthest training camera's distance from the box centre."""
    from geocert_rs_sdf.background import RADIUS_FACTOR

    return RADIUS_FACTOR * float(split.c2w[:, :3, 3].norm(dim=-1).max())


def make_optimizer(field: RadianceField, lr: float, grid_lr: float) -> torch.optim.Adam:
    groups = [{"params": [field.logits], "lr": grid_lr, "eps": 1e-8},
              {"params": list(field.encoding.parameters()), "lr": lr, "eps": 1e-15},
              {"params": list(field.mlp.parameters()), "lr": lr, "eps": 1e-15, "weight_decay": 1e-6}]
    bg = getattr(field, "background_model", None)
    if bg is not None and bg.parameters_to_train():
        groups.append({"params": bg.parameters_to_train(), "lr": lr, "eps": 1e-15})
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
        start_step: int = 0, optimizer_state: dict | None = None, loop_state: dict | None = None,
        checkpoint_fn: Callable[[int, torch.optim.Optimizer, dict], None] | None = None,
        checkpoint_every: int = 0) -> dict[str, Any]:
    """Optimise ``field`` on the training rays from ``start_step`` to ``st.steps``.

    Every step draws ``st.rays`` random pixels of all training views (a ``foreground_fraction`` of them from
    the object's pixels, alpha or mask > 0.01, when the scene has alpha or masks; the rest, or all of them
    without, uniformly from all pixels; pixels that nerfstudio's ``mask_path`` masks out are never drawn),
    recomputes the geometry grid (for rs-sdf: sigmoid → exact Gaussian blur → σ·Φ⁻¹, inside the step's
    autograd graph; the sharpness s is annealed by :func:`sharpness_at`), renders and takes one Adam step on
    the MSE (plus ``mask_weight`` × the MSE of the ray opacity against the alpha or masks, when there are
    some). The background behind the box is the field's ``background_model`` (a random colour per ray for
    ``random``, with the target composited on it by the alpha). Runs on the field's device (rays, images
    and random draws there).

    ``checkpoint_fn(step, optimizer, loop_state)`` is called every ``checkpoint_every`` steps; ``loop_state``
    (the random generator, the empty-space bitfield and the loss average) handed back with ``start_step`` and
    ``optimizer_state`` continues the run exactly as if it had not stopped. Returns timing, the last step's
    statistics, the optimizer and the final loop state."""
    from geocert.pipeline.progress import Progress

    fs = fill_auto(fs, bundled=True)  # (None read as the bundled scene's values, as build_field does)
    device = field.logits.device
    loop_state = loop_state or {}
    gen = torch.Generator(device=device)
    if loop_state.get("rng") is not None and loop_state.get("device_type") == device.type:
        gen.set_state(loop_state["rng"])  # resume exactly where the checkpointed run was
    else:
        gen.manual_seed(st.seed * 1000003 + start_step)
    c2w = train.c2w.to(device)
    origins, dirs = pixel_rays(c2w, train.height, train.width, train.cameras)
    view_of_ray = torch.arange(c2w.shape[0], device=device).repeat_interleave(train.height * train.width)
    cam_origin = c2w[:, :3, 3].float()
    dirs = dirs.reshape(-1, 3)
    del origins
    colors = train.images.to(device).reshape(-1, 3)
    all_alpha = train.alpha.to(device).reshape(-1) if train.alpha is not None else None
    alpha = all_alpha if st.mask_weight > 0 else None
    valid = train.valid.to(device).reshape(-1) if train.valid is not None else None  # nerfstudio's mask_path
    pool = valid.nonzero().squeeze(1) if valid is not None else None
    fg_pix = all_alpha > FOREGROUND_ALPHA if all_alpha is not None else None
    if fg_pix is not None and valid is not None:
        fg_pix = fg_pix & valid
    fg = fg_pix.nonzero().squeeze(1) if fg_pix is not None else colors[:0, 0].long()
    n_fg = int(round(st.rays * st.foreground_fraction)) if len(fg) else 0
    bg_model = field.background_model
    edge = edge_rays(field, train, all_alpha, valid, bg_model.mode, device)
    near, far = field.near, field.far
    opt = make_optimizer(field, st.lr, st.grid_lr)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    base_lrs = [st.grid_lr] + [st.lr] * (len(opt.param_groups) - 1)  # grid, hash, MLP (, background)
    skip = loop_state["skip"].to(device) if loop_state.get("skip") is not None else None
    t0, c0 = time.perf_counter(), time.process_time()
    bar = Progress(st.steps, "train-nerf", "steps", initial=start_step, disable=not progress)
    stats: dict[str, float] = {}
    ema = loop_state.get("ema")

    def carried() -> dict:
        """What the loop carries from step to step besides the weights and the optimizer (for checkpoints)."""
        return {"rng": gen.get_state(), "skip": None if skip is None else skip.cpu(), "ema": ema,
                "device_type": device.type, "carves": carves}
    carve_steps = carve_schedule(st) if field.density_mode == "rs-sdf" else set()
    carves = list(loop_state.get("carves") or [])
    carve_idx = strided_pixels(c2w.shape[0], train.height, train.width, device) if carve_steps else None
    least_area_step = max(carve_steps) if carve_steps and st.least_area else None
    for step in range(start_step, st.steps):
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * lr_scale(step, st.steps)
        field.sharpness = sharpness_at(step, st.steps, fs.sharpness, st.sharpness_start)
        if pool is None:
            idx = torch.randint(0, dirs.shape[0], (st.rays,), generator=gen, device=device)
        else:
            idx = pool[torch.randint(0, len(pool), (st.rays,), generator=gen, device=device)]
        if n_fg:
            idx[:n_fg] = fg[torch.randint(0, len(fg), (n_fg,), generator=gen, device=device)]
        state = field.geometry_state()
        if skip is None or step % SKIP_EVERY == 0:
            skip = field.skip_grid(state)
        ray_o, ray_d = cam_origin[view_of_ray[idx]], dirs[idx]
        group = None
        if edge is not None:  # partly covered pixels: k×k rays each, as the renders draw them
            ray_o, ray_d, group = edge.expand(idx, ray_o, ray_d)
        background = bg_model(ray_o, ray_d, training=True, generator=gen) if bg_model.mode == "random" else \
            functools.partial(bg_model, ray_o, ray_d, training=True, generator=gen)  # (of the opacity: see render_rays)
        target = colors[idx]
        if bg_model.mode == "random":  # the images are on white: recomposite them on this step's colours
            a = all_alpha[idx, None]
            target = target - (1.0 - a) + (1.0 - a) * background
        out = render_rays(field, state, ray_o, ray_d, near=near, far=far,
                          n_samples=fs.samples, color_samples=fs.color_samples, skip_grid=skip, perturb=True,
                          generator=gen, background=background)
        if group is not None:
            out = {**out, "rgb": edge.mean(out["rgb"], group, len(idx)), "opacity": edge.mean(out["opacity"], group, len(idx))}
        loss = torch.mean((out["rgb"] - target) ** 2)
        if alpha is not None:
            loss = loss + st.mask_weight * torch.mean((out["opacity"] - alpha[idx]) ** 2)
        if st.sparsity > 0 and field.density_mode == "rs-sdf":
            loss = loss + st.sparsity * torch.sigmoid(field.logits).mean()
        if st.smoothness > 0 and field.density_mode == "rs-sdf":
            loss = loss + st.smoothness * occupancy_area(field.base_occupancy())
        opt.zero_grad(set_to_none=True)
        if loss.requires_grad:  # (no sample of the batch in occupied space: nothing to update)
            loss.backward()
            opt.step()
        lv = loss.item()
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        stats = {"loss": lv, "train_psnr": -10 * math.log10(max(ema, 1e-10)),
                 "lookups_per_ray": out["samples"].item() / len(ray_o),  # (per ray marched: a silhouette
                 "color_per_ray": out["color_samples"].item() / len(ray_o)}  # pixel's k² rays count k² times)
        if step % 10 == 0 or step == st.steps - 1:
            bar.set_postfix_str(f"loss={lv:.4f}, psnr={stats['train_psnr']:.2f}, "
                                f"lookups={stats['lookups_per_ray']:.0f}, colour={stats['color_per_ray']:.1f}")
        bar.update(1)
        if log is not None and (step % 100 == 0 or step == st.steps - 1):
            log(step, stats)
        if step + 1 in carve_steps:
            info = carve(field, cam_origin[view_of_ray[carve_idx]], dirs[carve_idx], near=near, far=far,
                         n_samples=fs.samples)
            skip = field.skip_grid(field.geometry_state())
            carves.append({"step": step + 1, **{k: v for k, v in info.items() if k != "carved"}})
            if step + 1 == least_area_step:  # after the last carving pass: the least-area completion
                info = least_area(field, cam_origin[view_of_ray[carve_idx]], dirs[carve_idx], colors[carve_idx],
                                  flat_pixels(train.images).to(device)[carve_idx], near=near, far=far,
                                  n_samples=fs.samples)
                skip = field.skip_grid(field.geometry_state())
                carves.append({"step": step + 1, **info})
        if checkpoint_fn is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 \
                and step + 1 < st.steps:
            checkpoint_fn(step + 1, opt, carried())
    bar.close()
    field.sharpness = fs.sharpness
    if carve_steps and start_step < st.steps:  # pockets that closed after the last carve
        carves.append({"step": st.steps, **seal(field, cam_origin)})
    return {"train_s": time.perf_counter() - t0, "train_cpu_s": time.process_time() - c0,
            "steps_run": st.steps - start_step, "last": stats, "optimizer": opt, "loop_state": carried(),
            "carves": carves}


class EdgeRays:
    """The training pixels that the object covers in part (FOREGROUND_ALPHA < alpha < EDGE_OPAQUE, the
    silhouette's pixels), and the directions of a k×k grid of rays over each of them (those of
    :func:`~geocert_rs_sdf.render.pixel_offsets`). Rendered views with ``--antialias on`` draw every pixel as the
    mean of such a grid; training draws each of these pixels the same way, so that the mean, not one ray
    through the centre, matches the image's partial coverage (a single ray per pixel through a random point
    would match it only in expectation, and its variance across the pixel, which the MSE adds, blurs the
    texture)."""

    def __init__(self, pixels: torch.Tensor, sub_dirs: torch.Tensor, n_pixels: int):
        self.k2 = sub_dirs.shape[1]
        self.row = torch.full((n_pixels,), -1, dtype=torch.long, device=pixels.device)
        self.row[pixels] = torch.arange(len(pixels), device=pixels.device)
        self.sub_dirs = sub_dirs  # [P, k², 3]

    def expand(self, idx: torch.Tensor, ray_o: torch.Tensor, ray_d: torch.Tensor):
        """The batch's rays with each edge pixel's ray replaced by its k² rays, and each ray's batch slot."""
        row = self.row[idx]
        hit = row >= 0
        if not bool(hit.any()):
            return ray_o, ray_d, None
        slot = torch.arange(len(idx), device=idx.device)
        sub = self.sub_dirs[row[hit]].reshape(-1, 3)
        sub_slot = slot[hit].repeat_interleave(self.k2)
        return (torch.cat([ray_o[~hit], ray_o[sub_slot]]), torch.cat([ray_d[~hit], sub]),
                torch.cat([slot[~hit], sub_slot]))

    @staticmethod
    def mean(values: torch.Tensor, group: torch.Tensor, n: int) -> torch.Tensor:
        """Per batch slot, the mean of ``values`` over the rays of that slot (``group``)."""
        total = torch.zeros((n, *values.shape[1:]), dtype=values.dtype, device=values.device)
        total = total.index_add(0, group, values)
        count = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(
            0, group, torch.ones_like(group, dtype=values.dtype))
        return total / count.reshape(-1, *([1] * (values.dim() - 1)))


def edge_rays(field: RadianceField, train: Split, alpha: torch.Tensor | None, valid: torch.Tensor | None,
              background: str, device) -> EdgeRays | None:
    """:class:`EdgeRays` of ``train`` when rendered views draw pixels as areas (the field's ``pixel_samples``
    > 1, ``--antialias on``) and the images have alpha or masks with partly covered pixels; None otherwise
    (and with a random background, whose per-ray colours a pixel's rays would not share)."""
    from geocert_rs_sdf.render import pixel_offsets

    k = int(round(math.sqrt(getattr(field, "pixel_samples", 1))))
    if k <= 1 or alpha is None or background == "random":
        return None
    part = (alpha > FOREGROUND_ALPHA) & (alpha < EDGE_OPAQUE)
    if valid is not None:
        part &= valid
    pixels = part.nonzero().squeeze(1)
    if not len(pixels):
        return None
    c2w = train.c2w.to(device)
    subs = [pixel_rays(c2w, train.height, train.width, train.cameras, offset=off)[1].reshape(-1, 3)[pixels]
            for off in pixel_offsets(k)]
    return EdgeRays(pixels, torch.stack(subs, dim=1), len(alpha))


def occupancy_area(p: torch.Tensor) -> torch.Tensor:
    """Total variation of a ``[X, X, X]`` occupancy: the mean over voxels of the absolute differences to the
    next voxel along each axis (for a 0/1 grid, the boundary's area in voxel faces per voxel)."""
    return ((p[1:] - p[:-1]).abs().sum() + (p[:, 1:] - p[:, :-1]).abs().sum()
            + (p[:, :, 1:] - p[:, :, :-1]).abs().sum()) / p.numel()


def carve_schedule(st: FitSettings) -> set[int]:
    """The steps after which :func:`~geocert_rs_sdf.carve.carve` runs: ``CARVE_AT`` of the run; none without
    ``st.carve`` or in runs shorter than ``CARVE_MIN_STEPS`` (whose surfaces have not formed: a fog hides
    what is behind it, and carving would fill it)."""
    return {round(f * st.steps) for f in CARVE_AT} if st.carve and st.steps >= CARVE_MIN_STEPS else set()


def strided_pixels(views: int, height: int, width: int, device, max_rays: int = CARVE_RAYS) -> torch.Tensor:
    """Flat indices of every k-th pixel per axis of each view (k the smallest stride that keeps at most
    ``max_rays`` rays), in the order ``fit`` flattens the training rays."""
    k = max(1, math.ceil(math.sqrt(views * height * width / max_rays)))
    rows = torch.arange(0, height, k, device=device)
    cols = torch.arange(0, width, k, device=device)
    base = torch.arange(views, device=device)[:, None, None] * (height * width)
    return (base + rows[None, :, None] * width + cols[None, None, :]).reshape(-1)


def save_checkpoint(path: str | Path, field: RadianceField, fs: FieldSettings, st: FitSettings, step: int,
                    optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None,
                    loop_state: dict | None = None) -> Path:
    """Atomically write a checkpoint (model state, settings as plain data with the scene box ``bound`` among
    the field settings, step, optimizer state, ``extra`` facts, the loop state of :func:`fit`)."""
    from geocert.io import atomic_write

    data = {"format": CHECKPOINT_FORMAT, "field": {**dataclasses.asdict(fs), "bound": field.bound,
                                                   "near": field.near, "far": field.far},
            "fit": dataclasses.asdict(st),
            "step": step, "model": field.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None, "extra": extra or {},
            "loop_state": loop_state}
    with atomic_write(path, "wb") as fh:
        torch.save(data, fh)
    return Path(path)


def load_checkpoint(path: str | Path) -> tuple[RadianceField, FieldSettings, FitSettings, dict]:
    """Read a checkpoint written by :func:`save_checkpoint` (the field on the CPU); raises InputError naming the
    file if invalid."""
    from geocert.errors import InputError
    from geocert.io import read_checkpoint

    path = Path(path)
    data = read_checkpoint(path)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a geocert rs-sdf NeRF checkpoint (written by `geocert train-nerf`)")
    try:
        spec = dict(data["field"])
        bound = float(spec.pop("bound"))
        near, far = float(spec.pop("near", NEAR)), float(spec.pop("far", FAR))  # (older checkpoints: the
        if isinstance(spec.get("view_dependent"), bool):  # written before "auto": a flag
            spec["view_dependent"] = "on" if spec["view_dependent"] else "off"
        fs = FieldSettings(**spec)  # NeRF-synthetic segment, a white background)
        st = FitSettings(**data["fit"])
        field = build_field(fs, bound, near=near, far=far)
        missing, unexpected = field.load_state_dict(data["model"], strict=False)
        # (checkpoints written before the learned background and space carving lack those: zeros / none)
        if unexpected or any(not k.startswith("background_model.") and k != "fixed" for k in missing):
            raise RuntimeError(f"missing keys {missing}, unexpected keys {unexpected}")
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise InputError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from None
    return field, fs, st, data
