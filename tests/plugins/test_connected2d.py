import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from geocert_connected2d.checks import connectivity_checks, model_checks
from geocert_connected2d.data import load_scribbles
from geocert_connected2d.model import FICNN, BSplineConditioner, ConnectedSegmenter, SquareFlow
from geocert_connected2d.scenes import make_task
from geocert_connected2d.spline import (
    rq_spline_forward,
    rq_spline_forward_reference,
    rq_spline_inverse,
    spline_params,
)

from geocert.cli import main as cli_main
from geocert.errors import InputError


@pytest.mark.parametrize("bounds", [(1e-3, 1e-3), (0.02, 0.02)])
def test_spline_matches_reference_and_inverts(bounds):
    g = torch.Generator().manual_seed(0)
    K = 6
    raw = torch.randn(200, 3 * K - 1, generator=g, dtype=torch.float64) * 2
    x = torch.rand(200, generator=g, dtype=torch.float64)
    y = rq_spline_forward(x, raw, K, *bounds)
    xk, yk, dk = spline_params(raw, K, *bounds)
    assert (xk[:, 1:] - xk[:, :-1]).min() >= bounds[0] * (1 - 1e-9) and dk.min() >= bounds[1]
    for i in range(0, 200, 20):
        ref = rq_spline_forward_reference(float(x[i]), (xk[i, 1:] - xk[i, :-1]).tolist(),
                                          (yk[i, 1:] - yk[i, :-1]).tolist(), dk[i].tolist())
        assert abs(ref - float(y[i])) < 1e-12
    assert (rq_spline_inverse(y, raw, K, *bounds) - x).abs().max() < 1e-10
    outside = torch.tensor([-0.5, 1.5], dtype=torch.float64)
    assert torch.equal(rq_spline_forward(outside, raw[:2], K, *bounds), outside)


def test_bspline_conditioner_is_continuous_and_starts_at_zero():
    c = BSplineConditioner(5, knots=10).to(torch.float64)
    t = torch.linspace(0, 1, 50, dtype=torch.float64)
    assert c(t).abs().max() == 0  # zero table: the coupling layer starts as the identity
    with torch.no_grad():
        c.table.normal_()
    knots = torch.arange(1, 7, dtype=torch.float64) / 7  # the interior knots (n - 3 = 7 cells)
    eps = 1e-7
    jump = (c(knots + eps) - c(knots - eps)).abs().max()
    assert jump < 1e-4  # continuous across knots (C² in fact)
    # constant values in → constant table row combination (partition of unity)
    with torch.no_grad():
        c.table.fill_(2.5)
    assert (c(t) - 2.5).abs().max() < 1e-12


@pytest.mark.parametrize("conditioner,size", [("bspline", 12), ("mlp", 16)])
def test_flow_maps_square_onto_itself_and_round_trips(conditioner, size):
    torch.manual_seed(0)
    flow = SquareFlow(4, 8, size, conditioner, 0.02, 0.02).to(torch.float64)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        xy = torch.rand(4000, 2, dtype=torch.float64)
        z = flow(xy)
        assert z.min() >= 0.0 and z.max() <= 1.0
        assert (flow.inverse(z) - xy).abs().max() < 1e-9
        s = torch.rand(500, dtype=torch.float64)
        edge = torch.cat([torch.stack([s, torch.zeros_like(s)], 1), torch.stack([torch.ones_like(s), s], 1)])
        ez = flow(edge)
        assert torch.equal(ez[:500, 1], torch.zeros(500, dtype=torch.float64))  # bottom edge stays put
        assert torch.equal(ez[500:, 0], torch.ones(500, dtype=torch.float64))  # right edge stays put


