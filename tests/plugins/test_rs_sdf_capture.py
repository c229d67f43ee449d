"""Tests of the rs-sdf NeRF on capture-like data: the nerfstudio / Instant-NGP loader (per-view intrinsics,
OPENCV ray undistortion, splits, masks, the scene box rules), the background models, bad inputs through the
CLI, a tiny train-nerf + render on a nerfstudio scene, and tools/colmap_to_nerfstudio.py."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from geocert_rs_sdf.background import Background, sphere_exit
from geocert_rs_sdf.data import Cameras, distort, load_split, pixel_rays, undistort
from geocert_rs_sdf.scenes import _random_poses, _shade, ground_truth_mesh
from geocert_rs_sdf.train import (
    FieldSettings,
    FitSettings,
    build_field,
    fit,
    load_checkpoint,
    save_checkpoint,
)
from test_rs_sdf_nerf import TINY_ARGS, TINY_FIELD  # the tiny model of the NeRF tests

from geocert.cli import main as cli
from geocert.errors import InputError
from geocert.io import write_image, write_ply

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
SHIFT = np.array([0.4, -0.3, 0.2])  # the capture's world is moved: the box centre must follow the cameras
DIST = {"k1": -0.08, "k2": 0.02, "p1": 0.003, "p2": -0.002}


def _sky(d: np.ndarray) -> np.ndarray:
    """A sky-like background colour of unit directions ``[..., 3]``."""
    t = 0.5 * (d[..., 2:3] + 1.0)
    return (1 - t) * np.array([0.85, 0.8, 0.7]) + t * np.array([0.3, 0.5, 0.9])


def make_capture(out: Path, n: int = 10, width: int = 24, height: int = 20, n_test: int = 2) -> Path:
    """A tiny nerfstudio capture of the bundled object (moved by SHIFT) over a sky: JPG images, OPENCV
    cameras with per-frame focal lengths and an off-centre principal point (the rays undistorted by the
    loader's model, so the images are exact), object masks, train/test file lists, the mesh."""
    import open3d as o3d

    verts, faces = ground_truth_mesh(40)
    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    frames = []
    for k, c2w in enumerate(_random_poses(n, np.random.default_rng(1))):
        fl = 30.0 + k
        cam = Cameras(torch.tensor([[fl, fl * 1.02, 0.5 * width + 1.5, 0.5 * height - 1.0, DIST["k1"], DIST["k2"],
                                     0.0, DIST["p1"], DIST["p2"]]], dtype=torch.float64))
        o, d = pixel_rays(torch.from_numpy(c2w)[None], height, width, cam)
        o, d = o[0].numpy().astype(np.float64), d[0].numpy().astype(np.float64)
        t = rc.cast_rays(o3d.core.Tensor(np.concatenate([o, d], -1).astype(np.float32)))["t_hit"].numpy()
        hit = np.isfinite(t)
        img = _sky(d)
        img[hit] = _shade(o[hit] + t[hit, None] * d[hit])
        write_image(out / "images" / f"frame_{k:03d}.jpg", img)
        write_image(out / "masks" / f"frame_{k:03d}.png", hit.astype(np.uint8) * 255)
        pose = c2w.copy()
        pose[:3, 3] += SHIFT
        frames.append({"file_path": f"images/frame_{k:03d}.jpg", "geocert_mask_path": f"masks/frame_{k:03d}.png",
                       "fl_x": fl, "fl_y": fl * 1.02, "transform_matrix": pose.tolist()})
    write_ply(out / "mesh_gt.ply", verts + SHIFT, faces=faces)
    names = [f["file_path"] for f in frames]
    meta = {"camera_model": "OPENCV", "cx": 0.5 * width + 1.5, "cy": 0.5 * height - 1.0, "w": width, "h": height,
            **DIST, "frames": frames, "train_filenames": names[:-n_test], "test_filenames": names[-n_test:],
            "applied_transform": np.eye(4)[:3].tolist(), "geocert_mesh": "mesh_gt.ply"}
    (out / "transforms.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    return make_capture(tmp_path_factory.mktemp("capture") / "scene")


def _edit(scene: Path, tmp_path: Path, change) -> Path:
    """A copy of ``scene`` whose transforms.json is ``change(meta)``."""
    import shutil

    dst = tmp_path / "edited"
    shutil.copytree(scene, dst)
    meta = json.loads((dst / "transforms.json").read_text())
    change(meta)
    (dst / "transforms.json").write_text(json.dumps(meta))
    return dst


# ---------------------------------------------------------------------------------------------- cameras


def test_ray_undistortion_round_trips_through_opencv_project_points():
    cv2 = pytest.importorskip("cv2")
    fx, fy, cx, cy = 90.0, 95.0, 41.5, 28.0
    k1, k2, k3, p1, p2 = -0.12, 0.05, -0.01, 0.004, -0.003
    cam = Cameras(torch.tensor([[fx, fy, cx, cy, k1, k2, k3, p1, p2]], dtype=torch.float64))
    _, d = pixel_rays(torch.eye(4)[None], 60, 80, cam)
    d = d[0].reshape(-1, 3).double().numpy()
    pts = np.stack([d[:, 0], -d[:, 1], -d[:, 2]], 1)  # OpenGL camera → OpenCV camera (x right, y down, z ahead)
    uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]),
                              np.array([k1, k2, p1, p2, k3]))
    j, i = np.meshgrid(np.arange(60) + 0.5, np.arange(80) + 0.5, indexing="ij")
    err = np.abs(uv.reshape(-1, 2) - np.stack([i.ravel(), j.ravel()], 1)).max()
    assert err < 1e-3  # pixels (float32 directions)
    # and without distortion the rays are the plain pinhole ones of the old single focal length
    _, d_old = pixel_rays(torch.eye(4)[None], 6, 8, 7.0)
    _, d_new = pixel_rays(torch.eye(4)[None], 6, 8, Cameras.pinhole(7.0, 6, 8))
    assert torch.equal(d_old, d_new)


