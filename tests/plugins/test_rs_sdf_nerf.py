"""Tests of the rs-sdf NeRF part: scene loader errors, hash grid, grid sampling, compositing, rendering,
training, checkpoints and the train-nerf / render commands end to end (tiny configs)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from geocert_rs_sdf.data import load_split
from geocert_rs_sdf.field import RadianceField, density_from_sdf, sample_grid, sample_grid_reference
from geocert_rs_sdf.hashgrid import HashGrid, encode_reference
from geocert_rs_sdf.metrics import chamfer, sample_surface
from geocert_rs_sdf.render import composite, composite_reference, ray_box, render_rays, render_rays_dense
from geocert_rs_sdf.scenes import SceneSpec, make_scene
from geocert_rs_sdf.train import (
    FieldSettings,
    FitSettings,
    build_field,
    fit,
    load_checkpoint,
    save_checkpoint,
)

from geocert.cli import main as cli
from geocert.errors import InputError

torch.set_num_threads(1)

TINY_FIELD = FieldSettings(grid_res=12, sharpness=0.5, hash_levels=3, hash_log2=10, hash_max_res=24, hidden=16, samples=24,
                           color_samples=4)
TINY_ARGS = ("--grid-res", "12", "--rays", "64", "--samples", "24", "--color-samples", "4", "--hash-levels", "3",
             "--hash-log2", "10", "--hash-max-res", "24", "--hidden", "16", "--threads", "1")


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return make_scene(tmp_path_factory.mktemp("rsnerf") / "scene",
                      SceneSpec(width=16, n_train=4, n_val=1, n_test=2, mesh_res=40))


# ---------------------------------------------------------------------------------------------- loader


def test_scene_layout_and_loader(scene):
    split = load_split(scene, "train")
    assert split.images.shape == (4, 16, 16, 3) and split.c2w.shape == (4, 4, 4)
    assert split.mesh is not None and split.mesh.name == "mesh_gt.ply" and split.bound == 1.0
    assert float(split.images.min()) >= 0 and float(split.images.max()) == 1.0  # white background present
    assert 0.0 < float((split.images < 1).any(-1).float().mean()) < 1.0  # and the object


def _copy(scene: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "s"
    shutil.copytree(scene, dst)
    return dst


def test_loader_errors(scene, tmp_path):
    bad = _copy(scene, tmp_path)
    with pytest.raises(InputError, match="transforms_nope.json: file not found"):
        load_split(bad, "nope")
    (bad / "transforms_val.json").write_text("{not json")
    with pytest.raises(InputError, match="transforms_val.json: malformed JSON"):
        load_split(bad, "val")
    (bad / "transforms_val.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": []}))
    with pytest.raises(InputError, match="'frames' must be a non-empty list"):
        load_split(bad, "val")
    meta = json.loads((bad / "transforms_test.json").read_text())
    meta["frames"][0]["transform_matrix"] = [[1, 0], [0, 1]]
    (bad / "transforms_test.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="finite 4x4 matrix"):
        load_split(bad, "test")
    from geocert.io import write_image

    write_image(bad / "train" / "r_1.png", np.ones((20, 16, 4)))
    with pytest.raises(InputError, match=r"r_1.png: image size 16x20 differs"):
        load_split(bad, "train")


# ---------------------------------------------------------------------------------------------- encoders


def test_hashgrid_matches_reference_forward_and_gradient():
    torch.manual_seed(0)
    grid = HashGrid(n_levels=5, n_features=2, log2_table=10, base_res=3, max_res=40, bound=1.5)
    assert any(grid.is_dense) and not all(grid.is_dense)  # both code paths
    with torch.no_grad():
        grid.table.normal_()
    x = torch.rand(15, 3) * 3 - 1.5
    x[0] = torch.tensor([1.5, -1.5, 1.5])  # corners of the box
    x[1] = torch.tensor([2.0, 0.0, -3.0])  # outside: clamped
    fast, ref = grid(x), encode_reference(grid, x)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    g_fast = torch.autograd.grad((fast.sin() * torch.arange(fast.shape[1])).sum(), grid.table)[0]
    g_ref = torch.autograd.grad((ref.sin() * torch.arange(ref.shape[1])).sum(), grid.table)[0]
    torch.testing.assert_close(g_fast, g_ref, atol=1e-5, rtol=1e-5)


def test_sample_grid_matches_reference_and_is_differentiable():
    torch.manual_seed(1)
    grid = torch.randn(5, 6, 7, dtype=torch.float64, requires_grad=True)
    pts = (torch.rand(30, 3, dtype=torch.float64) * 2.4 - 1.2)
    torch.testing.assert_close(sample_grid(grid, pts, 1.0), sample_grid_reference(grid.detach(), pts, 1.0))
    assert torch.autograd.gradcheck(lambda g: sample_grid(g, pts[:5], 1.0), (grid,))


def test_rs_sdf_density_mapping():
    sdf = torch.linspace(-0.2, 0.2, 41)
    g = density_from_sdf(sdf, 0.02)
    assert torch.all(g[1:] > g[:-1])  # monotone in the SDF
    assert math.isclose(float(density_from_sdf(torch.tensor(0.0), 0.02)), 30 * math.log(2), rel_tol=1e-4)
    assert float(g[0]) < 2e-3 and float(g[-1]) > 200  # empty outside, opaque inside
    field = RadianceField(bound=1.0, grid_res=8, sigma=1.0, hash_levels=2, hash_log2=8, hash_max_res=8, hidden=8)
    with torch.no_grad():
        field.logits.fill_(-8.0)
        field.logits[2:6, 2:6, 2:6] = 8.0  # a cube of side 0.5 around the centre (voxel 0.25)
    sdf_grid = field.sdf_grid()
    assert float(sdf_grid[4, 4, 4]) > 0 > float(sdf_grid[0, 0, 0])
    # the blurred cube's ½ level lies on its faces: the SDF changes sign between voxel centres 1 and 2
    assert float(sdf_grid[1, 4, 4]) < 0 < float(sdf_grid[2, 4, 4])


def test_ground_truth_mesh_winds_outward():
    import trimesh
    from geocert_rs_sdf.scenes import ground_truth_mesh

    verts, faces = ground_truth_mesh(48)
    assert trimesh.Trimesh(verts, faces, process=False).volume > 0


def test_extracted_mesh_winds_outward_around_the_occupied_cube():
    import trimesh
    from geocert_rs_sdf.export import extract_mesh

    field = RadianceField(bound=1.0, grid_res=8, sigma=1.0, hash_levels=2, hash_log2=8, hash_max_res=8, hidden=8)
    with torch.no_grad():
        field.logits.fill_(-8.0)
        field.logits[2:6, 2:6, 2:6] = 8.0  # a cube of side 0.5 around the centre (voxel 0.25)
    verts, faces = extract_mesh(field, 33)
    m = trimesh.Trimesh(verts, faces, process=False)
    assert m.volume > 0  # outward winding gives a positive signed volume
    assert np.abs(verts).max() < 0.5  # the zero level stays near the cube (faces at ±0.25 + blur)


# ---------------------------------------------------------------------------------------------- rendering


def test_composite_matches_reference():
    torch.manual_seed(2)
    density = torch.rand(4, 9, dtype=torch.float64) * 5
    torch.testing.assert_close(composite(density, 0.1), composite_reference(density, 0.1))
    w = composite(torch.full((1, 200), 50.0, dtype=torch.float64), 0.1)
    assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-9)


def test_ray_box():
    o = torch.tensor([[0.0, 0.0, 4.0], [0.0, 0.0, 4.0], [3.0, 3.0, 0.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    t0, t1 = ray_box(o, d, 1.0)
    assert torch.allclose(t0[0], torch.tensor(3.0)) and torch.allclose(t1[0], torch.tensor(5.0))
    assert t1[1] <= t0[1] and t1[2] <= t0[2]  # misses
    diag = torch.tensor([[-2.0, -2.0, -2.0]])
    t0, t1 = ray_box(diag, torch.ones(1, 3) / math.sqrt(3), 1.0)
    assert torch.allclose(t1 - t0, torch.tensor([2 * math.sqrt(3)]))


def test_render_rays_matches_dense_reference_when_all_samples_are_coloured():
    torch.manual_seed(3)
    field = build_field(TINY_FIELD, 1.0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        field.logits.normal_(0, 3)
        field.encoding.table.normal_()
    o = torch.tensor([[0.0, 0.0, 4.0]]).repeat(6, 1)
    d = torch.nn.functional.normalize(torch.randn(6, 3) * 0.1 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    state = field.geometry_state()
    fast = render_rays(field, state, o, d, near=2.0, far=6.0, n_samples=24, color_samples=24, min_weight=0.0)
    ref = render_rays_dense(field, state, o, d, near=2.0, far=6.0, n_samples=24)
    for k in ("rgb", "depth", "opacity"):
        torch.testing.assert_close(fast[k], ref[k], atol=1e-5, rtol=1e-5)
    skip = field.skip_grid(state, threshold=0.0)  # skipping only density-0 voxels changes nothing
    skipped = render_rays(field, state, o, d, near=2.0, far=6.0, n_samples=24, color_samples=24, min_weight=0.0,
                          skip_grid=skip)
    torch.testing.assert_close(skipped["rgb"], ref["rgb"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("density", ["rs-sdf", "plain"])
def test_fit_decreases_loss(scene, density):
    train = load_split(scene, "train")
    fs = FieldSettings(**{**TINY_FIELD.__dict__, "density": density})
    field = build_field(fs, 1.0, torch.Generator().manual_seed(0), init_sharpness=fs.sharpness)
    logs = []
    fit(field, fs, FitSettings(steps=40, rays=256, lr=2e-2, grid_lr=0.1, foreground_fraction=0.0, sharpness_start=1.0,
                               carve=False), train, progress=False,
        log=lambda step, stats: logs.append(stats["loss"]))
    gen = torch.Generator().manual_seed(5)
    idx = torch.randint(0, 4 * 16 * 16, (512,), generator=gen)
    from geocert_rs_sdf.data import pixel_rays

    o, d = (t.reshape(-1, 3)[idx] for t in pixel_rays(train.c2w, 16, 16, train.focal))
    target = train.images.reshape(-1, 3)[idx]
    fresh = build_field(fs, 1.0, torch.Generator().manual_seed(0), init_sharpness=fs.sharpness)
    with torch.no_grad():
        trained = render_rays(field, field.geometry_state(), o, d, near=2.0, far=6.0, n_samples=24)["rgb"]
        initial = render_rays(fresh, fresh.geometry_state(), o, d, near=2.0, far=6.0, n_samples=24)["rgb"]
    assert float(((trained - target) ** 2).mean()) < 0.7 * float(((initial - target) ** 2).mean())


def test_checkpoint_round_trip(tmp_path):
    field = build_field(TINY_FIELD, 1.0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        field.logits.normal_()
    path = save_checkpoint(tmp_path / "c.pt", field, TINY_FIELD, FitSettings(steps=7), 7, extra={"scene": "x"})
    loaded, fs, st, data = load_checkpoint(path)
    assert fs == TINY_FIELD and st.steps == 7 and data["step"] == 7 and data["extra"]["scene"] == "x"
    pts = torch.rand(10, 3) * 2 - 1
    torch.testing.assert_close(loaded.density(pts, loaded.geometry_state()), field.density(pts, field.geometry_state()))
    torch.testing.assert_close(loaded.color(pts, pts), field.color(pts, pts))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    assert not list(tmp_path.glob("*.tmp"))


def test_chamfer_and_surface_sampling():
    rng = np.random.default_rng(0)
    a = rng.random((500, 3))
    assert chamfer(a, a)["l1"] == 0.0
    cd = chamfer(a, a + np.array([0.0, 0.0, 0.01]))
    assert 0.0 < cd["l1"] <= 0.01 + 1e-12 and cd["l2"] <= 1e-4 + 1e-12
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=float)
    pts = sample_surface(verts, np.array([[0, 1, 2]]), 200, rng)
    assert np.all(pts[:, 2] == 0) and np.all(pts[:, :2].sum(1) <= 1 + 1e-9) and np.all(pts >= -1e-12)


# ---------------------------------------------------------------------------------------------- commands


def test_train_then_render_commands(scene, tmp_path, capsys):
    model = tmp_path / "model"
    assert cli(["train-nerf", str(scene), "--output", str(model), "--steps", "8", "--checkpoint-every", "4",
                *TINY_ARGS]) == 0
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["steps"] == 8 and math.isfinite(metrics["test_psnr"]) and metrics["test_views"] == 2
    # resuming a finished run trains no further steps; more steps continue from the checkpoint
    assert cli(["train-nerf", str(scene), "--output", str(model), "--steps", "10", *TINY_ARGS]) == 0
    assert json.loads((model / "metrics.json").read_text())["steps_this_run"] == 2
    out = tmp_path / "render"
    assert cli(["render", "--checkpoint", str(model / "checkpoint.pt"), "--output", str(out), "--orbit-frames",
                "3", "--mesh-res", "16", "--chamfer-points", "300", "--threads", "1"]) == 0
    assert "test-view PSNR" in capsys.readouterr().out
    rm = json.loads((out / "metrics.json").read_text())
    assert rm["test_views"] == 2 and math.isfinite(rm["test_psnr"]) and 0 <= rm["test_ssim"] <= 1
    assert sorted(p.name for p in (out / "orbit").iterdir()) == ["frame_000.png", "frame_001.png", "frame_002.png"]
    assert (out / "orbit.gif").stat().st_size > 0 and (out / "sdf_slice.png").is_file()
    assert (out / "depth.png").is_file() and len(list((out / "test").glob("*.png"))) == 2
    if rm["mesh"] is not None:
        assert (out / "mesh.ply").is_file() and rm["chamfer"]["points_per_mesh"] == 300
    assert json.loads((out / "config.json").read_text())["config"]["orbit_frames"] == 3
    assert rm["sdf_slice"]["colours"].startswith("red: inside (SDF > 0), blue: outside")  # as geocert sdf's
    assert not list(out.rglob("*.tmp"))


def test_render_that_trains_renders_the_test_views_once(scene, tmp_path, monkeypatch):
    """`geocert render` without --checkpoint reuses the test views its training just rendered (the same
    checkpoint, the same views): evaluate_views runs once, and the numbers are those of rendering the
    checkpoint afterwards; other --test-views than the training's are rendered anew."""
    import geocert_rs_sdf.metrics as metrics_mod

    calls = []
    real = metrics_mod.evaluate_views
    monkeypatch.setattr(metrics_mod, "evaluate_views", lambda *a, **k: calls.append(1) or real(*a, **k))
    small = ["--orbit-frames", "1", "--mesh-res", "16", "--chamfer-points", "100", "--threads", "1"]
    train_args = [a.replace("--", "--train.", 1) for a in TINY_ARGS]
    out = tmp_path / "r"
    assert cli(["render", str(scene), "--output", str(out), "--train.steps", "6", *train_args,
                *small]) == 0
    assert len(calls) == 1
    rm = json.loads((out / "metrics.json").read_text())
    again = tmp_path / "again"
    assert cli(["render", "--checkpoint", str(out / "model" / "checkpoint.pt"), "--output", str(again), *small]) == 0
    assert len(calls) == 2
    ra = json.loads((again / "metrics.json").read_text())
    assert rm["test_views"] == ra["test_views"] == 2
    assert rm["test_psnr"] == pytest.approx(ra["test_psnr"], abs=1e-6)
    assert rm["test_psnr"] == pytest.approx(json.loads((out / "model" / "metrics.json").read_text())["test_psnr"])
    one = tmp_path / "one"
    assert cli(["render", str(scene), "--output", str(one), "--train.steps", "6", *train_args,
                *small, "--test-views", "1"]) == 0
    assert len(calls) == 4 and json.loads((one / "metrics.json").read_text())["test_views"] == 1