@pytest.mark.parametrize("quadratic", [0.0, 1.0])
def test_ficnn_is_convex(quadratic):
    torch.manual_seed(1)
    f = FICNN(2, 32, 3, quadratic=quadratic).to(torch.float64)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(torch.randn_like(p))
    f.project()
    assert min(float(lin.weight.detach().min()) for lin in f.z_layers) >= 0.0
    a, b = torch.randn(5000, 2, dtype=torch.float64) * 3, torch.randn(5000, 2, dtype=torch.float64) * 3
    with torch.no_grad():
        viol = f((a + b) / 2) - (f(a) + f(b)) / 2
    assert viol.max() <= 1e-6
    # without the projection the same weights are not convex (the check can fail)
    with torch.no_grad():
        for lin in f.z_layers:
            lin.weight.sub_(3.0)
        viol = f((a + b) / 2) - (f(a) + f(b)) / 2
    assert viol.max() > 1e-3


def _band_model(eps: float) -> ConnectedSegmenter:
    """Identity flow, FICNN h(u) = |w·u| - eps: a thin convex band, foreground where |w·u| ≤ eps."""
    f = FICNN(2, 2, 1).to(torch.float64)
    w = torch.tensor([1.0, -0.61803398875], dtype=torch.float64)
    with torch.no_grad():
        f.input_layers[0].weight.copy_(torch.stack([w, -w]))
        f.input_layers[0].bias.zero_()
        f.z_layers[0].weight.fill_(1.0)
        f.input_layers[1].weight.zero_()
        f.input_layers[1].bias.fill_(-eps)
    return ConnectedSegmenter(f, None)


def test_thin_convex_band_breaks_into_pixel_components_but_paths_join_them():
    """Pixel discretization of a connected set can give several components; the certified latent paths
    between them stay inside the foreground (score ≤ 0) and inside the image."""
    H, W = 40, 50
    m = _band_model(0.004)
    from geocert_connected2d.data import pixel_positions

    with torch.no_grad():
        mask = (m(torch.from_numpy(pixel_positions(H, W))) >= 0).numpy().reshape(H, W)
    rep, joined = connectivity_checks(m, mask, fine=8)
    assert rep["components_8conn"] > 1  # disconnected on the pixel grid...
    paths = rep["joining_paths"]
    assert paths["extra_components"] == rep["components_8conn"] - 1
    assert paths["all_joined"] and paths["max_score_on_paths"] <= 0.0  # ...but one path-connected set
    assert paths["max_outside_image"] == 0.0
    from scipy import ndimage

    assert ndimage.label(joined, np.ones((3, 3)))[1] == 1 == rep["components_8conn_joined_mask"]
    assert joined[mask].all() and paths["pixels_added"] == int(joined.sum() - mask.sum()) > 0


def test_model_checks_on_a_random_flow_model():
    torch.manual_seed(0)
    m = ConnectedSegmenter(FICNN(2, 16, 2), SquareFlow(4, 6, 10, "bspline", 0.02, 0.02), 10.0).to(torch.float64)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    m.project()
    c = model_checks(m, 30, 40)
    assert c["convexity_max_violation"] <= 1e-6 and c["z_weights_min"] >= 0.0
    assert c["flow_roundtrip_max_err"] < 1e-9 and c["flow_grid_outside_square"] == 0.0
    assert c["flow_boundary_max_dist"] < 1e-12


def test_scribbles_errors(tmp_path):
    import imageio.v3 as iio

    s = np.zeros((8, 8, 3), np.uint8)
    s[1, 1] = (255, 0, 0)
    iio.imwrite(tmp_path / "s.png", s)
    with pytest.raises(InputError, match="no background"):
        load_scribbles(tmp_path / "s.png", (8, 8))
    with pytest.raises(InputError, match="but the image"):
        load_scribbles(tmp_path / "s.png", (9, 8))
    s[1, 1] = (0, 0, 255)
    iio.imwrite(tmp_path / "s.png", s)
    with pytest.raises(InputError, match="no foreground"):
        load_scribbles(tmp_path / "s.png", (8, 8))
    s[2, 2] = (255, 0, 0)
    iio.imwrite(tmp_path / "s.png", s)
    lab = load_scribbles(tmp_path / "s.png", (8, 8))
    assert lab[2, 2] == 1 and lab[1, 1] == 0 and (lab == -1).sum() == 62