def test_undistort_inverts_distort_in_float64():
    k = torch.tensor([-0.2, 0.08, -0.01, 0.002, 0.001], dtype=torch.float64)
    x, y = torch.meshgrid(torch.linspace(-0.6, 0.6, 21, dtype=torch.float64),
                          torch.linspace(-0.5, 0.5, 17, dtype=torch.float64), indexing="ij")
    xd, yd = distort(x, y, k)
    xu, yu = undistort(xd, yd, k)
    assert float((xu - x).abs().max()) < 1e-10 and float((yu - y).abs().max()) < 1e-10


# ---------------------------------------------------------------------------------------------- loader


def test_nerfstudio_loader_reads_per_frame_intrinsics_masks_split_and_centres_the_box(capture):
    train, test = load_split(capture, "train"), load_split(capture, "test")
    assert train.format == "nerfstudio" and not train.rgba and train.background == "learned"
    assert len(train.files) == 8 and [f.name for f in test.files] == ["frame_008.jpg", "frame_009.jpg"]
    assert train.images.shape == (8, 20, 24, 3) and train.alpha.shape == (8, 20, 24)
    assert set(torch.unique(train.alpha).tolist()) == {0.0, 1.0}
    p = train.cameras.params
    assert torch.allclose(p[:, 0], torch.arange(8, dtype=torch.float64) + 30.0)  # per-frame fl_x
    assert torch.allclose(p[:, 1], p[:, 0] * 1.02) and torch.allclose(p[:, 2], torch.full((8,), 13.5, dtype=torch.float64))
    assert torch.allclose(p[0, 4:], torch.tensor([DIST["k1"], DIST["k2"], 0, DIST["p1"], DIST["p2"]], dtype=torch.float64))
    # the box centre is the cameras' look-at point (the object's origin, moved by SHIFT); both splits share it
    assert np.allclose(train.center, SHIFT, atol=1e-4) and train.center == test.center
    assert (train.bound, train.near, train.far) == (test.bound, test.near, test.far)
    dist = train.c2w[:, :3, 3].norm(dim=-1)  # the poses are centred: the cameras stay outside the box
    assert float(dist.min()) > math.sqrt(3) * train.bound and train.near < float(dist.min()) - train.bound
    assert 1.0 < train.bound < 2.0 and train.far > float(dist.max())
    # --downscale: half the pixels, the intrinsics halved
    half = load_split(capture, "train", downscale=2)
    assert half.images.shape == (8, 10, 12, 3) and torch.allclose(half.cameras.params[:, :4], p[:, :4] / 2)
    assert torch.allclose(half.images[0], train.images[0].reshape(10, 2, 12, 2, 3).mean((1, 3)))


