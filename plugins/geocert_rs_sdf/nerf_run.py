"""``geocert train-nerf`` and ``geocert render``: fit, evaluate and export an RS-SDF NeRF."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geocert.errors import InputError, ParameterError
from geocert.io import append_jsonl, write_config, write_image, write_json, write_ply
from geocert.validate import check_positive_int, check_sigma
from geocert_rs_sdf.data import Split, load_split
from geocert_rs_sdf.mesh_io import load_mesh
from geocert_rs_sdf.nerf_config import PLUGIN_NAME, PLUGIN_VERSION, RenderConfig, TrainNerfConfig
from geocert_rs_sdf.train import (
    FieldSettings,
    FitSettings,
    build_field,
    fit,
    load_checkpoint,
    psnr,
    render_views,
    save_checkpoint,
)

__all__ = ["run_train_nerf", "run_render", "train_nerf", "evaluate_views", "export_geometry", "chamfer",
           "orbit_poses", "sample_surface"]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _check_train_config(cfg: TrainNerfConfig) -> None:
    check_sigma(cfg.sigma, "sigma")
    check_sigma(cfg.sharpness, "sharpness")
    check_sigma(cfg.lr, "lr")
    check_sigma(cfg.sharpness_start, "sharpness_start")
    check_sigma(cfg.grid_lr, "grid_lr")
    for name in ("grid_res", "steps", "rays", "samples", "color_samples", "hash_levels", "hash_max_res", "hidden",
                 "checkpoint_every", "scene_width", "scene_views"):
        check_positive_int(getattr(cfg, name), name.replace("_", "-"))
    if cfg.grid_res < 4:
        raise ParameterError(f"grid-res must be >= 4, got {cfg.grid_res}")
    if not 8 <= cfg.hash_log2 <= 24:
        raise ParameterError(f"hash-log2 must be in [8, 24], got {cfg.hash_log2}")
    if not (cfg.mask_weight >= 0 and math.isfinite(cfg.mask_weight)):
        raise ParameterError(f"mask-weight must be >= 0, got {cfg.mask_weight}")
    if not 0.0 <= cfg.foreground_fraction <= 1.0:
        raise ParameterError(f"foreground-fraction must be in [0, 1], got {cfg.foreground_fraction}")
    for name in ("max_views", "eval_views", "threads"):
        if getattr(cfg, name) < 0:
            raise ParameterError(f"{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")


def resolve_threads(threads: int) -> int:
    """``threads``, or for 0 the CPUs this process may use minus the rounded 1-minute load average (≥ 1)."""
    import os

    if threads > 0:
        return threads
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, cpus - busy)


def _scene_dir(cfg: TrainNerfConfig) -> Path:
    if cfg.data is not None:
        return Path(cfg.data)
    from geocert_rs_sdf.scenes import SceneSpec, ensure_default_scene

    return ensure_default_scene(SceneSpec(width=cfg.scene_width, n_train=cfg.scene_views))


def field_settings(cfg: TrainNerfConfig, bound: float) -> FieldSettings:
    return FieldSettings(bound=bound, grid_res=cfg.grid_res, sigma=cfg.sigma, sharpness=cfg.sharpness,
                         density=cfg.density, hash_levels=cfg.hash_levels, hash_log2=cfg.hash_log2,
                         hash_max_res=cfg.hash_max_res, hidden=cfg.hidden, view_dependent=cfg.view_dependent,
                         samples=cfg.samples, color_samples=cfg.color_samples)


def _load_splits(scene: Path, max_train: int, max_test: int) -> tuple[Split, Split]:
    train = load_split(scene, "train", max_views=max_train or None)
    test = load_split(scene, "test", max_views=max_test or None)
    if (test.height, test.width) != (train.height, train.width):
        raise InputError(f"{test.files[0]}: image size {test.width}x{test.height} differs from the training "
                         f"images {train.width}x{train.height}")
    return train, test


def train_nerf(cfg: TrainNerfConfig, *, progress: bool = True) -> dict[str, Any]:
    """Validate, load the scene, fit (resuming OUTPUT/checkpoint.pt when allowed), evaluate, write outputs.
    Returns the metrics."""
    _check_train_config(cfg)
    torch.set_num_threads(resolve_threads(cfg.threads))
    scene = _scene_dir(cfg)
    train, test = _load_splits(scene, cfg.max_views, cfg.eval_views)
    fs = field_settings(cfg, train.bound)
    st = FitSettings(steps=cfg.steps, rays=cfg.rays, lr=cfg.lr, grid_lr=cfg.grid_lr,
                     foreground_fraction=cfg.foreground_fraction, mask_weight=cfg.mask_weight,
                     sharpness_start=cfg.sharpness_start, seed=cfg.seed)
    out = Path(cfg.output)
    ckpt = out / "checkpoint.pt"
    start, opt_state = 0, None
    if cfg.resume and ckpt.is_file():
        field, fs_old, st_old, data = load_checkpoint(ckpt)
        if fs_old != fs or dataclasses.replace(st_old, steps=st.steps) != st:
            raise ParameterError(f"{ckpt}: was trained with other settings; pass --no-resume to start over "
                                 f"or another --output")
        start, opt_state = min(int(data["step"]), st.steps), data.get("optimizer")
        _say(f"train-nerf: resuming {ckpt} at step {start}/{st.steps}")
    else:
        field = build_field(fs, generator=torch.Generator().manual_seed(cfg.seed),
                            init_sharpness=cfg.sharpness * cfg.sharpness_start)
    write_config(out, cfg, plugin=PLUGIN_NAME, plugin_version=PLUGIN_VERSION, seed=cfg.seed, scene=str(scene))
    extra = {"scene": str(scene)}
    log_path = out / "train_log.jsonl"

    def log(step: int, stats: dict[str, float]) -> None:
        append_jsonl(log_path, {"step": step, **stats})

    def checkpoint(step: int, opt) -> None:
        save_checkpoint(ckpt, field, fs, st, step, opt, extra)

    t0 = time.perf_counter()
    res = fit(field, fs, st, train, log=log, progress=progress, start_step=start, optimizer_state=opt_state,
              checkpoint_fn=checkpoint, checkpoint_every=cfg.checkpoint_every)
    if res["steps_run"] > 0 or not ckpt.is_file():
        save_checkpoint(ckpt, field, fs, st, st.steps, res["optimizer"], extra)
    train_s = time.perf_counter() - t0
    ev = evaluate_views(field, fs, test, progress=progress)
    metrics = {"scene": str(scene), "density": cfg.density, "steps": st.steps, "steps_this_run": res["steps_run"],
               "train_seconds": round(train_s, 2),
               "seconds_per_step": round(train_s / max(res["steps_run"], 1), 4),
               "train_cpu_seconds": round(res["train_cpu_s"], 2), "threads": torch.get_num_threads(),
               "last_step": res["last"], "test_psnr": ev["psnr"], "test_ssim": ev["ssim"],
               "test_views": len(ev["per_view"]), "per_view": ev["per_view"], "checkpoint": str(ckpt)}
    write_json(out / "metrics.json", metrics)
    _say(f"train-nerf: {st.steps} steps, test-view PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f} "
         f"({len(ev['per_view'])} views) -> {out}")
    return metrics


def run_train_nerf(cfg: TrainNerfConfig) -> None:
    train_nerf(cfg)


def evaluate_views(field, fs: FieldSettings, split: Split, *, progress: bool = True,
                   save_dir: Path | None = None) -> dict[str, Any]:
    """PSNR and SSIM (skimage, data range 1) of every view of ``split``; optionally writes the renders."""
    from skimage.metrics import structural_similarity

    outs = render_views(field, fs, split.c2w, split.height, split.width, split.focal, progress=progress,
                        desc="test views")
    per_view = []
    for k, (o, gt) in enumerate(zip(outs, split.images, strict=True)):
        pred = o["rgb"]
        p = psnr(pred, gt)
        s = float(structural_similarity(pred.numpy(), gt.numpy(), channel_axis=2, data_range=1.0))
        per_view.append({"view": split.files[k].name, "psnr": round(p, 3), "ssim": round(s, 4)})
        if save_dir is not None:
            write_image(save_dir / f"{split.files[k].stem}.png", pred)
    mse = float(np.mean([10 ** (-v["psnr"] / 10) for v in per_view]))
    return {"psnr": -10 * math.log10(mse), "ssim": float(np.mean([v["ssim"] for v in per_view])),
            "per_view": per_view, "renders": outs}


# ----------------------------------------------------------------------------------------------- render
def orbit_poses(n: int, radius: float, elevation_deg: float) -> torch.Tensor:
    """``[n, 4, 4]`` camera-to-world matrices circling the z axis, looking at the origin."""
    from geocert_rs_sdf.scenes import look_at

    el = math.radians(elevation_deg)
    poses = []
    for k in range(n):
        az = 2 * math.pi * k / n
        eye = radius * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        poses.append(look_at(eye))
    return torch.from_numpy(np.stack(poses)).float()


def sample_surface(verts: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly distributed (by area) on a triangle mesh."""
    tri = verts[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not area.sum() > 0:
        raise InputError("mesh has zero area")
    f = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    a, b, c = 1 - s, s * (1 - r2), s * r2
    return a[:, None] * tri[f, 0] + b[:, None] * tri[f, 1] + c[:, None] * tri[f, 2]


def chamfer(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Symmetric Chamfer distances between point sets (scipy cKDTree): L1 = ½(mean‖a→B‖ + mean‖b→A‖),
    L2 = ½(mean‖a→B‖² + mean‖b→A‖²)."""
    from scipy.spatial import cKDTree

    d_ab, _ = cKDTree(b).query(a)
    d_ba, _ = cKDTree(a).query(b)
    return {"l1": float(0.5 * (d_ab.mean() + d_ba.mean())), "l2": float(0.5 * ((d_ab**2).mean() + (d_ba**2).mean())),
            "accuracy": float(d_ab.mean()), "completeness": float(d_ba.mean())}


def extract_mesh(field, res: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Marching cubes of the learned SDF's zero level on a ``res³`` grid over the box (None when the SDF has
    no zero crossing); outward-facing, like ``geocert sdf``'s mesh."""
    from geocert_rs_sdf.field import sample_grid
    from geocert_rs_sdf.sdf import zero_level_mesh
    from geocert_rs_sdf.voxelize import Grid

    b = field.bound
    lin = torch.linspace(-b, b, res)
    pts = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)
    sdf = field.sdf_grid()
    vals = torch.cat([sample_grid(sdf, pts[i:i + 262144], b) for i in range(0, len(pts), 262144)])
    vol = vals.reshape(res, res, res).numpy()
    mesh = zero_level_mesh(vol, Grid((res,) * 3, (-b,) * 3, float(lin[1] - lin[0])))
    if mesh is None:
        return None
    verts, faces = mesh
    return verts.astype(np.float32), faces.astype(np.int32)


def _colorize(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """A blue–white–red image of ``values`` (negative blue, zero white, positive red), symmetric range."""
    m = max(abs(lo), abs(hi), 1e-12)
    t = np.clip(values / m, -1, 1)[..., None]
    red, blue, white = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.2, 0.8]), np.ones(3)
    return np.where(t > 0, white + t * (red - white), white - t * (blue - white))