def test_task_generator_is_deterministic(tmp_path):
    import imageio.v3 as iio

    a, b = make_task("cross", tmp_path / "a", seed=3), make_task("cross", tmp_path / "b", seed=3)
    for name in ("image.png", "scribbles.png", "mask.png"):
        assert np.array_equal(iio.imread(a / name), iio.imread(b / name))
    info = json.loads((a / "task.json").read_text())
    assert info["foreground_scribble_pixels"] > 0 and info["background_scribble_pixels"] > 0
    mask = iio.imread(a / "mask.png") > 127
    from scipy import ndimage

    assert ndimage.label(mask)[1] == 1  # the ground truth itself is connected


# ---------------------------------------------------------------------------------------------- command


def _run(*argv) -> int:
    return cli_main([str(a) for a in argv])


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_task("ellipse", tmp_path_factory.mktemp("c2d") / "ellipse", seed=0)


def test_segment2d_command_outputs(task, tmp_path):
    out = tmp_path / "o"
    assert _run("segment2d", task / "image.png", "--scribbles", task / "scribbles.png", "--gt", task / "mask.png",
                "--epochs", "20", "--random-points", "1500", "--output", out, "--no-progress") == 0
    m = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= m["iou_foreground"] <= 1.0 and m["iou_class"].startswith("foreground")
    assert m["convexity_max_violation"] <= 1e-6 and m["flow_roundtrip_max_err"] < 1e-9
    assert m["flow_grid_outside_square"] == 0.0
    if m["components_8conn"] > 1:
        assert m["joining_paths"]["all_joined"]
    import imageio.v3 as iio

    mask = iio.imread(out / "mask.png")
    assert mask.shape == (96, 120) and set(np.unique(mask)) <= {0, 255}
    assert abs((mask > 0).mean() - m["foreground_fraction"]) < 1e-12
    assert iio.imread(out / "overlay.png").shape == (96, 120, 3)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["train"]["epochs"] == 20 and cfg["plugin"] == "connected2d"  # nested settings
    assert not list(out.glob("*.tmp"))


def test_segment2d_reproducible_and_ficnn_variant(task, tmp_path):
    args = ("segment2d", task / "image.png", "--scribbles", task / "scribbles.png", "--gt", task / "mask.png",
            "--epochs", "8", "--random-points", "600", "--model", "ficnn", "--no-teacher", "--no-progress")
    assert _run(*args, "--output", tmp_path / "a") == 0
    assert _run(*args, "--output", tmp_path / "b") == 0
    import imageio.v3 as iio

    assert np.array_equal(iio.imread(tmp_path / "a" / "mask.png"), iio.imread(tmp_path / "b" / "mask.png"))
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert "flow_roundtrip_max_err" not in m and "teacher_iou_foreground" not in m
    assert m["components_8conn"] <= 1  # FICNN alone: the foreground is convex