def test_nerfstudio_mask_path_keeps_its_meaning_pixels_to_ignore(capture, tmp_path):
    def ignore_masks(meta):
        for f in meta["frames"]:
            f["mask_path"] = f.pop("geocert_mask_path")

    split = load_split(_edit(capture, tmp_path, ignore_masks), "train")
    assert split.alpha is None and split.valid is not None and split.valid.dtype == torch.bool
    assert torch.equal(split.valid, load_split(capture, "train").alpha > 0.5)
    # training draws no ignored pixel: a field fitted on them only sees the object's pixels
    fs = dataclasses.replace(TINY_FIELD, background="learned")
    field = build_field(fs, split.bound, near=split.near, far=split.far)
    drawn = []
    import geocert_rs_sdf.train as train_mod

    real = train_mod.render_rays

    def spy(field_, state, o, d, **kw):
        drawn.append(d.detach().clone())
        return real(field_, state, o, d, **kw)

    train_mod.render_rays = spy
    try:
        fit(field, fs, FitSettings(steps=3, rays=64), split, progress=False)
    finally:
        train_mod.render_rays = real
    _, dirs = pixel_rays(split.c2w, split.height, split.width, split.cameras)
    ok_dirs = dirs[split.valid]
    for d in drawn:
        dist = torch.cdist(d, ok_dirs).min(dim=1).values
        assert float(dist.max()) < 2e-3  # (cdist round-off; neighbouring pixels are 0.03 apart)


def test_nerfstudio_default_split_is_its_ninety_percent_rule(capture, tmp_path):
    def drop_lists(meta):
        meta.pop("train_filenames")
        meta.pop("test_filenames")
        meta["frames"] = meta["frames"][::-1]  # the rule sorts by file_path first

    scene = _edit(capture, tmp_path, drop_lists)
    # nerfstudio: ceil(0.9·10) = 9 training frames at np.linspace(0, 9, 9, dtype=int) = 0..7, 9 → test = [8]
    assert [f.name for f in load_split(scene, "test").files] == ["frame_008.jpg"]
    assert len(load_split(scene, "train").files) == 9


def test_instant_ngp_aabb_scale_scale_offset_box(capture, tmp_path):
    def ngp(meta):
        meta.update(aabb_scale=4, scale=0.5, offset=[0.2, 0.5, 0.7])

    split = load_split(_edit(capture, tmp_path, ngp), "train")
    assert np.allclose(split.center, [(0.5 - 0.2) / 0.5, 0.0, (0.5 - 0.7) / 0.5]) and split.bound == 1.0
    only_aabb = load_split(_edit(capture, tmp_path / "b", lambda m: m.update(aabb_scale=2)), "train")
    assert only_aabb.center == (0.0, 0.0, 0.0) and math.isclose(only_aabb.bound, 0.5 / 0.33)  # NGP's defaults
    given = load_split(_edit(capture, tmp_path / "c", lambda m: m.update(geocert_bound=0.7, geocert_center=[1, 2, 3])),
                       "train")
    assert given.bound == 0.7 and given.center == (1.0, 2.0, 3.0)