def export_geometry(field, out: Path, depth: torch.Tensor, *, mesh_res: int, gt_mesh: Path | None,
                    n_points: int, seed: int) -> dict[str, Any]:
    """Write depth.png, sdf_slice.png and mesh.ply; Chamfer distance to the GT mesh when there is one."""
    d = depth.numpy()
    finite = d[d < d.max()] if (d < d.max()).any() else d
    lo, hi = float(finite.min()), float(finite.max())
    write_image(out / "depth.png", 1.0 - np.clip((d - lo) / max(hi - lo, 1e-6), 0, 1))
    sdf = field.sdf_grid()
    mid = sdf.shape[1] // 2
    sl = sdf[:, mid, :].numpy().T[::-1]  # x right, z up
    img = _colorize(sl, float(sl.min()), float(sl.max()))
    zero = np.abs(sl) < 0.5 * field.voxel
    img[zero] = 0.0
    write_image(out / "sdf_slice.png", np.kron(img, np.ones((4, 4, 1))))
    result: dict[str, Any] = {"mesh": None, "chamfer": None}
    mesh = extract_mesh(field, mesh_res)
    if mesh is None:
        return result
    verts, faces = mesh
    write_ply(out / "mesh.ply", verts, faces=faces)
    result["mesh"] = {"file": "mesh.ply", "vertices": len(verts), "faces": len(faces), "resolution": mesh_res}
    if gt_mesh is not None:
        rng = np.random.default_rng(seed)
        gt = load_mesh(gt_mesh)
        a = sample_surface(verts.astype(np.float64), faces, n_points, rng)
        b = sample_surface(gt.vertices, gt.faces, n_points, rng)
        cd = chamfer(a, b)
        result["chamfer"] = {**cd, "points_per_mesh": n_points, "gt_mesh": str(gt_mesh),
                             "scale": "scene units (the scene box is [-bound, bound]^3, "
                                      f"bound = {field.bound})",
                             "definition": "L1 = (mean d(pred->gt) + mean d(gt->pred)) / 2, L2 = same with d^2"}
    return result