def test_command_errors_write_nothing(scene, tmp_path, capsys):
    out = tmp_path / "o"
    assert cli(["train-nerf", str(scene), "--output", str(out), "--sigma", "0", *TINY_ARGS]) == 2
    assert "sigma must be > 0" in capsys.readouterr().err
    assert cli(["train-nerf", str(tmp_path / "missing"), "--output", str(out), *TINY_ARGS]) == 2
    assert "missing: scene folder not found" in capsys.readouterr().err
    bad = _copy(scene, tmp_path)
    (bad / "transforms_train.json").unlink()
    assert cli(["train-nerf", str(bad), "--output", str(out), *TINY_ARGS]) == 2
    assert "transforms_train.json: file not found" in capsys.readouterr().err
    assert cli(["render", "--checkpoint", str(tmp_path / "none.pt"), "--output", str(out)]) == 2
    assert "none.pt: checkpoint not found" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- issue 12


def _train(scene, out, *extra):
    return cli(["train-nerf", str(scene), "--output", str(out), "--steps", "8", "--checkpoint-every", "4",
                *TINY_ARGS, *extra])


def test_output_at_an_existing_file_is_one_line(scene, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert _train(scene, taken) == 2
    assert capsys.readouterr().err.strip() == f"geocert train-nerf: error: --output {taken}: exists and is not a folder"
    assert cli(["render", "--checkpoint", str(taken), "--output", str(taken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("geocert render: error: ") and "exists and is not a folder" in err
    assert taken.read_text() == "x"


def test_output_in_an_unwritable_place_is_refused_before_training(scene, tmp_path, capsys):
    import os
    import tempfile

    place = Path("/sys") if os.geteuid() == 0 else tmp_path / "ro"
    if place != Path("/sys"):
        place.mkdir()
        place.chmod(0o500)
    try:
        fd, probe = tempfile.mkstemp(dir=place)
        os.close(fd)
        os.unlink(probe)
        pytest.skip(f"{place} is writable here")
    except OSError:
        pass
    for argv in (["train-nerf", str(scene), *TINY_ARGS], ["render", *(a.replace("--", "--train.", 1)
                                                                       for a in TINY_ARGS)]):
        assert cli([*argv, "--output", str(place / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--output {place / 'out'}: cannot write" in err[0], err


@pytest.mark.parametrize("args,option", [(("--grid-res", "100000"), "--grid-res 100000"),
                                         (("--rays", "1000000000"), "--rays 1000000000")])
def test_sizes_that_cannot_fit_are_refused_up_front(scene, tmp_path, capsys, args, option):
    out = tmp_path / "out"
    assert _train(scene, out, *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"geocert train-nerf: error: {option}: needs about ") and "of memory" in err, err
    assert not out.exists()


def test_rerunning_a_finished_run_keeps_its_metrics(scene, tmp_path, capsys):
    out = tmp_path / "model"
    assert _train(scene, out) == 0
    before = (out / "metrics.json").read_bytes()
    assert json.loads(before)["steps_this_run"] == 8
    assert _train(scene, out) == 0
    assert (out / "metrics.json").read_bytes() == before
    assert "nothing to do" in capsys.readouterr().err


class _Interrupt:
    """Raises KeyboardInterrupt at the n-th render call of training (patched into geocert_rs_sdf.train)."""

    def __init__(self, n: int):
        import geocert_rs_sdf.train as train_module

        self.n, self.calls, self.real = n, 0, train_module.render_rays

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


def test_interrupted_before_the_first_checkpoint_leaves_nothing_and_the_log_has_no_duplicates(
        scene, tmp_path, capsys, monkeypatch):
    import geocert_rs_sdf.train as train_module

    out = tmp_path / "model"
    monkeypatch.setattr(train_module, "render_rays", _Interrupt(3))  # steps 0, 1 done; interrupted in step 2
    assert _train(scene, out) == 130
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())
    monkeypatch.setattr(train_module, "render_rays", _Interrupt(7))  # after the checkpoint at step 4
    assert _train(scene, out) == 130
    assert "rerun to resume" in capsys.readouterr().err
    monkeypatch.undo()
    assert _train(scene, out) == 0
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) == [0, 7]
    m = json.loads((out / "metrics.json").read_text())  # the time of the run that reached step 4 is kept
    assert m["steps_this_run"] == 4 and m["train_seconds"] > m["train_seconds_this_run"] > 0
    fresh = tmp_path / "fresh"
    assert _train(scene, fresh) == 0  # the interrupted run ends where an uninterrupted one does
    assert json.loads((out / "metrics.json").read_text())["test_psnr"] == \
        json.loads((fresh / "metrics.json").read_text())["test_psnr"]


def test_device_option(scene, tmp_path, capsys):
    assert _train(scene, tmp_path / "a", "--device", "tpu") == 2
    assert "--device must be cpu, cuda, cuda:N or auto" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert _train(scene, tmp_path / "b", "--device", "cuda") == 2
        assert "CUDA is not available" in capsys.readouterr().err
        assert not (tmp_path / "b").exists()
        # auto falls back to the CPU: the same numbers as --device cpu (the default)
        assert _train(scene, tmp_path / "auto", "--device", "auto") == 0
        assert _train(scene, tmp_path / "cpu") == 0
        auto, cpu = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("auto", "cpu"))
        assert auto["device"] == cpu["device"] == "cpu" and auto["test_psnr"] == cpu["test_psnr"]


def test_a_bad_scene_for_the_default_model_is_one_line(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert cli(["render", str(missing), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"geocert render: error: {missing}: scene folder not found"]
    a_file = tmp_path / "scene.txt"
    a_file.write_text("x")
    assert cli(["train-nerf", str(a_file), "--output", str(tmp_path / "out"), *TINY_ARGS]) == 2
    assert f"{a_file}: is a file; expected a scene folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