def test_nerf_synthetic_scenes_keep_their_box_and_segment(tmp_path):
    from geocert_rs_sdf.scenes import SceneSpec, make_scene

    scene = make_scene(tmp_path / "syn", SceneSpec(width=16, n_train=2, n_val=1, n_test=1, mesh_res=24))
    split = load_split(scene, "test")
    assert (split.bound, split.near, split.far, split.center) == (1.0, 2.0, 6.0, (0.0, 0.0, 0.0))
    assert split.rgba and split.background == "white" and split.format == "nerf-synthetic"
    meta = json.loads((scene / "transforms_train.json").read_text())
    meta.pop("geocert_bound")
    (scene / "transforms_train.json").write_text(json.dumps(meta))
    assert load_split(scene, "test").bound == 1.5  # the Blender scenes' default


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(camera_model="OPENCV_FISHEYE"), "camera_model 'OPENCV_FISHEYE' is not supported"),
    (lambda m: [m.pop(k) for k in ("fl_x", "fl_y") if k in m] + [f.pop("fl_x") and f.pop("fl_y") for f in m["frames"]],
     "missing intrinsics"),
    (lambda m: m.update(test_filenames=["images/nope.jpg"]), "test_filenames names 1 file(s) with no frame"),
    (lambda m: m["frames"][0].update(transform_matrix=[[1, 0], [0, 1]]), "finite 4x4 matrix"),
    (lambda m: m.update(applied_transform=[1, 2]), "applied_transform must be a 3x4 or 4x4 matrix"),
    (lambda m: m.update(aabb_scale=0.5), "aabb_scale must be >= 1"),
])
def test_bad_captures_are_one_line_errors_naming_the_file(capture, tmp_path, capsys, change, message):
    scene = _edit(capture, tmp_path, change)
    out = tmp_path / "o"
    assert cli(["train-nerf", str(scene), "--output", str(out), "--steps", "2", *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "transforms.json" in err and not out.exists()


def test_images_of_mixed_sizes_and_random_background_without_alpha_are_refused(capture, tmp_path, capsys):
    scene = _edit(capture, tmp_path, lambda m: None)
    write_image(scene / "images" / "frame_003.jpg", np.zeros((10, 12, 3)))
    with pytest.raises(InputError, match=r"frame_003.jpg: image size 12x10 differs"):
        load_split(scene, "train")
    def no_masks(meta):
        for f in meta["frames"]:
            f.pop("geocert_mask_path")
    scene = _edit(capture, tmp_path / "b", no_masks)
    out = tmp_path / "o"
    assert cli(["train-nerf", str(scene), "--output", str(out), "--background", "random", "--steps", "2",
                *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--background random needs images with alpha or masks" in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- backgrounds


def test_background_models():
    o = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5]])
    d = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, 1.0], [1.0, -1.0, 0.3]]), dim=-1)
    e = sphere_exit(o, d, 5.0)
    assert torch.allclose(e[0], torch.tensor([0.0, 0.0, 1.0])) and torch.allclose(e.norm(dim=-1), torch.ones(2))
    assert torch.allclose((o[1] + ((5 * e[1] - o[1]) @ d[1]) * d[1]), 5 * e[1], atol=1e-5)  # on the ray
    assert Background("white")(o, d) == 1.0 and Background("black")(o, d) == 0.0
    rnd = Background("random")
    g = torch.Generator().manual_seed(0)
    c = rnd(o, d, training=True, generator=g)
    assert c.shape == (2, 3) and not torch.equal(c[0], c[1]) and rnd(o, d) == 1.0  # rendered on white
    learned = Background("learned", 5.0, generator=torch.Generator().manual_seed(0))
    col = learned(o, d)
    assert col.shape == (2, 3) and bool(((col > 0) & (col < 1)).all()) and learned.parameters_to_train()
    with pytest.raises(ValueError, match="background must be one of"):
        Background("grey")


