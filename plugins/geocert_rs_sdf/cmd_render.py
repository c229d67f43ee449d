"""``geocert render``: validate, open the (staged) run, train the default model first when no checkpoint is
given, render the test views and an orbit, export depth, SDF slice and mesh (Chamfer against the scene's
ground-truth mesh), finish with metrics.json."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from geocert.errors import InputError, ParameterError
from geocert_rs_sdf.config import RenderConfig

__all__ = ["run", "validate"]


def validate(cfg: RenderConfig) -> None:
    """Parameter checks (one line each, options named as typed) and the memory the exports need."""
    from geocert.validate import check_positive_int
    from geocert_rs_sdf import memory
    from geocert_rs_sdf.cmd_train_nerf import check_counts

    for name, value in (("orbit-frames", cfg.orbit_frames), ("mesh-res", cfg.mesh_res),
                        ("chamfer-points", cfg.chamfer_points)):
        check_positive_int(value, f"--{name}")
    if cfg.mesh_res < 8:
        raise ParameterError(f"--mesh-res must be >= 8, got {cfg.mesh_res}")
    check_counts(width=cfg.width, test_views=cfg.test_views)
    if not -90.0 <= cfg.orbit_elevation <= 90.0:  # NaN fails too
        raise ParameterError(f"--orbit-elevation must be in [-90, 90] degrees, got {cfg.orbit_elevation}")
    memory.check_fits(cfg.mesh_res**3 * memory.MESH_BYTES_PER_VOXEL, f"--mesh-res {cfg.mesh_res}",
                      f"marching cubes over {cfg.mesh_res}³ points")
    memory.check_fits(cfg.chamfer_points * 256, f"--chamfer-points {cfg.chamfer_points}",
                      "two point sets with their k-d trees and distances")
    if cfg.width:
        memory.check_fits(cfg.orbit_frames * cfg.width**2 * memory.NERF_BYTES_PER_PIXEL, f"--width {cfg.width}",
                          f"{cfg.orbit_frames} orbit frames of {cfg.width}×{cfg.width} pixels")
    if cfg.checkpoint is not None and not Path(cfg.checkpoint).is_file():
        raise InputError(f"{cfg.checkpoint}: checkpoint not found")


def _write_video(run, frames: list[np.ndarray]) -> list[str]:
    """orbit.gif, and orbit.mp4 when imageio-ffmpeg is installed."""
    import imageio.v3 as iio

    from geocert.io import atomic_write

    written = []
    u8 = np.stack([(np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8) for f in frames])
    with atomic_write(run.path("orbit.gif"), "wb") as fh:
        iio.imwrite(fh, u8, extension=".gif", duration=80, loop=0)
    written.append("orbit.gif")
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return written
    with atomic_write(run.path("orbit.mp4"), "wb") as fh:  # even sizes stay as they are (no resize warning)
        iio.imwrite(fh, u8, extension=".mp4", plugin="FFMPEG", fps=12, macro_block_size=2)
    written.append("orbit.mp4")
    return written


def run(cfg: RenderConfig) -> dict[str, Any]:
    """Render the orbit and the test views of a checkpoint (training the default scene first if none)."""
    import torch

    from geocert.io import write_ply
    from geocert.pipeline.run import open_run
    from geocert_rs_sdf.carve import undecided_fraction
    from geocert_rs_sdf.cmd_train_nerf import object_metrics, train
    from geocert_rs_sdf.cmd_train_nerf import validate as validate_train
    from geocert_rs_sdf.data import Cameras, load_split, scene_format
    from geocert_rs_sdf.export import depth_image, extract_mesh, field_sdf_slice
    from geocert_rs_sdf.figures import SLICE_CONVENTION, sdf_slice_figure
    from geocert_rs_sdf.mesh_io import load_mesh
    from geocert_rs_sdf.metrics import evaluate_views, mesh_quality
    from geocert_rs_sdf.render import orbit_poses, render_views, scene_up
    from geocert_rs_sdf.train import load_checkpoint

    validate(cfg)
    if cfg.checkpoint is None:
        validate_train(cfg.train)
    t_start = time.perf_counter()
    run_ = open_run(cfg)
    trained, trained_views = None, {}
    if cfg.checkpoint is None:
        tcfg = dataclasses.replace(cfg.train, output=run_.output / "model")
        trained = train(tcfg, flag_prefix="--train.", views=trained_views, announce=f"render: no --checkpoint; training on "
                        f"{'the bundled default scene' if tcfg.data is None else tcfg.data} into {tcfg.output}")
        ckpt = Path(tcfg.output) / "checkpoint.pt"
        run_.update_extra(model=str(tcfg.output))
    else:
        ckpt = Path(cfg.checkpoint)
    from geocert.pipeline.environment import apply_threads

    apply_threads(cfg.threads)  # training may have used --train.threads
    field, fs, _, data = load_checkpoint(ckpt)
    field = field.to(run_.device).eval()
    scene = Path(cfg.data) if cfg.data is not None else Path(data.get("extra", {}).get("scene", ""))
    if cfg.data is None and not scene.exists():
        raise InputError(f"{scene}: the checkpoint's scene folder is not there (pass --data SCENE)")
    fmt, _ = scene_format(scene)
    if fmt == "nerf-synthetic" and not (scene / "transforms_test.json").is_file():
        raise InputError(f"{scene / 'transforms_test.json'}: file not found (pass --data SCENE)")
    test = load_split(scene, "test", max_views=cfg.test_views or None, white_bg=fs.background != "black",
                      downscale=int(data.get("extra", {}).get("downscale", 1)))
    run_.update_extra(checkpoint=str(ckpt), scene=str(scene))

    t0 = time.perf_counter()
    same_views = trained_views and (cfg.data is None or cfg.data == cfg.train.data) \
        and cfg.test_views == cfg.train.eval_views
    # the training just rendered these test views from this checkpoint's field: the same images, not again
    ev = trained_views if same_views else evaluate_views(field, fs, test)
    test_s = time.perf_counter() - t0
    for f, o in zip(test.files, ev["renders"], strict=True):
        run_.save_image(f"test/{f.stem}.png", o["rgb"])
    # orbit: a centred pinhole with the test cameras' mean focal length, around the scene's up axis
    width = cfg.width or test.width
    height = max(2, round(test.height * width / test.width))
    orbit_cam = Cameras.pinhole(test.cameras.focal * width / test.width, height, width)
    radius = float(test.c2w[:, :3, 3].norm(dim=-1).mean())
    t0 = time.perf_counter()
    orbit = render_views(field, fs.samples, fs.color_samples,
                         orbit_poses(cfg.orbit_frames, radius, cfg.orbit_elevation, up=scene_up(test.c2w)),
                         height, width, orbit_cam, desc="orbit")
    orbit_s = time.perf_counter() - t0
    frames = [o["rgb"].numpy() for o in orbit]
    for k, f in enumerate(frames):
        run_.save_image(f"orbit/frame_{k:03d}.png", f)
    videos = _write_video(run_, frames)

    # geometry
    run_.save_image("depth.png", depth_image(ev["renders"][0]["depth"].numpy()))
    values, extent, y, undecided = field_sdf_slice(field)
    fig = sdf_slice_figure(values, extent, xlabel="x", ylabel="z", units="scene units", undecided=undecided,
                           title=f"learned RS-SDF ({fs.density}), {fs.grid_res}³ grid, y = {y:.3g} slice")
    run_.save_figure("sdf_slice.png", fig, dpi=110)
    mesh_info, chamfer, surface = None, None, None
    mesh = extract_mesh(field, cfg.mesh_res)
    if mesh is not None:
        verts, faces = mesh
        write_ply(run_.path("mesh.ply"), verts, faces=faces)
        mesh_info = {"file": "mesh.ply", "vertices": len(verts), "faces": len(faces), "resolution": cfg.mesh_res}
        if test.mesh is not None:
            gt = load_mesh(test.mesh)
            gt_vertices = gt.vertices - np.asarray(test.center)  # into the box's frame (centred on the origin)
            q = mesh_quality(verts, faces, gt_vertices, gt.faces, cfg.chamfer_points, cfg.seed)
            chamfer = {k: q[k] for k in ("l1", "l2", "accuracy", "completeness", "points_per_mesh")}
            chamfer.update({"gt_mesh": str(test.mesh), "distance": q["distance"],
                            "scale": f"scene units (the scene box is [-bound, bound]^3, bound = {field.bound})",
                            "definition": "points sampled by area on each mesh, exact distance to the other "
                                          "mesh's triangles; accuracy = mean d(pred->gt), completeness = mean "
                                          "d(gt->pred), L1 = their mean, L2 = the same with d^2"})
            surface = {k: q[k] for k in ("accuracy_over_completeness", "beyond_1pct", "beyond_2pct", "bodies",
                                         "body_areas", "object_size")}
            surface["definition"] = ("beyond_Npct: share of the predicted area farther than N% of the object's "
                                     "size (the GT bounding-box diagonal) from the GT surface; bodies: connected "
                                     "pieces of mesh.ply, body_areas their area shares")
    rays = (0 if same_views else len(test.files) * test.height * test.width) + cfg.orbit_frames * width * height
    orbit_opacity = torch.stack([o["opacity"] for o in orbit])
    metrics = {"checkpoint": str(ckpt), "scene": str(scene), "density": fs.density, "background": fs.background,
               "view_dependent": fs.view_dependent,
               "test_psnr": ev["psnr"], **object_metrics(ev["renders"], test), "test_ssim": ev["ssim"],
               "test_views": len(ev["per_view"]),
               "orbit_opacity": {"mean": round(float(orbit_opacity.mean()), 5),
                                 "share_of_pixels_above_0.5": round(float((orbit_opacity > 0.5).float().mean()), 5)},
               "per_view": ev["per_view"], "orbit_frames": cfg.orbit_frames, "videos": videos,
               "render_rays_per_second": round(rays / max(test_s + orbit_s, 1e-9), 1),
               "mesh": mesh_info, "chamfer": chamfer, "surface": surface,
               "undecided_voxels": ({"all": round(undecided_fraction(field), 5),
                                     "off_surface": round(undecided_fraction(field, off_surface=True), 5),
                                     "definition": "share of the occupancy grid whose base occupancy is in "
                                                   "(0.25, 0.75); off_surface: not between a decided-inside "
                                                   "and a decided-outside neighbour"}
                                    if fs.density == "rs-sdf" else None),
               "sdf_slice": {"file": "sdf_slice.png", "colours": SLICE_CONVENTION},
               "carving": list((data.get("loop_state") or {}).get("carves") or []),
               "trained_here": trained is not None, "threads": torch.get_num_threads(), "device": str(run_.device),
               "train_seconds": trained["train_seconds"] if trained else None,
               "total_seconds": round(time.perf_counter() - t_start, 2)}
    out = run_.finish(metrics)
    cd_txt = f", Chamfer L1 {chamfer['l1']:.4f} (scene units)" if chamfer else ""
    if "test_psnr_object" in metrics:
        cd_txt = f", object pixels {metrics['test_psnr_object']:.2f} dB" + cd_txt
    print(f"test-view PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f} over {len(ev['per_view'])} views{cd_txt}"
          f" -> {out}", flush=True)
    return metrics
