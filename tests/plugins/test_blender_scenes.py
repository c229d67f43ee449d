"""The committed Blender-rendered scenes (scenes/bunny_synthetic, scenes/capture_nerfstudio): files complete,
JSON in the NeRF-synthetic and nerfstudio formats, and the ground-truth mesh consistent with the cameras (its
vertices project onto the object's pixels, its ray-cast silhouette matches the alpha / mask, through the full
OPENCV model). Cheap: a few views, no Blender."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from _tools import load_tool

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ROOT / "scenes" / "bunny_synthetic"
CAPTURE = ROOT / "scenes" / "capture_nerfstudio"
MAX_BYTES = 6_500_000


def _tool():
    return load_tool("blender_scenes")


@pytest.fixture(scope="module")
def tool():
    return _tool()


def _mesh(folder: Path):
    import trimesh

    mesh = trimesh.load(folder / "mesh_gt.ply", force="mesh", process=False)
    return mesh, np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------- NeRF-synthetic
@pytest.mark.parametrize("split,count", [("train", 100), ("val", 10), ("test", 20)])
def test_synthetic_split_files(split, count):
    meta = json.loads((SYNTHETIC / f"transforms_{split}.json").read_text())
    assert meta["camera_angle_x"] == pytest.approx(0.6911112070083618)
    assert meta["geocert_bound"] == 1.0 and meta["geocert_mesh"] == "mesh_gt.ply"
    assert len(meta["frames"]) == count
    for i, fr in enumerate(meta["frames"]):
        assert fr["file_path"] == f"./{split}/r_{i}"
        assert (SYNTHETIC / split / f"r_{i}.png").is_file()
        m = np.asarray(fr["transform_matrix"])
        assert m.shape == (4, 4)
        np.testing.assert_allclose(m[3], [0, 0, 0, 1])
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-5)
        assert np.linalg.norm(m[:3, 3]) == pytest.approx(4.0, abs=1e-4)
        # OpenGL convention: the camera's −z axis points at the object's centre, its x axis is horizontal
        np.testing.assert_allclose(-m[:3, 2], -m[:3, 3] / 4.0, atol=1e-5)
        assert abs(m[2, 0]) < 1e-6


def test_synthetic_loads_with_geocert():
    from geocert_rs_sdf.data import load_split

    s = load_split(SYNTHETIC, "val")
    assert tuple(s.images.shape) == (10, 200, 200, 3)
    assert s.alpha is not None and s.bound == 1.0 and s.mesh == SYNTHETIC / "mesh_gt.ply"
    a = s.alpha.numpy()
    assert a[:, 0, :].max() == 0.0 and a[:, -1, :].max() == 0.0  # transparent film on the background
    frac = (a > 0.5).mean(axis=(1, 2))
    assert (frac > 0.1).all() and (frac < 0.6).all()


def test_synthetic_mesh_watertight_outward_in_box():
    mesh, verts, _ = _mesh(SYNTHETIC)
    assert mesh.is_watertight and mesh.volume > 0  # outward-facing: positive signed volume
    assert np.abs(verts).max() <= 1.0
    assert np.abs(verts).max(axis=0).max() == pytest.approx(0.95, abs=1e-3)


def test_synthetic_mesh_matches_alpha(tool):
    from geocert.io import read_image

    _, verts, faces = _mesh(SYNTHETIC)
    meta = json.loads((SYNTHETIC / "transforms_train.json").read_text())
    f = 100 / math.tan(0.5 * meta["camera_angle_x"])
    for fr in meta["frames"][::40]:
        mask = read_image(SYNTHETIC / (fr["file_path"] + ".png"))[..., 3] > 127
        args = (verts, faces, fr["transform_matrix"], mask, f, f, 100.0, 100.0)
        on, near = tool.vertex_hit_fraction(*args)
        assert on > 0.85 and near == 1.0
        assert tool.silhouette_iou(*args) > 0.98


def test_synthetic_size():
    assert _folder_bytes(SYNTHETIC) < MAX_BYTES


# ------------------------------------------------------------------------------------------- nerfstudio
@pytest.fixture(scope="module")
def capture_meta():
    return json.loads((CAPTURE / "transforms.json").read_text())


def test_capture_json_is_nerfstudio(capture_meta):
    m = capture_meta
    assert m["camera_model"] == "OPENCV" and (m["w"], m["h"]) == (200, 200)
    assert (m["cx"], m["cy"]) != (100.0, 100.0) and m["fl_x"] == m["fl_y"] > 0
    assert m["k1"] < 0 and all(k in m for k in ("k2", "p1", "p2"))
    assert np.asarray(m["applied_transform"]).shape == (3, 4)
    files = [fr["file_path"] for fr in m["frames"]]
    assert len(files) == len(set(files)) >= 120
    assert len(m["test_filenames"]) == 20 and len(m["train_filenames"]) >= 100
    assert sorted(m["train_filenames"] + m["test_filenames"]) == sorted(files)
    for fr in m["frames"]:
        assert fr["file_path"].startswith("images/frame_") and fr["file_path"].endswith(".jpg")
        assert (CAPTURE / fr["file_path"]).is_file() and (CAPTURE / fr["geocert_mask_path"]).is_file()
        assert np.asarray(fr["transform_matrix"]).shape == (4, 4)
    assert (CAPTURE / m["geocert_mesh"]).is_file()


def test_capture_images_and_masks(capture_meta):
    from geocert.io import read_image

    for fr in capture_meta["frames"][::30]:
        img = read_image(CAPTURE / fr["file_path"])
        assert img.shape == (200, 200, 3) and img.dtype == np.uint8
        mask = read_image(CAPTURE / fr["geocert_mask_path"])
        assert mask.shape == (200, 200) and set(np.unique(mask)) <= {0, 255}
        assert 0.03 < (mask > 0).mean() < 0.5


def test_capture_projection_matches_opencv(tool, capture_meta):
    """The tool's projection (nerfstudio pixel coordinates) equals cv2.projectPoints with the OPENCV model."""
    import cv2

    m = capture_meta
    _, verts, _ = _mesh(CAPTURE)
    dist = {k: m[k] for k in ("k1", "k2", "p1", "p2")}
    c2w = np.asarray(m["frames"][7]["transform_matrix"])
    uv, _ = tool.project_points(verts, c2w, m["fl_x"], m["fl_y"], m["cx"], m["cy"], dist)
    w2c = np.linalg.inv(c2w)
    flip = np.diag([1.0, -1.0, -1.0])  # OpenGL camera -> OpenCV camera
    rvec, _ = cv2.Rodrigues(flip @ w2c[:3, :3])
    k = np.array([[m["fl_x"], 0, m["cx"] - 0.5], [0, m["fl_y"], m["cy"] - 0.5], [0, 0, 1]])  # cv2: centre at i
    ref, _ = cv2.projectPoints(verts, rvec, flip @ w2c[:3, 3], k, np.array([dist[k] for k in ("k1", "k2", "p1", "p2")]))
    np.testing.assert_allclose(uv, ref[:, 0] + 0.5, atol=1e-6)