@pytest.mark.parametrize("mode", ["learned", "random", "black"])
def test_fit_with_each_background_learns_and_the_checkpoint_keeps_it(capture, tmp_path, mode):
    from geocert_rs_sdf.train import background_radius, resolve_field

    train = load_split(capture, "train", white_bg=mode != "black")
    fs = resolve_field(FieldSettings(**{**TINY_FIELD.__dict__, "background": mode}), train)
    field = build_field(fs, train.bound, generator=torch.Generator().manual_seed(0), near=train.near, far=train.far,
                        background_radius=background_radius(train))
    assert field.background_model.mode == mode
    before = [p.detach().clone() for p in field.background_model.parameters_to_train()]
    st = FitSettings(steps=30, rays=128, seed=0)
    res = fit(field, fs, st, train, progress=False)
    assert math.isfinite(res["last"]["loss"])
    after = field.background_model.parameters_to_train()
    assert (mode == "learned") == bool(after) and all(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    path = save_checkpoint(tmp_path / "c.pt", field, fs, st, 30)
    back, fs_back, _, _ = load_checkpoint(path)
    assert fs_back.background == mode and (back.near, back.far) == (field.near, field.far)
    assert float(back.background_model.radius) == float(field.background_model.radius) > 0
    for a, b in zip(back.background_model.state_dict().values(), field.background_model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_without_background_keys_loads_as_white(tmp_path):
    field = build_field(TINY_FIELD, 1.0)
    path = save_checkpoint(tmp_path / "c.pt", field, TINY_FIELD, FitSettings(steps=1), 1)
    data = torch.load(path, weights_only=False)
    for k in ("near", "far", "background"):
        data["field"].pop(k)
    data["field"]["view_dependent"] = False  # a flag before "auto"
    data["model"] = {k: v for k, v in data["model"].items() if not k.startswith("background_model.")}
    torch.save(data, path)
    back, fs, _, _ = load_checkpoint(path)
    assert back.background_model.mode == "white" and (back.near, back.far) == (2.0, 6.0)
    assert fs.view_dependent == "off" and not back.view_dependent


# ---------------------------------------------------------------------------------------------- end to end


def test_train_nerf_and_render_on_a_nerfstudio_capture(capture, tmp_path, capsys):
    model = tmp_path / "model"
    assert cli(["train-nerf", str(capture), "--output", str(model), "--steps", "6", *TINY_ARGS]) == 0
    m = json.loads((model / "metrics.json").read_text())
    assert m["background"] == "learned" and m["view_dependent"] == "on" and np.allclose(m["scene_box"]["center"], SHIFT, atol=1e-4)
    assert math.isfinite(m["test_psnr_object"]) and 0 <= m["background_opacity_mean"] <= 1
    out = tmp_path / "render"
    assert cli(["render", "--checkpoint", str(model / "checkpoint.pt"), "--output", str(out), "--orbit-frames", "2",
                "--mesh-res", "16", "--chamfer-points", "200", "--threads", "1"]) == 0
    assert "object pixels" in capsys.readouterr().out
    r = json.loads((out / "metrics.json").read_text())
    assert r["test_views"] == 2 and math.isfinite(r["test_psnr"]) and math.isfinite(r["test_psnr_object"])
    assert 0 <= r["orbit_opacity"]["mean"] <= 1 and len(list((out / "orbit").glob("*.png"))) == 2
    assert "orbit.mp4" in r["videos"] and (out / "orbit.mp4").stat().st_size > 0
    from geocert.io import read_image

    assert read_image(out / "orbit" / "frame_000.png").shape[:2] == (20, 24)  # the test views' aspect


# ---------------------------------------------------------------------------------------------- COLMAP tool


def test_colmap_text_model_converts_to_a_nerfstudio_scene_that_loads(tmp_path):
    """A hand-made COLMAP text model (two OPENCV views of a point at the world origin): the converted poses
    put the cameras where COLMAP does and the point projects where COLMAP says."""
    cv2 = pytest.importorskip("cv2")
    model = tmp_path / "sparse"
    model.mkdir()
    fx, fy, cx, cy, k1, k2, p1, p2 = 50.0, 52.0, 16.5, 12.0, -0.05, 0.01, 0.001, -0.002
    (model / "cameras.txt").write_text(f"# comment\n1 OPENCV 32 24 {fx} {fy} {cx} {cy} {k1} {k2} {p1} {p2}\n")
    rot = [cv2.Rodrigues(np.array(r))[0] for r in ([0.1, -0.2, 0.05], [-0.3, 0.4, 0.2])]
    tvec = [np.array([0.2, -0.1, 4.0]), np.array([-0.3, 0.2, 3.5])]
    lines = ["# images"]
    for k, (r, t) in enumerate(zip(rot, tvec, strict=True)):
        q = _quaternion(r)
        lines += [f"{k + 1} {q[0]} {q[1]} {q[2]} {q[3]} {t[0]} {t[1]} {t[2]} 1 img_{k}.png", ""]
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    images = tmp_path / "images"
    images.mkdir()
    for k in range(2):
        write_image(images / f"img_{k}.png", np.full((24, 32, 3), 0.5))
    out = tmp_path / "scene"
    subprocess.run([sys.executable, str(ROOT / "tools" / "colmap_to_nerfstudio.py"), str(model), str(images),
                    str(out)], check=True, capture_output=True, text=True)
    meta = json.loads((out / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV" and meta["frames"][0]["file_path"] == "images/img_0.png"
    at = np.vstack([np.asarray(meta["applied_transform"]), [0, 0, 0, 1]])
    for k, fr in enumerate(meta["frames"]):
        c2w = np.linalg.inv(at) @ np.asarray(fr["transform_matrix"])  # back into COLMAP's world
        assert np.allclose(c2w[:3, 3], -rot[k].T @ tvec[k], atol=1e-9)  # the camera centre
        # the world origin seen through the converted OpenGL pose and the loader's cameras lands where
        # cv2.projectPoints puts it with COLMAP's pose
        uv, _ = cv2.projectPoints(np.zeros((1, 3)), cv2.Rodrigues(rot[k])[0], tvec[k],
                                  np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), np.array([k1, k2, p1, p2]))
        w2c = np.linalg.inv(c2w)
        p_cam = w2c[:3, 3]  # the origin in the OpenGL camera frame
        cam = torch.tensor([[fx, fy, cx, cy, k1, k2, 0, p1, p2]], dtype=torch.float64)
        x, y = p_cam[0] / -p_cam[2], -p_cam[1] / -p_cam[2]
        xd, yd = distort(torch.tensor(x), torch.tensor(y), cam[0, 4:])
        assert np.allclose([fx * float(xd) + cx, fy * float(yd) + cy], uv.reshape(2), atol=1e-6)
    split = load_split(out, "train")
    assert split.cameras.params.shape[1] == 9 and split.images.shape[1:] == (24, 32, 3)


def _quaternion(r: np.ndarray) -> np.ndarray:
    """qw, qx, qy, qz of a rotation matrix (COLMAP's order)."""
    w = math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    return np.array([w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)])


def test_colmap_tool_refuses_unsupported_models_in_one_line(tmp_path):
    model = tmp_path / "sparse"
    model.mkdir()
    (model / "cameras.txt").write_text("1 OPENCV_FISHEYE 32 24 50 50 16 12 0 0 0 0\n")
    (model / "images.txt").write_text("")
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "colmap_to_nerfstudio.py"), str(model),
                          str(tmp_path), str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "OPENCV_FISHEYE" in res.stderr
    assert not (tmp_path / "o").exists()
