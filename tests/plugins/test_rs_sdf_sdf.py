"""Tests of ``geocert sdf`` (rs-sdf plugin): the ray-parity voxelizer against its slow twin, the RS-SDF against
exact distances (exact on flat faces, biased by −σ²/R on a sphere), Monte-Carlo smoothing against the grid
blur, the command's outputs, and its one-line errors on bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from geocert_rs_sdf.config import SdfConfig
from geocert_rs_sdf.mesh_io import check_mesh, load_mesh, load_occupancy
from geocert_rs_sdf.sdf import (
    band_errors,
    blur_sigma,
    exact_band_distance,
    laplacian,
    rs_sdf,
    zero_level_mesh,
)
from geocert_rs_sdf.voxelize import (
    Grid,
    grid_for_mesh,
    margin_voxels,
    mesh_distance,
    open_edges,
    sample_offsets,
    supersampled_occupancy,
    voxelize,
    voxelize_reference,
    voxelize_vote,
)

from geocert.cli import main as cli
from geocert.errors import InputError, ParameterError
from geocert.smoothing import sample_counts

torch.set_num_threads(1)

SIGMA = 1.5


def box_signed_distance(points: np.ndarray, half: float) -> np.ndarray:
    """Exact signed distance to the cube [−half, half]³, positive inside."""
    q = np.abs(points) - half
    return -(np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0))


def all_centres(grid: Grid) -> np.ndarray:
    return grid.centres(np.argwhere(np.ones(grid.shape, dtype=bool)))


def cube(rotation: np.ndarray | None = None):
    m = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    if rotation is not None:
        t = np.eye(4)
        t[:3, :3] = rotation
        m.apply_transform(t)
    return check_mesh(m.vertices, m.faces, "cube")


# ---------------------------------------------------------------------------------------------- voxelizer


@pytest.mark.parametrize("shape", ["icosphere", "torus"])
def test_voxelize_matches_reference(shape):
    m = (trimesh.creation.icosphere(subdivisions=1) if shape == "icosphere"
         else trimesh.creation.torus(major_radius=1.0, minor_radius=0.45, major_sections=10, minor_sections=6))
    grid = grid_for_mesh(np.asarray(m.vertices), 8, 1)
    fast = voxelize(m.vertices, m.faces, grid)
    slow = voxelize_reference(m.vertices, m.faces, grid)
    assert fast.shape == grid.shape and fast.any() and not fast.all()
    np.testing.assert_array_equal(fast, slow)


def test_voxelize_is_exact_when_mesh_edges_lie_on_ray_columns():
    # cube corners exactly on column centres: rays through shared edges and vertices must count once
    grid = Grid((12, 12, 12), (0.0, 0.0, 0.0), 1.0)
    m = trimesh.creation.box(bounds=[(2.0, 3.0, 2.5), (9.0, 8.0, 9.5)])
    occ = voxelize(m.vertices, m.faces, grid)
    c = all_centres(grid).reshape(*grid.shape, 3)
    x_in = (c[..., 0] + 1.4142135623730951e-6 > 2.0) & (c[..., 0] + 1.4142135623730951e-6 < 9.0)
    y_in = (c[..., 1] + 0.7320508075688772e-6 > 3.0) & (c[..., 1] + 0.7320508075688772e-6 < 8.0)
    z_in = (c[..., 2] > 2.5) & (c[..., 2] < 9.5)
    np.testing.assert_array_equal(occ, x_in & y_in & z_in)


def test_supersampled_occupancy_is_the_partial_volume():
    offsets = sample_offsets(3)
    assert offsets.shape == (27, 3)
    for axis in range(3):  # a Latin hypercube: 27 distinct, evenly spaced values per axis
        np.testing.assert_allclose(np.sort(offsets[:, axis]), (np.arange(27) + 0.5) / 27 - 0.5)
    # a slab x < 4.3 (voxel faces at half-integers): the voxel centred at 4 is 0.8 inside
    grid = Grid((8, 6, 6), (0.0, 0.0, 0.0), 1.0)
    m = trimesh.creation.box(bounds=[(-5.0, -5.0, -5.0), (4.3, 10.0, 10.0)])
    occ = supersampled_occupancy(m.vertices, m.faces, grid, 3)
    np.testing.assert_allclose(occ[:4], 1.0)
    np.testing.assert_allclose(occ[4], 22 / 27)  # 0.8 voxel resolved to 1/27
    np.testing.assert_allclose(occ[5:], 0.0)


def test_open_edges_counts_holes():
    m = trimesh.creation.box()
    assert open_edges(m.faces) == 0
    assert open_edges(m.faces[:-2]) > 0


def test_mesh_distance_is_exact_on_a_cube():
    mesh = cube()
    pts = np.random.default_rng(0).uniform(-2.0, 2.0, size=(500, 3))
    d, backend = mesh_distance(mesh.vertices, mesh.faces, pts)
    np.testing.assert_allclose(d, np.abs(box_signed_distance(pts, 1.0)), atol=1e-5)
    assert backend


def test_mesh_distance_without_open3d_falls_back_to_trimesh(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "open3d", None)  # `import open3d` now raises ImportError
    mesh = cube()
    pts = np.random.default_rng(1).uniform(-2.0, 2.0, size=(200, 3))
    d, backend = mesh_distance(mesh.vertices, mesh.faces, pts)
    assert backend.startswith("trimesh")
    np.testing.assert_allclose(d, np.abs(box_signed_distance(pts, 1.0)), atol=1e-6)


# ---------------------------------------------------------------------------------------------- RS-SDF bars


def test_flat_face_recovers_true_distance_binary_occupancy():
    """Bar: with the exact σ in the blur, σ·Φ⁻¹(p) is the signed distance near a flat face (faces on voxel
    faces: the grid puts the cube's faces there), to well within 0.05 voxel."""
    mesh = cube()
    grid = grid_for_mesh(mesh.vertices, 48, margin_voxels(SIGMA))
    occ = voxelize(mesh.vertices, mesh.faces, grid)
    sdf = rs_sdf(torch.from_numpy(occ.astype(np.float64)), SIGMA).numpy()
    c = all_centres(grid)
    d = (box_signed_distance(c, 1.0) / grid.h).reshape(grid.shape)
    # inside the faces, 4σ + 1 voxels from every edge
    face_interior = (np.sort(np.abs(c), axis=1)[:, 1] < 1.0 - (4 * SIGMA + 1) * grid.h).reshape(grid.shape)
    near = face_interior & (np.abs(d) < 2 * SIGMA)
    assert near.sum() > 1000
    err = np.abs(sdf - d)[near]
    assert err.max() < 0.05, err.max()
    assert err.mean() < 0.005


def test_flat_face_any_position_with_partial_volume():
    """A rotated cube (faces anywhere in the voxels): partial-volume occupancy (k = 3) with the blur corrected
    to a total σ keeps the flat-face error within 0.05 voxel; binary occupancy does not (quantization)."""
    rot = trimesh.transformations.random_rotation_matrix(np.random.default_rng(0).random(3))[:3, :3]
    mesh = cube(rot)
    grid = grid_for_mesh(mesh.vertices, 64, margin_voxels(SIGMA))
    c = all_centres(grid)
    d = (box_signed_distance(c @ rot, 1.0) / grid.h).reshape(grid.shape)
    face_interior = (np.sort(np.abs(c @ rot), axis=1)[:, 1] < 1.0 - (4 * SIGMA + 1) * grid.h).reshape(grid.shape)
    near = face_interior & (np.abs(d) < 2 * SIGMA)
    partial = supersampled_occupancy(mesh.vertices, mesh.faces, grid, 3)
    err_partial = np.abs(rs_sdf(torch.from_numpy(partial), SIGMA, 3).numpy() - d)[near]
    binary = voxelize(mesh.vertices, mesh.faces, grid).astype(np.float64)
    err_binary = np.abs(rs_sdf(torch.from_numpy(binary), SIGMA).numpy() - d)[near]
    assert err_partial.max() < 0.05, err_partial.max()
    assert err_binary.mean() > 2 * err_partial.mean()


def test_sphere_shows_the_curvature_bias():
    """Near a sphere of radius R voxels the RS-SDF is biased by about −σ²/R (mean curvature): measured against
    the mesh's exact distance, the band's mean signed error is that bias, far above the flat-face error."""
    m = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    mesh = check_mesh(m.vertices, m.faces, "sphere")
    radius_vox = 10.0
    grid = grid_for_mesh(mesh.vertices, int(2 * radius_vox) + 2 * margin_voxels(SIGMA), margin_voxels(SIGMA))
    inside = voxelize(mesh.vertices, mesh.faces, grid)
    occ = supersampled_occupancy(mesh.vertices, mesh.faces, grid, 3)
    sdf = rs_sdf(torch.from_numpy(occ), SIGMA, 3).numpy()
    d, _ = exact_band_distance(mesh, grid, inside, 5 * SIGMA + 2)
    band = np.abs(np.nan_to_num(d, nan=np.inf)) < 2 * SIGMA
    err = (sdf - d)[band]
    predicted = -SIGMA**2 / (1.0 / grid.h)
    assert predicted < -0.2
    assert err.mean() == pytest.approx(predicted, rel=0.15)
    # the metrics put every band voxel of a sphere in "curved" and predict the bias from the Laplacian
    stats = band_errors(sdf, d, SIGMA, 2.0, grid.h)
    assert stats["flat"]["voxels"] == 0
    assert stats["curved"]["mean_predicted_bias_vox"] == pytest.approx(predicted, rel=0.15)
    assert stats["curved"]["mean_signed_error_vox"] == pytest.approx(err.mean(), abs=1e-6)


def test_blur_sigma_keeps_the_total_smoothing():
    assert blur_sigma(1.5, 1) == 1.5
    k3 = blur_sigma(1.5, 3)
    assert k3**2 == pytest.approx(1.5**2 - 1 / 12 - (27**2 - 1) / (12 * 27**2))
    with pytest.raises(ParameterError, match="supersample=3"):
        blur_sigma(0.3, 3)


def test_laplacian_of_a_sphere_distance():
    c = np.stack(np.meshgrid(*[np.arange(-20.0, 21.0)] * 3, indexing="ij"), axis=-1)
    r = np.linalg.norm(c, axis=-1)
    d = 12.0 - r  # positive inside a sphere of radius 12
    lap = laplacian(d)
    shell = (np.abs(r - 12.0) < 0.5) & np.isfinite(lap)
    np.testing.assert_allclose(lap[shell], -2.0 / r[shell], rtol=0.05)
    assert np.isnan(lap[0]).all()


def test_rs_sdf_is_differentiable():
    occ = torch.zeros(20, 20, 20, dtype=torch.float64)
    occ[5:15, 5:15, 5:15] = 1.0
    occ.requires_grad_(True)
    rs_sdf(occ, 1.0).sum().backward()
    assert occ.grad is not None and torch.isfinite(occ.grad).all() and occ.grad.abs().sum() > 0


def test_monte_carlo_smoothing_agrees_with_the_grid_blur():
    """The paper's claim: Monte-Carlo randomized smoothing of the occupancy classifier (n noisy queries per
    point, the core's sample_counts) estimates the same SDF as the grid convolution, within its sampling error."""
    mesh = cube()
    grid = grid_for_mesh(mesh.vertices, 32, margin_voxels(1.0))
    occ = voxelize(mesh.vertices, mesh.faces, grid)
    sdf_grid = rs_sdf(torch.from_numpy(occ.astype(np.float64)), 1.0).numpy()
    gen = np.random.default_rng(1)
    idx = np.argwhere(np.abs(sdf_grid) < 1.5)
    idx = idx[gen.choice(len(idx), 40, replace=False)]
    occ_t = torch.from_numpy(occ)
    shape = torch.tensor(grid.shape)

    def classify(points):  # [B, N, 3] voxel coordinates → occupancy of the voxel containing each point
        cell = torch.floor(points + 0.5).long().clamp(torch.zeros(3, dtype=torch.long), shape - 1)
        return occ_t[cell[..., 0], cell[..., 1], cell[..., 2]].long()

    n = 4000
    counts = sample_counts(classify, torch.from_numpy(idx).double(), sigma=1.0, n=n, num_classes=2,
                           batch_size=1000, generator=torch.Generator().manual_seed(0))
    p = counts[:, 1].double() / n
    sdf_mc = torch.special.ndtri(p.clamp(1e-6, 1 - 1e-6)).numpy()
    ref = sdf_grid[tuple(idx.T)]
    p_ref = torch.special.ndtr(torch.from_numpy(ref)).numpy()
    std = np.sqrt(p_ref * (1 - p_ref) / n) / (np.exp(-0.5 * ref**2) / math.sqrt(2 * math.pi))
    z = (sdf_mc - ref) / std
    assert np.abs(z).max() < 4.5
    assert abs(z.mean()) < 4.5 / math.sqrt(len(z))


def test_zero_level_mesh_winds_outward():
    occ = torch.zeros(24, 24, 24, dtype=torch.float64)
    occ[6:18, 6:18, 6:18] = 1.0
    sdf = rs_sdf(occ, 1.0).numpy()
    verts, faces = zero_level_mesh(sdf, Grid(sdf.shape, (0.0, 0.0, 0.0), 0.5))
    m = trimesh.Trimesh(verts, faces, process=False)
    assert m.volume > 0  # outward winding gives a positive signed volume
    assert m.volume == pytest.approx(6.0**3, rel=0.12)  # a little less: the zero level rounds edges (bias)
    assert zero_level_mesh(-np.ones((4, 4, 4)), Grid((4, 4, 4), (0.0, 0.0, 0.0), 1.0)) is None


# ---------------------------------------------------------------------------------------------- command


def test_command_on_a_box_mesh_file(tmp_path):
    path = tmp_path / "box.stl"
    trimesh.creation.box(extents=(2.0, 2.0, 2.0)).export(path)
    out = tmp_path / "out"
    assert cli(["sdf", str(path), "--output", str(out), "--resolution", "40", "--supersample", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["watertight"] is True and metrics["input"] == str(path)
    h = metrics["voxel_size"]
    sdf = np.load(out / "sdf.npy")
    assert sdf.shape == tuple(metrics["grid"]["shape"]) and sdf.dtype == np.float32
    assert sdf.max() > 0 > sdf.min()
    flat, curved = metrics["band"]["flat"], metrics["band"]["curved"]
    assert flat["voxels"] > 100 and flat["max_abs_error_vox"] < 0.05
    assert flat["max_abs_error"] == pytest.approx(flat["max_abs_error_vox"] * h)
    assert curved["mean_signed_error_vox"] < -0.05  # edges and corners: convex, so biased outwards
    mesh = trimesh.load(out / "mesh.ply", force="mesh")
    assert mesh.is_watertight and mesh.volume == pytest.approx(8.0, rel=0.1)
    agreement = metrics["zero_level_mesh"]["agreement_with_input"]
    assert agreement["output_to_input_mean_vox"] < 0.5
    assert (out / "sdf_slice.png").stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["resolution"] == 40 and config["plugin"] == "rs-sdf"
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_command_default_scene_metrics(tmp_path):
    out = tmp_path / "out"
    assert cli(["sdf", "--output", str(out), "--resolution", "40", "--sigma", "1.2", "--no-mesh"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["input"].startswith("bundled scene mesh")
    assert metrics["zero_level_mesh"] is None and not (out / "mesh.ply").exists()
    assert metrics["blur_sigma_vox"] == pytest.approx(blur_sigma(1.2, 3))
    band = metrics["band"]
    assert band["all"]["voxels"] == band["flat"]["voxels"] + band["curved"]["voxels"] > 0
    assert band["all"]["mean_abs_error_vox"] < 0.5


def test_command_on_an_occupancy_grid(tmp_path):
    occ = np.zeros((40, 40, 40), dtype=bool)
    occ[8:32, 8:32, 8:32] = True
    np.save(tmp_path / "occ.npy", occ)
    out = tmp_path / "out"
    assert cli(["sdf", str(tmp_path / "occ.npy"), "--output", str(out), "--voxel-size", "0.5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["input_kind"] == "occupancy grid" and "distance transform" in metrics["reference"]
    assert metrics["voxel_size"] == 0.5 and metrics["blur_sigma_vox"] == 1.5
    sdf = np.load(out / "sdf.npy")
    assert sdf.shape == (40, 40, 40)
    # axis-aligned faces: the distance-transform reference is exact there
    assert metrics["band"]["flat"]["max_abs_error_vox"] < 0.01
    assert sdf[20, 20, 8] == pytest.approx(0.5 * 0.5, abs=0.01)  # half a voxel inside the face, in units


# ---------------------------------------------------------------------------------------------- bad input


def _fails(argv, tmp_path, capsys, *needles):
    out = tmp_path / "out"
    code = cli(["sdf", "--output", str(out), "--resolution", "24", "--sigma", "1.0", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("geocert sdf: error: ")
    for needle in needles:
        assert needle in err[-1], err[-1]
    assert not out.exists() or not any(out.iterdir()), "something was written"


def test_bad_parameters(tmp_path, capsys):
    _fails(["--sigma", "0"], tmp_path, capsys, "sigma must be > 0")
    _fails(["--sigma", "-1"], tmp_path, capsys, "sigma must be > 0")
    _fails(["--supersample", "9"], tmp_path, capsys, "supersample")


def test_output_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("x")
    assert cli(["sdf", "--output", str(out), "--resolution", "24", "--sigma", "1.0"]) == 2
    assert f"--output {out}: exists and is not a folder" in capsys.readouterr().err
    assert out.read_text() == "x"


def test_resolution_too_small(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["sdf", "--output", str(out), "--resolution", "10"]) == 2
    assert "resolution must be >=" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name,content,needle", [
    ("empty.ply", "", "empty"),
    ("garbage.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n", "cannot read mesh"),
    ("points.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no triangles"),
    ("nan.obj", "v 0 0 0\nv 1 0 0\nv 0 nan 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n", "NaN"),
    ("triangle.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "no voxel centre is inside"),
    ("mesh.xyz", "0 0 0\n", "unsupported"),
    ("missing.stl", None, "not found"),
])
def test_bad_mesh_files(tmp_path, capsys, name, content, needle):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    _fails([str(path)], tmp_path, capsys, str(path), needle)


@pytest.mark.parametrize("array,needle", [
    (np.zeros((4, 4)), "must be 3D"),
    (np.zeros((4, 4, 4, 1)), "must be 3D"),
    (np.full((4, 4, 4), "a"), "dtype"),
    (np.full((4, 4, 4), 2.0), "[0, 1]"),
    (np.full((4, 4, 4), np.nan), "NaN"),
    (np.zeros((4, 4, 4)), "no occupied voxel"),
    (np.ones((4, 4, 4), dtype=bool), "no empty voxel"),
])
def test_bad_occupancy_grids(tmp_path, capsys, array, needle):
    path = tmp_path / "grid.npy"
    np.save(path, array)
    _fails([str(path)], tmp_path, capsys, str(path), needle)
    with pytest.raises(InputError, match="grid.npy"):
        load_occupancy(path)


def test_truncated_npy(tmp_path, capsys):
    path = tmp_path / "grid.npy"
    np.save(path, np.zeros((8, 8, 8)))
    path.write_bytes(path.read_bytes()[:100])
    _fails([str(path)], tmp_path, capsys, str(path), "not a NumPy .npy array file")


def test_non_watertight_mesh_warns_and_votes(tmp_path, capsys):
    m = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    path = tmp_path / "open.ply"
    trimesh.Trimesh(m.vertices, m.faces[:-1], process=False).export(path)  # one triangle missing: a hole
    assert not load_mesh(path).watertight
    args = ["--resolution", "24", "--sigma", "1.0", "--supersample", "1"]
    assert cli(["sdf", str(path), "--output", str(tmp_path / "out"), *args]) == 0
    err = capsys.readouterr().err
    assert f"geocert sdf: warning: {path}: mesh is not watertight" in err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["watertight"] is False and "not watertight" in metrics["warnings"][0]
    assert metrics["occupancy"].startswith("majority")
    # rays through the hole flip their column, but only along one axis: the vote restores the closed box
    closed = tmp_path / "closed.ply"
    m.export(closed)
    assert cli(["sdf", str(closed), "--output", str(tmp_path / "ref"), *args]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "sdf.npy"), np.load(tmp_path / "ref" / "sdf.npy"))


def test_voxelize_vote_matches_parity_on_a_closed_mesh():
    m = trimesh.creation.icosphere(subdivisions=2)
    grid = grid_for_mesh(np.asarray(m.vertices), 20, 2)
    np.testing.assert_array_equal(voxelize_vote(m.vertices, m.faces, grid), voxelize(m.vertices, m.faces, grid))


def test_config_is_frozen_with_documented_fields():
    import dataclasses

    cfg = SdfConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sigma = 2.0  # type: ignore[misc]
    assert Path(cfg.output).name == "sdf" and cfg.sigma > 0 and cfg.resolution >= 24


# ---------------------------------------------------------------------------------------------- issue 12


@pytest.fixture
def unwritable_dir(tmp_path) -> Path:
    """A folder where nothing can be created: a read-only folder (not for root), else /sys."""
    import os
    import tempfile

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    for cand in (ro, Path("/sys")):
        try:
            fd, probe = tempfile.mkstemp(dir=cand)
        except OSError:
            yield cand
            ro.chmod(0o700)
            return
        os.close(fd)
        os.unlink(probe)
    ro.chmod(0o700)
    pytest.skip("no unwritable folder on this machine")


def _box_stl(tmp_path) -> Path:
    path = tmp_path / "box.stl"
    trimesh.creation.box(extents=(2.0, 2.0, 2.0)).export(path)
    return path


def test_sdf_output_in_an_unwritable_place_is_refused_before_the_work(tmp_path, capsys, unwritable_dir):
    out = unwritable_dir / "out"
    assert cli(["sdf", str(_box_stl(tmp_path)), "--output", str(out), "--resolution", "24", "--sigma", "1.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geocert sdf: error: --output ") and "cannot write" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("args,option", [
    (["--resolution", "100000"], "--resolution 100000"),
    (["--resolution", "20000", "--supersample", "1"], "--resolution 20000"),
])
def test_sdf_refuses_a_grid_that_cannot_fit_in_memory(tmp_path, capsys, args, option):
    out = tmp_path / "out"
    assert cli(["sdf", str(_box_stl(tmp_path)), "--output", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"geocert sdf: error: {option}: needs about "), err
    assert "of memory" in err[0] and "lower --resolution" in err[0]
    assert not out.exists()


def test_sdf_refuses_the_default_mesh_at_a_size_that_cannot_fit(tmp_path, capsys):
    assert cli(["sdf", "--output", str(tmp_path / "out"), "--resolution", "100000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("geocert sdf: error: --resolution 100000: needs about ") and "lower --resolution" in err


def test_sdf_threads_zero_means_auto(tmp_path):
    out = tmp_path / "out"
    assert cli(["sdf", str(_box_stl(tmp_path)), "--output", str(out), "--resolution", "24", "--sigma", "1.0",
                "--supersample", "1", "--threads", "0", "--no-mesh"]) == 0
    assert json.loads((out / "config.json").read_text())["threads"] >= 1


def test_sdf_says_when_no_voxel_is_flat_instead_of_nan(tmp_path, capsys):
    sphere = tmp_path / "sphere.stl"
    trimesh.creation.icosphere(subdivisions=3).export(sphere)
    out = tmp_path / "out"
    assert cli(["sdf", str(sphere), "--output", str(out), "--resolution", "32", "--sigma", "1.0", "--no-mesh"]) == 0
    printed = capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["band"]["flat"]["voxels"] == 0
    assert "nan" not in printed and "flat none" in printed


def test_sdf_on_a_folder_says_it_is_a_folder(tmp_path, capsys):
    folder = tmp_path / "meshes"
    folder.mkdir()
    assert cli(["sdf", str(folder), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"geocert sdf: error: {folder}: is a folder; expected a mesh file (.ply, .obj, .stl, .off) or "
                   "an occupancy grid (.npy)")


def test_sdf_slice_colours_red_inside_with_axes_and_colour_bar(tmp_path):
    occ = np.zeros((40, 40, 40), dtype=bool)
    occ[8:32, 8:32, 8:32] = True
    np.save(tmp_path / "occ.npy", occ)
    out = tmp_path / "out"
    assert cli(["sdf", str(tmp_path / "occ.npy"), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sdf_slice"]["colours"].startswith("red: inside (SDF > 0), blue: outside")


def test_docs_cite_the_paper_by_title_and_arxiv_id():
    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "rs_sdf.md").read_text(encoding="utf-8").split())
    assert "shared/papers" not in text
    assert "arXiv:2408.13135" in text and "Certified Robustness as a Tool for 3D Vision" in text


def test_slice_figure_is_red_inside_and_blue_outside_with_a_colour_bar():
    import io

    import imageio.v3 as iio
    from geocert_rs_sdf.figures import sdf_slice_figure

    values = np.repeat(np.linspace(1.0, -1.0, 20)[:, None], 10, axis=1)  # positive (inside) at small x
    fig = sdf_slice_figure(values, (0.0, 2.0, 0.0, 1.0), xlabel="x", ylabel="z", title="t", units="u")
    ax, bar = fig.axes
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "z" and "red inside" in bar.get_ylabel()
    fig.canvas.draw()
    height = fig.canvas.get_width_height()[1]
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # same dpi and layout as the canvas
    img = iio.imread(buf.getvalue())[..., :3].astype(int)
    for x, inside in ((0.1, True), (1.9, False)):
        px, py = ax.transData.transform((x, 0.5))
        r, _, b = img[int(height - py), int(px)]
        assert (r > b + 50) if inside else (b > r + 50), (x, r, b)


def test_interrupted_sdf_leaves_nothing_and_does_not_promise_a_resume(tmp_path, capsys, monkeypatch):
    import geocert_rs_sdf.sdf as sdf_module

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sdf_module, "rs_sdf", interrupt)
    out = tmp_path / "out"
    assert cli(["sdf", str(_box_stl(tmp_path)), "--output", str(out), "--resolution", "24", "--sigma", "1.0",
                "--supersample", "1"]) == 130
    err = capsys.readouterr().err
    assert "geocert sdf: interrupted" in err and "resume" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["box.stl"]


def test_an_npy_with_pickled_objects_gets_no_library_hint(tmp_path, capsys):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _fails([str(path)], tmp_path, capsys, str(path), "holds Python objects")
    with pytest.raises(InputError) as info:
        load_occupancy(path)
    assert "allow_pickle" not in str(info.value) and "pickle.load" not in str(info.value)