def test_segment2d_bad_inputs_write_nothing(task, tmp_path, capsys):
    import imageio.v3 as iio

    (tmp_path / "garbage.png").write_bytes(b"not a png at all")
    iio.imwrite(tmp_path / "small.png", np.zeros((20, 20, 3), np.uint8))
    only_fg = np.zeros((96, 120, 3), np.uint8)
    only_fg[40:50, 50:60] = (255, 0, 0)
    iio.imwrite(tmp_path / "only_fg.png", only_fg)
    only_bg = np.zeros((96, 120, 3), np.uint8)
    only_bg[:3] = (0, 0, 255)
    iio.imwrite(tmp_path / "only_bg.png", only_bg)
    img, scr = task / "image.png", task / "scribbles.png"
    out = tmp_path / "never"
    cases = [
        ([tmp_path / "garbage.png", "--scribbles", scr], "garbage.png: cannot read image"),
        ([tmp_path / "missing.png", "--scribbles", scr], "missing.png: file not found"),
        ([img, "--scribbles", tmp_path / "garbage.png"], "garbage.png: cannot read image"),
        ([img, "--scribbles", tmp_path / "small.png"], "small.png: scribbles are 20x20"),
        ([img, "--scribbles", tmp_path / "only_fg.png"], "only_fg.png: no background scribbles"),
        ([img, "--scribbles", tmp_path / "only_bg.png"], "only_bg.png: no foreground scribbles"),
        ([img, "--scribbles", scr, "--gt", tmp_path / "small.png"], "small.png: mask is 20x20"),
        ([img], "--scribbles is required"),
        ([img, "--scribbles", scr, "--epochs", "0"], "epochs must be a positive integer"),
        ([img, "--scribbles", scr, "--lr", "-1"], "lr must be a positive number"),
    ]
    for argv, msg in cases:
        capsys.readouterr()
        assert _run("segment2d", *argv, "--output", out, "--no-progress") == 2, msg
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("geocert segment2d: error:")]
        assert len(err) == 1 and msg in err[0], (msg, err)
        assert not out.exists()


def test_plugin_module_is_light():
    code = "import sys, geocert_connected2d; print('torch' in sys.modules, 'numpy' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------- sparse scribbles and teachers


@pytest.mark.parametrize("name", ["horse-gravel", "coin-b", "crescent"])
def test_sparse_scribbles_are_few_strokes_inside_and_outside(name):
    from geocert_connected2d.scenes import TASKS, draw_sparse_scribbles, task_image_mask
    from scipy import ndimage

    img, mask = task_image_mask(name)
    assert img.shape == mask.shape + (3,) and 0.0 <= img.min() and img.max() <= 1.0
    for seed in range(4):
        scr = draw_sparse_scribbles(mask, np.random.default_rng([seed, TASKS.index(name)]))
        fg, bg = scr == 1, scr == 0
        assert fg.any() and bg.any()
        assert mask[fg].all() and not mask[bg].any()  # strokes on the right side of the true boundary
        assert ndimage.distance_transform_edt(~mask)[bg].min() > 5.0  # background strokes keep a margin
        assert (scr >= 0).mean() < 0.12  # sparse: few pixels labelled ...
        assert fg.sum() < 0.2 * mask.sum()  # ... strokes cover a small part of the object
        n_fg = ndimage.label(ndimage.binary_dilation(fg, iterations=2))[1]  # strokes (gaps closed)
        n_bg = ndimage.label(ndimage.binary_dilation(bg, iterations=2))[1]
        assert 1 <= n_fg <= 6 and 1 <= n_bg <= 10
    again = draw_sparse_scribbles(mask, np.random.default_rng([3, TASKS.index(name)]))
    assert np.array_equal(scr, again)


def test_coin_task_masks_are_single_discs():
    from geocert_connected2d.scenes import task_image_mask
    from scipy import ndimage

    for name in ("coin-a", "coin-b", "coin-c"):
        img, mask = task_image_mask(name)
        assert mask.shape == (88, 88) and ndimage.label(mask)[1] == 1 and 0.1 < mask.mean() < 0.5
        grey = img[..., 0]
        assert grey[mask].mean() > grey[~mask].mean() + 0.2  # the coin is brighter than the table
        assert mask[44, 44]  # centred


def _two_colour_image(H=24, W=28):
    yy, xx = np.mgrid[0:H, 0:W]
    gt = ((yy - 12) / 8.0) ** 2 + ((xx - 14) / 10.0) ** 2 < 1.0
    rng = np.random.default_rng(0)
    img = np.where(gt[..., None], [0.8, 0.5, 0.2], [0.2, 0.4, 0.7]) + 0.03 * rng.standard_normal((H, W, 3))
    scr = np.full((H, W), -1, np.int8)
    scr[12, 9:20] = 1
    scr[1, :] = scr[-2, :] = 0
    return img.clip(0, 1), scr, gt