def _write_video(out: Path, frames: list[np.ndarray]) -> list[str]:
    import imageio.v3 as iio

    from geocert.io import atomic_write

    written = []
    u8 = [(np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8) for f in frames]
    with atomic_write(out / "orbit.gif", "wb") as fh:
        iio.imwrite(fh, np.stack(u8), extension=".gif", duration=80, loop=0)
    written.append("orbit.gif")
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return written
    with atomic_write(out / "orbit.mp4", "wb") as fh:
        iio.imwrite(fh, np.stack(u8), extension=".mp4", fps=12)
    written.append("orbit.mp4")
    return written


def _check_render_config(cfg: RenderConfig) -> None:
    for name in ("orbit_frames", "mesh_res", "chamfer_points"):
        check_positive_int(getattr(cfg, name), name.replace("_", "-"))
    if cfg.mesh_res < 8:
        raise ParameterError(f"mesh-res must be >= 8, got {cfg.mesh_res}")
    for name in ("width", "test_views", "threads"):
        if getattr(cfg, name) < 0:
            raise ParameterError(f"{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if cfg.checkpoint is not None and not Path(cfg.checkpoint).is_file():
        raise InputError(f"{cfg.checkpoint}: checkpoint not found")


def run_render(cfg: RenderConfig) -> dict[str, Any]:
    """Render the orbit and the test views of a checkpoint (training the default scene first if none)."""
    _check_render_config(cfg)
    t_start = time.perf_counter()
    out = Path(cfg.output)
    trained = None
    if cfg.checkpoint is None:
        _check_train_config(cfg.train)
        tcfg = dataclasses.replace(cfg.train, output=out / "model")
        _say(f"render: no --checkpoint; training on {'the bundled default scene' if tcfg.data is None else tcfg.data}"
             f" into {tcfg.output}")
        trained = train_nerf(tcfg)
        ckpt = Path(tcfg.output) / "checkpoint.pt"
    else:
        ckpt = Path(cfg.checkpoint)
    torch.set_num_threads(resolve_threads(cfg.threads))
    field, fs, _, data = load_checkpoint(ckpt)
    field.eval()
    scene = Path(cfg.data) if cfg.data is not None else Path(data.get("extra", {}).get("scene", ""))
    if not (scene / "transforms_test.json").is_file():
        raise InputError(f"{scene / 'transforms_test.json'}: file not found (pass --data SCENE)")
    test = load_split(scene, "test", max_views=cfg.test_views or None)
    write_config(out, cfg, plugin=PLUGIN_NAME, plugin_version=PLUGIN_VERSION, seed=cfg.seed, checkpoint=str(ckpt),
                 scene=str(scene))
    t0 = time.perf_counter()
    ev = evaluate_views(field, fs, test, save_dir=out / "test")
    test_s = time.perf_counter() - t0
    # orbit
    width = cfg.width or test.width
    focal = test.focal * width / test.width
    radius = float(test.c2w[:, :3, 3].norm(dim=-1).mean())
    t0 = time.perf_counter()
    orbit = render_views(field, fs, orbit_poses(cfg.orbit_frames, radius, cfg.orbit_elevation), width, width,
                         focal, desc="orbit")
    orbit_s = time.perf_counter() - t0
    frames = [o["rgb"].numpy() for o in orbit]
    for k, f in enumerate(frames):
        write_image(out / "orbit" / f"frame_{k:03d}.png", f)
    videos = _write_video(out, frames)
    geo = export_geometry(field, out, ev["renders"][0]["depth"], mesh_res=cfg.mesh_res, gt_mesh=test.mesh,
                          n_points=cfg.chamfer_points, seed=cfg.seed)
    rays = len(test.files) * test.height * test.width + cfg.orbit_frames * width * width
    metrics = {"checkpoint": str(ckpt), "scene": str(scene), "density": fs.density,
               "test_psnr": ev["psnr"], "test_ssim": ev["ssim"], "test_views": len(ev["per_view"]),
               "per_view": ev["per_view"], "orbit_frames": cfg.orbit_frames, "videos": videos,
               "render_rays_per_second": round(rays / max(test_s + orbit_s, 1e-9), 1),
               "mesh": geo["mesh"], "chamfer": geo["chamfer"],
               "trained_here": trained is not None, "threads": torch.get_num_threads(),
               "train_seconds": trained["train_seconds"] if trained else None,
               "total_seconds": round(time.perf_counter() - t_start, 2)}
    write_json(out / "metrics.json", metrics)
    cd = geo["chamfer"]
    cd_txt = f", Chamfer L1 {cd['l1']:.4f} (scene units)" if cd else ""
    print(f"test-view PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f} over {len(ev['per_view'])} views{cd_txt}"
          f" -> {out}", flush=True)
    return metrics
