"""``geocert train-nerf``: validate, open the (resumable) run, load the scene, fit with checkpoints, evaluate the
test views, finish with metrics.json.

Resuming: OUTPUT/checkpoint.pt carries the step, the optimizer and the training time so far; the training log
(train_log.jsonl) is written with each checkpoint and holds exactly the logged steps before it, so an
interruption loses the steps after the last checkpoint and a rerun repeats them without duplicate lines. A run
interrupted before its first checkpoint leaves nothing. Rerunning a finished run evaluates nothing again and
leaves metrics.json as it is.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

from geocert.errors import InputError, ParameterError
from geocert_rs_sdf.config import TrainNerfConfig

__all__ = ["run", "train", "validate", "result_key", "scene_dir", "check_counts", "object_metrics", "load_splits"]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_counts(**counts: int) -> None:
    """Counts where 0 means "all" or "automatic": each must be >= 0 (``max_views=-1`` → ``--max-views``)."""
    for name, value in counts.items():
        if value < 0:
            raise ParameterError(f"--{name.replace('_', '-')} must be >= 0, got {value}")


def validate(cfg: TrainNerfConfig) -> None:
    """Parameter checks (one line each, options named as typed) and the memory the run needs; --device and
    --threads too, so that a wrong one is reported before the scene is generated or loaded."""
    from geocert.pipeline.environment import resolve_device, resolve_threads
    from geocert.validate import check_positive_int, check_sigma
    from geocert_rs_sdf import memory

    resolve_device(cfg.device)
    resolve_threads(cfg.threads)

    from geocert_rs_sdf.train import fill_auto

    fs, st = fill_auto(cfg.field, bundled=cfg.data is None), cfg.fit
    for name, value in (("sigma", fs.sigma), ("sharpness", fs.sharpness), ("lr", st.lr),
                        ("sharpness-start", st.sharpness_start), ("grid-lr", st.grid_lr)):
        check_sigma(value, f"--{name}")
    for name, value in (("grid-res", fs.grid_res), ("steps", st.steps), ("rays", st.rays), ("samples", fs.samples),
                        ("color-samples", fs.color_samples), ("hash-levels", fs.hash_levels),
                        ("hash-max-res", fs.hash_max_res), ("hidden", fs.hidden),
                        ("checkpoint-every", cfg.checkpoint_every), ("scene-width", cfg.scene_width),
                        ("scene-views", cfg.scene_views), ("downscale", cfg.downscale)):
        check_positive_int(value, f"--{name}")
    if cfg.downscale > 64:
        raise ParameterError(f"--downscale must be in [1, 64], got {cfg.downscale}")
    if not 16 <= cfg.scene_width <= 800:
        raise ParameterError(f"--scene-width must be in [16, 800], got {cfg.scene_width}")
    if fs.grid_res < 4:
        raise ParameterError(f"--grid-res must be >= 4, got {fs.grid_res}")
    if not 8 <= fs.hash_log2 <= 24:
        raise ParameterError(f"--hash-log2 must be in [8, 24], got {fs.hash_log2}")
    if not (st.mask_weight >= 0 and math.isfinite(st.mask_weight)):
        raise ParameterError(f"--mask-weight must be >= 0, got {st.mask_weight}")
    if not 0.0 <= st.foreground_fraction <= 1.0:
        raise ParameterError(f"--foreground-fraction must be in [0, 1], got {st.foreground_fraction}")
    check_counts(max_views=cfg.max_views, eval_views=cfg.eval_views)
    memory.check_fits(fs.grid_res**3 * memory.NERF_BYTES_PER_VOXEL, f"--grid-res {fs.grid_res}",
                      f"a {fs.grid_res}³ occupancy grid with its blur, gradients and optimizer state")
    memory.check_fits(st.rays * fs.samples * memory.NERF_BYTES_PER_SAMPLE, f"--rays {st.rays}",
                      f"{st.rays} rays × {fs.samples} samples per step")
    memory.check_fits(fs.hash_levels * 2**fs.hash_log2 * 2 * 4 * 4, f"--hash-levels {fs.hash_levels}",
                      f"{fs.hash_levels} hash tables of 2^{fs.hash_log2} rows with gradients and optimizer state")
    if cfg.data is None:
        views = cfg.scene_views + 30  # + 10 val and 20 test views
        memory.check_fits(views * cfg.scene_width**2 * memory.NERF_BYTES_PER_PIXEL,
                          f"--scene-width {cfg.scene_width}",
                          f"{views} views of {cfg.scene_width}×{cfg.scene_width} pixels (--scene-views {cfg.scene_views})")


def scene_dir(cfg: TrainNerfConfig) -> Path:
    """The scene folder: ``--data``, or where the bundled default scene of this size is cached (not created)."""
    if cfg.data is not None:
        return Path(cfg.data)
    from geocert_rs_sdf.scenes import SceneSpec, default_scene_dir

    return default_scene_dir(SceneSpec(width=cfg.scene_width, n_train=cfg.scene_views))


def result_key(cfg: TrainNerfConfig, scene: Path) -> dict[str, Any]:
    """What must match to resume: the field and fit settings (all but the number of steps), the scene and the
    training views used."""
    fit = dataclasses.asdict(cfg.fit)
    fit.pop("steps")
    key = {"field": dataclasses.asdict(cfg.field), "fit": fit, "scene": str(scene), "max_views": cfg.max_views}
    if cfg.downscale != 1:
        key["downscale"] = cfg.downscale
    return key


def load_splits(scene: Path, max_train: int, max_test: int, *, background: str = "auto", downscale: int = 1):
    """The training and test splits of ``scene`` (RGBA composited on black for ``--background black``, on
    white otherwise), both ``downscale``-d; InputError when their image sizes differ."""
    from geocert_rs_sdf.data import load_split

    white = background != "black"
    train = load_split(scene, "train", max_views=max_train or None, white_bg=white, downscale=downscale)
    test = load_split(scene, "test", max_views=max_test or None, white_bg=white, downscale=downscale)
    if (test.height, test.width) != (train.height, train.width):
        raise InputError(f"{test.files[0]}: image size {test.width}x{test.height} differs from the training "
                         f"images {train.width}x{train.height}")
    return train, test


def object_metrics(renders: list[dict], split) -> dict[str, Any]:
    """PSNR over the object's pixels (alpha or mask > ½) of all views, and the mean rendered opacity of the
    pixels that show no object (a floater measure: 0 when nothing is rendered where the object is not);
    empty when the split has neither alpha nor masks."""
    import torch

    if split.alpha is None:
        return {}
    obj = split.alpha > 0.5
    sq = torch.stack([((o["rgb"].clamp(0, 1) - gt) ** 2).mean(-1) for o, gt in zip(renders, split.images, strict=True)])
    opacity = torch.stack([o["opacity"] for o in renders])
    out: dict[str, Any] = {"object_pixels": int(obj.sum())}
    if obj.any():
        out["test_psnr_object"] = round(-10 * math.log10(max(float(sq[obj].mean()), 1e-12)), 3)
    if (~obj).any():
        out["test_psnr_background"] = round(-10 * math.log10(max(float(sq[~obj].mean()), 1e-12)), 3)
        out["background_opacity_mean"] = round(float(opacity[~obj].mean()), 5)
        out["background_opacity_p99"] = round(float(torch.quantile(opacity[~obj].float()[:1_000_000], 0.99)), 5)
    return out


def _write_log(path: Path, records: list[dict]) -> None:
    """Replace ``path`` with one JSON line per record, atomically."""
    import json

    from geocert.io import atomic_write, to_plain

    with atomic_write(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(to_plain(rec), allow_nan=False) + "\n")


def train(cfg: TrainNerfConfig, *, progress: bool = True, announce: str | None = None,
          flag_prefix: str = "", views: dict | None = None) -> dict[str, Any]:
    """Validate, open OUTPUT (resumable), load the scene, fit (resuming OUTPUT/checkpoint.pt when allowed),
    evaluate and finish. ``announce`` is printed once the scene is loaded (before the training). Returns the
    metrics. ``flag_prefix`` is how the user reaches these options (``--train.`` inside ``geocert render``).
    ``views``, a dict, receives the evaluation of the test views (``evaluate_views``' result) when this call
    made one (``geocert render`` reuses it instead of rendering the same views again)."""
    import torch

    from geocert.io import read_json, read_jsonl
    from geocert.pipeline.run import check_output, open_run
    from geocert_rs_sdf.metrics import evaluate_views
    from geocert_rs_sdf.train import build_field, fit, load_checkpoint, save_checkpoint

    validate(cfg)
    check_output(cfg.output)  # before the scene is generated or loaded
    scene = scene_dir(cfg)
    if cfg.data is None:
        from geocert_rs_sdf.scenes import SceneSpec, ensure_default_scene

        ensure_default_scene(SceneSpec(width=cfg.scene_width, n_train=cfg.scene_views))
    train_split, test = load_splits(scene, cfg.max_views, cfg.eval_views, background=cfg.field.background,
                                    downscale=cfg.downscale)
    if announce:
        _say(announce)
    from geocert_rs_sdf.train import background_radius, resolve_field

    fs, st = resolve_field(cfg.field, train_split, bundled=cfg.data is None), cfg.fit
    run = open_run(cfg, seed=st.seed, resumable=True, result_key=result_key(cfg, scene), scene=str(scene),
                   overwrite_flag=f"--{flag_prefix.lstrip('-')}overwrite")
    device = run.device
    ckpt = run.output / "checkpoint.pt"
    start, opt_state, loop_state = 0, None, None
    before = {"train_seconds": 0.0, "train_cpu_seconds": 0.0, "steps_timed": 0}
    log_records: list[dict] = []
    if not cfg.overwrite and ckpt.is_file():
        field, fs_old, st_old, data = load_checkpoint(ckpt)
        if fs_old != fs or field.bound != train_split.bound or dataclasses.replace(st_old, steps=st.steps) != st \
                or (field.near, field.far) != (train_split.near, train_split.far):
            raise ParameterError(f"{ckpt}: was trained with other settings; pass --{flag_prefix.lstrip('-')}overwrite to start over "
                                 f"or another --output")
        done = int(data["step"])
        if done > st.steps:
            raise ParameterError(f"{ckpt}: already trained for {done} steps, more than --steps {st.steps}; pass "
                                 f"--{flag_prefix.lstrip('-')}overwrite to start over or another --output")
        start, opt_state, loop_state = done, data.get("optimizer"), data.get("loop_state")
        extra = data.get("extra", {})
        before = {k: extra.get(k, v) for k, v in before.items()}
        log_records = [r for r in read_jsonl(run.output / "train_log.jsonl") if r.get("step", math.inf) < start]
        metrics_file = run.output / "metrics.json"
        if start == st.steps and metrics_file.is_file():
            old = read_json(metrics_file)
            if isinstance(old, dict) and old.get("steps") == st.steps and old.get("test_views") == len(test.files):
                _say(f"train-nerf: {run.output} is already trained for {st.steps} steps (test-view PSNR "
                     f"{old.get('test_psnr', math.nan):.2f} dB); nothing to do (metrics.json kept)")
                run.abort()  # a resumable run keeps its files; nothing was written
                return old
        _say(f"train-nerf: resuming {ckpt} at step {start}/{st.steps}")
    else:
        field = build_field(fs, train_split.bound, generator=torch.Generator().manual_seed(st.seed),
                            init_sharpness=fs.sharpness * st.sharpness_start, near=train_split.near,
                            far=train_split.far, background_radius=background_radius(train_split))
    field = field.to(device)
    t0, c0 = time.perf_counter(), time.process_time()

    def timing(step: int) -> dict[str, Any]:
        return {"train_seconds": before["train_seconds"] + time.perf_counter() - t0,
                "train_cpu_seconds": before["train_cpu_seconds"] + time.process_time() - c0,
                "steps_timed": before["steps_timed"] + step - start}

    def checkpoint(step: int, opt, state: dict) -> None:
        save_checkpoint(run.path("checkpoint.pt"), field, fs, st, step, opt,
                        {"scene": str(scene), "downscale": cfg.downscale, **timing(step)}, loop_state=state)
        _write_log(run.path("train_log.jsonl"), log_records)

    res = fit(field, fs, st, train_split, log=lambda step, stats: log_records.append({"step": step, **stats}),
              progress=progress, start_step=start, optimizer_state=opt_state, loop_state=loop_state,
              checkpoint_fn=checkpoint,
              checkpoint_every=cfg.checkpoint_every)
    if res["steps_run"] > 0 or not ckpt.is_file():
        checkpoint(st.steps, res["optimizer"], res["loop_state"])
    timed = timing(st.steps)
    if res["steps_run"] == 0:  # nothing trained now: the time recorded with the checkpoint
        timed = {k: before[k] for k in timed}
    ev = evaluate_views(field, fs, test, progress=progress)
    if views is not None:
        views.update(ev)
    steps_timed = max(int(timed["steps_timed"]), 1)
    metrics = {"scene": str(scene), "density": fs.density, "steps": st.steps, "steps_this_run": res["steps_run"],
               "train_seconds": round(timed["train_seconds"], 2),
               "train_seconds_this_run": round(timed["train_seconds"] - before["train_seconds"], 2),
               "seconds_per_step": round(timed["train_seconds"] / steps_timed, 4),
               "train_cpu_seconds": round(timed["train_cpu_seconds"], 2), "threads": torch.get_num_threads(),
               "device": str(device), "last_step": res["last"], "background": fs.background, "view_dependent": fs.view_dependent,
               "antialias": fs.antialias, "carving": res["loop_state"].get("carves") or [],
               "scene_box": {"center": list(train_split.center), "bound": train_split.bound,
                             "near": train_split.near, "far": train_split.far},
               "test_psnr": ev["psnr"], **object_metrics(ev["renders"], test), "test_ssim": ev["ssim"],
               "test_views": len(ev["per_view"]), "per_view": ev["per_view"],
               "checkpoint": str(run.output / "checkpoint.pt")}
    run.finish(metrics)
    _say(f"train-nerf: {st.steps} steps, test-view PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f} "
         f"({len(ev['per_view'])} views) -> {run.output}")
    return metrics


def run(cfg: TrainNerfConfig) -> None:
    train(cfg)