def test_capture_mesh_matches_masks_through_distortion(tool, capture_meta):
    from geocert.io import read_image

    m = capture_meta
    mesh, verts, faces = _mesh(CAPTURE)
    assert mesh.is_watertight and mesh.volume > 0 and verts[:, 2].min() == pytest.approx(0.0, abs=1e-4)
    dist = {k: m[k] for k in ("k1", "k2", "p1", "p2")}
    for fr in m["frames"][3::40]:
        mask = read_image(CAPTURE / fr["geocert_mask_path"]) > 127
        args = (verts, faces, fr["transform_matrix"], mask, m["fl_x"], m["fl_y"], m["cx"], m["cy"])
        on, near = tool.vertex_hit_fraction(*args, dist=dist)
        assert on > 0.85 and near == 1.0
        iou = tool.silhouette_iou(*args, dist=dist)
        assert iou > 0.98
        # negative controls: the same cameras without the distortion, or with the principal point centred
        assert tool.silhouette_iou(*args) < iou
        centred = (verts, faces, fr["transform_matrix"], mask, m["fl_x"], m["fl_y"], 100.0, 100.0)
        assert tool.silhouette_iou(*centred, dist=dist) < iou - 0.05


def test_capture_size():
    assert _folder_bytes(CAPTURE) < MAX_BYTES


def test_distortion_inverse(tool):
    """opencv_undistort inverts opencv_distort over the image (vectorised)."""
    x, y = np.meshgrid(np.linspace(-0.6, 0.6, 31), np.linspace(-0.6, 0.6, 31))
    d = {"k1": -0.05, "k2": 0.01, "p1": 0.002, "p2": -0.0015}
    xd, yd = tool.opencv_distort(x, y, d)
    assert np.abs(xd - x).max() > 1e-3  # it does distort
    xu, yu = tool.opencv_undistort(xd, yd, d)
    np.testing.assert_allclose(np.stack([xu, yu]), np.stack([x, y]), atol=1e-10)