@pytest.mark.parametrize("name", ["grabcut", "random-walker", "grabcut+rw"])
def test_fixed_teachers_on_a_tiny_image(name):
    from geocert_connected2d.teachers import teacher_probs

    img, scr, gt = _two_colour_image()
    p = teacher_probs(name, img, scr)
    assert p.shape == gt.shape and p.dtype == np.float64 and 0.0 <= p.min() and p.max() <= 1.0
    assert (p[scr == 1] >= 0.5).all() and (p[scr == 0] < 0.5).all()  # the strokes are respected
    pred = p >= 0.5
    assert (pred & gt).sum() / (pred | gt).sum() > 0.9
    assert np.array_equal(p, teacher_probs(name, img, scr))  # deterministic
    with pytest.raises(ValueError, match="foreground and one background"):
        teacher_probs(name, img, np.where(scr == 0, -1, scr).astype(np.int8))
    with pytest.raises(ValueError, match="unknown teacher"):
        teacher_probs("crf", img, scr)


def test_training_on_a_fixed_teacher_keeps_the_guarantee():
    """A fixed teacher with two blobs (one of them an island away from the strokes): the fitted
    FICNN ∘ flow foreground is still one path-connected set, checked by the certified paths."""
    from geocert_connected2d.data import pixel_positions
    from geocert_connected2d.train import TrainSettings, predict_logits, train_segmenter

    img, scr, gt = _two_colour_image()
    probs = gt.astype(np.float64)
    probs[2:6, 2:6] = 1.0  # a teacher leak in a corner, disconnected from the object
    s = TrainSettings(epochs=15, random_points=600, batch_size=300, flow_layers=2, flow_size=6)
    r = train_segmenter(img, scr, s, teacher_probs=probs)
    H, W = gt.shape
    centres = (predict_logits(r.model, torch.from_numpy(pixel_positions(H, W))) >= 0).numpy().reshape(H, W)
    rep, joined = connectivity_checks(r.model, centres, fine=2)
    assert rep["components_8conn_joined_mask"] <= 1
    if rep["components_8conn"] > 1:
        assert rep["joining_paths"]["all_joined"]
    assert r.teacher is None and r.steps > 0
    with pytest.raises(ValueError, match="teacher_probs must be"):
        train_segmenter(img, scr, s, teacher_probs=probs[:-1])
    with pytest.raises(ValueError, match="use_teacher is false"):
        train_segmenter(img, scr, TrainSettings(use_teacher=False, epochs=1), teacher_probs=probs)


def test_segment2d_fixed_teacher_writes_scribble_overlay(task, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "o"
    assert _run("segment2d", task / "image.png", "--scribbles", task / "scribbles.png", "--gt", task / "mask.png",
                "--teacher-model", "grabcut", "--epochs", "4", "--random-points", "800", "--output", out,
                "--no-progress") == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["teacher_model"] == "grabcut" and m["teacher_iou_foreground"] > 0.9
    assert m["components_8conn_joined_mask"] <= 1
    over = iio.imread(out / "overlay_scribbles.png")
    scr = iio.imread(task / "scribbles.png")
    assert over.shape == scr.shape
    assert np.array_equal(over[scr[..., 0] == 255], scr[scr[..., 0] == 255])  # red strokes drawn as given


def test_segment2d_scribble_style_needs_a_generated_task(task, tmp_path, capsys):
    out = tmp_path / "never"
    assert _run("segment2d", task / "image.png", "--scribbles", task / "scribbles.png", "--scribble-style",
                "sparse", "--output", out, "--no-progress") == 2
    assert "--scribble-style applies to generated tasks only" in capsys.readouterr().err
    assert not out.exists()
