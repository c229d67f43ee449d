"""Tests of the ``pointcloud`` plugin: data, loader errors, model, certification, CLI end to end (tiny configs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from geocert_pointcloud.data import (
    CATEGORIES,
    CATEGORY_PARTS,
    NUM_PARTS,
    ShapeNetPart,
    evenly_spaced,
    load_cloud_file,
    load_shapes,
)
from geocert_pointcloud.evaluate import miou_summary, shape_iou, shape_iou_reference
from geocert_pointcloud.model import (
    PointNetPartSeg,
    fuse_batchnorm,
    part_mask,
    predict_parts,
    rotate_about_up,
)
from geocert_pointcloud.scenes import PROCEDURAL_CATEGORIES, make_dataset, make_shape

from geocert.cli import main as cli
from geocert.errors import InputError

torch.set_num_threads(1)


TINY_CATEGORIES = ("Chair", "Mug", "Table")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("pcds"), shapes_per_category=5, num_points=400, seed=3,
                        categories=TINY_CATEGORIES)


# ---------------------------------------------------------------------------------------------- data


def test_make_dataset_layout_and_determinism(tiny_dataset, tmp_path):
    lines = (tiny_dataset / "synsetoffset2category.txt").read_text().split("\n")
    assert [ln.split("\t")[0] for ln in lines if ln] == list(TINY_CATEGORIES)
    train = json.loads((tiny_dataset / "train_test_split" / "shuffled_train_file_list.json").read_text())
    test = json.loads((tiny_dataset / "train_test_split" / "shuffled_test_file_list.json").read_text())
    assert len(train) == 3 * 4 and len(test) == 3 * 1 and not set(train) & set(test)
    assert all(e.startswith("shape_data/") for e in train)
    first = tiny_dataset / train[0].split("/", 1)[1]
    rows = np.loadtxt(first.with_suffix(".txt"))
    assert rows.shape == (400, 7)
    np.testing.assert_allclose(np.linalg.norm(rows[:, 3:6], axis=1), 1.0, atol=1e-5)  # unit normals
    again = make_dataset(tmp_path / "again", shapes_per_category=5, num_points=400, seed=3,
                         categories=TINY_CATEGORIES)
    first = first.with_suffix(".txt")
    assert (again / first.relative_to(tiny_dataset)).read_bytes() == first.read_bytes()


@pytest.mark.parametrize("category", PROCEDURAL_CATEGORIES)
def test_make_shape_parts(category):
    pts, nrm, lab = make_shape(category, np.random.default_rng(0), 3000)
    assert pts.shape == (3000, 3) and nrm.shape == (3000, 3)
    assert set(np.unique(lab)) <= set(CATEGORY_PARTS[category])
    assert len(np.unique(lab)) >= 2  # every category has at least two parts present
    # the up axis is y: the lowest part of a chair or a table is its legs
    if category in ("Chair", "Table"):
        low = lab[pts[:, 1] < np.quantile(pts[:, 1], 0.05)]
        assert np.all(low == CATEGORY_PARTS[category][{"Chair": 2, "Table": 1}[category]])


def test_loader_normalizes_and_resamples(tiny_dataset):
    ds = ShapeNetPart(tiny_dataset)
    items = ds.items("test")
    shape = ds.load(items[0], num_points=2048)
    assert shape.points.shape == (2048, 3) and shape.points.dtype == np.float32
    assert shape.labels.shape == (2048,)
    assert shape.category == items[0][0]
    assert set(np.unique(shape.labels)) <= set(CATEGORY_PARTS[shape.category])
    # 400 points → 2048: every original point present, centred, in the unit sphere with one point at radius 1
    assert len(np.unique(shape.points, axis=0)) == 400
    assert np.linalg.norm(shape.points, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    same = ds.load(items[0], num_points=2048)
    assert np.array_equal(same.points, shape.points)


def test_evenly_spaced_not_first():
    assert evenly_spaced(4, 20) == [0, 5, 10, 15]
    assert evenly_spaced(0, 3) == [0, 1, 2] and evenly_spaced(10, 3) == [0, 1, 2]
    assert len(evenly_spaced(7, 9)) == 7


def test_load_shapes_split_selection(tiny_dataset):
    shapes = load_shapes(tiny_dataset, split="train", num_shapes=4, num_points=256)
    allitems = sorted(ShapeNetPart(tiny_dataset).items("train"), key=lambda it: (CATEGORIES.index(it[0]), it[1]))
    assert [s.name for s in shapes] == [allitems[i][1] for i in evenly_spaced(4, len(allitems))]
    assert {s.category for s in shapes} == set(TINY_CATEGORIES)  # spread over the categories
    chairs = load_shapes(tiny_dataset, split="train", num_shapes=0, num_points=256, category="Chair")
    assert len(chairs) == 4 and {s.category for s in chairs} == {"Chair"}


def test_single_file_formats_roundtrip(tmp_path):
    from geocert.io import write_ply

    pts, nrm, lab = make_shape("Table", np.random.default_rng(1), 500)
    np.savetxt(tmp_path / "a.txt", np.c_[pts, nrm, lab], fmt="%.6f")
    np.save(tmp_path / "a.npy", np.c_[pts, lab])
    write_ply(tmp_path / "a.ply", pts, labels=lab)
    np.savetxt(tmp_path / "b.txt", pts, fmt="%.6f")
    loaded = [load_cloud_file(tmp_path / f, num_points=500) for f in ("a.txt", "a.npy", "a.ply")]
    for s in loaded:
        assert s.category == "Table"  # inferred from the labels
        np.testing.assert_allclose(s.points, loaded[0].points, atol=1e-5)
        np.testing.assert_array_equal(s.labels, loaded[0].labels)
    plain = load_cloud_file(tmp_path / "b.txt", num_points=300)
    assert plain.labels is None and plain.category is None and plain.points.shape == (300, 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty point cloud"),
        ("0 0 0 0 0 1 47\n0 nan 0 0 0 1 47\n", "non-finite"),
        ("0 0 0 1 47\n1 1 1 1 47\n", "columns"),
        ("0 0 0 0 0 1 47\n1 1 1 0 0 1 57\n", "out of range"),
        ("0 0 0 0 0 1 47\n1 1 1 0 0 1 47.5\n", "integers"),
        ("0 0 x 0 0 1 47\n", "non-numeric"),
        ("0 0 0 0 0 1 47\n1 1 1\n", "different column counts"),
    ],
)
def test_bad_cloud_files(tmp_path, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        load_cloud_file(bad)
    assert str(info.value).startswith(str(bad))


def test_bad_npy_ply_and_dataset_labels(tmp_path, tiny_dataset):
    np.save(tmp_path / "inf.npy", np.array([[0.0, 0.0, np.inf]]))
    with pytest.raises(InputError, match="non-finite"):
        load_cloud_file(tmp_path / "inf.npy")
    (tmp_path / "t.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\n"
                                     b"property float x\nproperty float y\nproperty float z\nend_header\n" + b"\0" * 12)
    with pytest.raises(InputError, match="truncated"):
        load_cloud_file(tmp_path / "t.ply")
    with pytest.raises(InputError, match="file not found"):
        load_cloud_file(tmp_path / "missing.txt")
    # a chair label inside an airplane file of the benchmark is out of range for that category
    ds = ShapeNetPart(tiny_dataset)
    cat, name, path = next(it for it in ds.items("train") if it[0] == "Table")
    rows = np.loadtxt(path)
    rows[0, 6] = CATEGORY_PARTS["Chair"][0]
    wrong = tmp_path / "wrong.txt"
    np.savetxt(wrong, rows, fmt="%.6f")
    with pytest.raises(InputError, match="out of range"):
        ds.load((cat, name, wrong))
    with pytest.raises(InputError, match="synsetoffset2category"):
        ShapeNetPart(tmp_path)


@pytest.mark.parametrize("header", [b"element vertex abc\nproperty float x\n", b"element vertex\n",
                                    b"element vertex 3\nproperty float\n", b"element vertex -2\n"])
def test_malformed_ply_header_is_an_input_error(tmp_path, header):
    """A PLY header with a missing token or a non-numeric / negative vertex count is a one-line InputError
    naming the file and the line (not a ValueError/IndexError traceback)."""
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\n" + header + b"end_header\n0 0 0\n")
    with pytest.raises(InputError, match="malformed PLY header line") as info:
        load_cloud_file(bad)
    assert str(info.value).startswith(str(bad))


def test_binary_index_and_split_files_are_input_errors(tmp_path, tiny_dataset):
    """Binary garbage in synsetoffset2category.txt or a split file: InputError naming the file."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    split = ShapeNetPart(data).split_file("test")
    split.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="malformed JSON") as info:
        ShapeNetPart(data).items("test")
    assert str(info.value).startswith(str(split))
    (data / "synsetoffset2category.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="not a text file"):
        ShapeNetPart(data)


# ---------------------------------------------------------------------------------------------- metrics, model


def test_shape_iou_matches_reference():
    rng = np.random.default_rng(0)
    parts = CATEGORY_PARTS["Chair"]
    for _ in range(5):
        t = rng.choice(parts, 200)
        p = np.where(rng.uniform(size=200) < 0.2, -1, rng.choice(parts, 200))
        assert shape_iou(p, t, parts) == pytest.approx(shape_iou_reference(p.tolist(), t.tolist(), parts))
    assert shape_iou(t, t, parts) == 1.0
    s = miou_summary([1.0, 0.5, 0.0], ["Chair", "Chair", "Table"])
    assert s["instance_miou"] == pytest.approx(0.5) and s["class_miou"] == pytest.approx(0.375)


def test_fused_model_matches_and_predictions_are_restricted():
    torch.manual_seed(0)
    model = PointNetPartSeg(width=8)
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for _ in range(3):
            model(torch.randn(4, 64, 3) * 2 + 0.5, torch.randint(0, 16, (4,)))
    model.eval()
    x, cat = torch.randn(3, 100, 3), torch.tensor([0, 4, -1])
    with torch.no_grad():
        np.testing.assert_allclose(fuse_batchnorm(model)(x, cat).numpy(), model(x, cat).numpy(), atol=1e-5)
    mask = part_mask(cat, allowed_parts=[47, 48, 49])
    pred = predict_parts(model, x, cat, mask)
    assert pred.shape == (3, 100)
    assert set(pred[0].tolist()) <= set(CATEGORY_PARTS["Airplane"])
    assert set(pred[1].tolist()) <= set(CATEGORY_PARTS["Chair"])
    assert set(pred[2].tolist()) <= {47, 48, 49}


def test_rotate_about_up():
    pts = torch.randn(50, 3, dtype=torch.float64)
    ang = torch.tensor([0.0, math.pi / 2, 2 * math.pi, 0.3], dtype=torch.float64)
    rot = rotate_about_up(pts, ang)
    assert rot.shape == (4, 50, 3)
    torch.testing.assert_close(rot[0], pts)
    torch.testing.assert_close(rot[2], pts)
    torch.testing.assert_close(rot[..., 1], pts[:, 1].expand(4, -1))  # y (up) unchanged
    torch.testing.assert_close(rot.norm(dim=-1), pts.norm(dim=-1).expand(4, -1))
    torch.testing.assert_close(rot[1, :, 0], pts[:, 2])  # +90°: x' = z
    twice = rotate_about_up(rotate_about_up(pts, ang[3:])[0], ang[3:])
    torch.testing.assert_close(twice[0], rotate_about_up(pts, 2 * ang[3:])[0])  # angles add up


# ---------------------------------------------------------------------------------------------- certification


class _FixedModel(torch.nn.Module):
    """A fake PointNet that ignores its input: logits favour ``labels[i]`` for point i (or random labels)."""

    num_categories = 16

    def __init__(self, labels: torch.Tensor, random: bool = False):
        super().__init__()
        self.labels, self.random = labels, random

    def forward(self, points, category):
        b, n, _ = points.shape
        if self.random:
            return torch.randn(b, n, NUM_PARTS)
        return torch.nn.functional.one_hot(self.labels.expand(b, -1), NUM_PARTS).float()


def certify_shape(model, shape, cfg, allowed_parts, progress=False) -> dict:
    """One cloud through the core runner's per-item step with a native (PointNet-like) model."""
    from geocert_pointcloud.adapter import PartSegmenter
    from geocert_pointcloud.certify_pc import PointCloudTask, _settings

    from geocert.pipeline.dataset import certify_item

    seg = PartSegmenter(model, native=True, in_channels=3, source="test model")
    task = PointCloudTask(model_spec="test", shapes_spec={shape.name: None}, num_points=len(shape.points),
                          seed=cfg.seed, mode=cfg.mode, normals=False, allowed_unknown=allowed_parts,
                          model_sha256=None, data="test", _shapes={shape.name: shape})
    settings = _settings(cfg)
    res = certify_item(task, seg, shape.name, settings, torch.device("cpu"), progress=progress)
    return {**res.arrays, "n": settings.n, "radius": res.record["radius"]}


def _cfg(**kw):
    from geocert_pointcloud.config import CertifyPcConfig

    base = dict(n0=5, n=100, tau=0.75, alpha=0.01, batch_size=50, seed=0, num_points=64)
    base.update(kw)
    return CertifyPcConfig(**base)


def test_certify_shape_constant_model_certifies_every_point():
    from geocert_pointcloud.data import Shape

    pts, _, lab = make_shape("Chair", np.random.default_rng(0), 64)
    shape = Shape("s", "Chair", pts.astype(np.float32), lab, Path("s.txt"))
    for mode in ("xyz", "rotation"):
        res = certify_shape(_FixedModel(torch.from_numpy(lab)), shape, _cfg(mode=mode), None, progress=False)
        np.testing.assert_array_equal(res["certified"], lab)
        assert (res["top_counts"] == 100).all() and res["n"] == 100
        expected_r = 0.25 * 0.6744897501960817 if mode == "xyz" else 10.0 * 0.6744897501960817
        assert res["radius"] == pytest.approx(expected_r, rel=1e-6)
        assert (res["point_radius"] > res["radius"]).all()  # p̲ > τ everywhere


def test_certify_shape_random_model_abstains_and_restricts_parts():
    from geocert_pointcloud.data import Shape

    pts, _, lab = make_shape("Table", np.random.default_rng(1), 64)
    shape = Shape("t", "Table", pts.astype(np.float32), lab, Path("t.txt"))
    res = certify_shape(_FixedModel(torch.from_numpy(lab), random=True), shape, _cfg(), None, progress=False)
    assert (res["certified"] == -1).all()  # 3 parts at random: p ≈ 1/3 < τ
    assert set(np.unique(res["smoothed"])) <= set(CATEGORY_PARTS["Table"])  # restricted to the category
    assert (res["top_counts"] < 75).all()


def test_base_model_rotation_matches_rotated_cloud():
    from geocert_pointcloud.adapter import PartSegmenter, make_base_model
    from geocert_pointcloud.data import Shape

    torch.manual_seed(0)
    model = PointNetPartSeg(width=8).eval()
    pts, _, lab = make_shape("Lamp", np.random.default_rng(2), 128)
    shape = Shape("l", "Lamp", pts.astype(np.float32), lab, Path("l.txt"))
    seg = PartSegmenter(model, native=True, in_channels=3, source="test model")
    pts_t = torch.from_numpy(shape.points)
    f_rot, x_rot = make_base_model(seg, pts_t, None, shape.category, "rotation")
    f_xyz, x_xyz = make_base_model(seg, pts_t, None, shape.category, "xyz")
    assert x_rot.shape == (1,) and x_xyz.shape == (128, 3)
    angles = torch.tensor([[0.0], [0.7]])
    with torch.no_grad():
        out = f_rot(angles)
        assert torch.equal(out[0], f_xyz(x_xyz[None])[0])
        assert torch.equal(out[1], f_xyz(rotate_about_up(x_xyz, angles[1]))[0])


# ---------------------------------------------------------------------------------------------- CLI end to end


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    rc = cli(["train-pc", str(tiny_dataset), "--output", str(out), "--epochs", "2", "--width", "8",
              "--num-points", "256", "--train-points", "128", "--batch-size", "8"])
    assert rc == 0
    return out


def test_train_pc_outputs(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["num_train_shapes"] == 12 and metrics["num_test_shapes"] == 3
    for tag in ("clean", "noisy"):
        assert 0.0 <= metrics["test"][tag]["accuracy"] <= 1.0
        assert 0.0 <= metrics["test"][tag]["instance_miou"] <= 1.0
    assert len(metrics["loss_per_epoch"]) == 2 and all(math.isfinite(v) for v in metrics["loss_per_epoch"])
    from geocert_pointcloud.model import load_checkpoint

    model, ckpt = load_checkpoint(trained / "model.pt")
    assert ckpt["sigma"] == 0.25 and model.width == 8 and ckpt["categories"] == list(TINY_CATEGORIES)
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["plugin"] == "pointcloud" and cfg["seed"] == 0


def _certify_args(tiny_dataset, trained, out, *extra):
    return ["certify-pc", str(tiny_dataset), "--checkpoint", str(trained / "model.pt"), "--output", str(out),
            "--num-shapes", "2", "--num-points", "128", "--n0", "4", "--n", "60", "--tau", "0.6",
            "--alpha", "0.05", "--batch-size", "30", "--curve-taus", "0.55", "0.6", "0.7", *extra]


def test_certify_pc_end_to_end_and_resume(tiny_dataset, trained, tmp_path):
    out = tmp_path / "cert"
    assert cli(_certify_args(tiny_dataset, trained, out)) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_shapes"] == 2 and m["num_points"] == 256
    assert m["radius"] == pytest.approx(0.25 * 0.2533471031357997, rel=1e-6)
    assert 0.0 <= m["certified_accuracy"] <= 1.0 - m["abstain_rate"] + 1e-12  # abstentions count as wrong
    assert m["timings"]["sampling_s"] > 0 and m["timings"]["statistics_s"] >= 0
    assert {c["correction"] for c in m["curve"]} == {"none", "bonferroni", "holm"}
    holm = {c["tau"]: c for c in m["curve"] if c["correction"] == "holm"}
    bonf = {c["tau"]: c for c in m["curve"] if c["correction"] == "bonferroni"}
    for t in holm:  # Holm certifies at least what Bonferroni does; larger τ certifies no more
        assert holm[t]["certified_fraction"] >= bonf[t]["certified_fraction"]
    assert holm[0.55]["certified_fraction"] >= holm[0.7]["certified_fraction"]
    assert holm[0.6]["certified_accuracy"] == pytest.approx(m["certified_accuracy"])
    fractions = [e["certified_fraction"] for e in m["kfwer"]]  # larger k certifies at least as many points
    assert fractions == sorted(fractions) and m["kfwer"][0]["k"] == 1
    assert m["kfwer"][0]["certified_fraction"] == pytest.approx(holm[0.6]["certified_fraction"])
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["num_points"] == 128 for r in records)
    for name in ("certified_accuracy_vs_radius.png", "bonferroni_vs_holm.png", "kfwer.png", "config.json"):
        assert (out / name).stat().st_size > 0
    # PLY: certified labels stored, abstentions white
    ply = sorted((out / "ply").glob("*.ply"))[0]
    raw = ply.read_bytes()
    body = raw[raw.index(b"end_header\n") + len(b"end_header\n"):]
    vert = np.frombuffer(body, dtype=[("p", "<f4", 3), ("c", "u1", 3), ("label", "<i4")])
    assert len(vert) == 128
    white = np.all(vert["c"] == 255, axis=1)
    np.testing.assert_array_equal(white, vert["label"] == -1)
    z = np.load(out / "shapes" / ply.with_suffix(".npz").name)
    np.testing.assert_array_equal(z["certified"], vert["label"])
    # resume: a second run certifies nothing new and gives the same metrics
    assert cli(_certify_args(tiny_dataset, trained, out)) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["certified_accuracy"] == m["certified_accuracy"]
    # more shapes: the two finished ones are reused, one more is certified
    assert cli([*_certify_args(tiny_dataset, trained, out), "--num-shapes", "3"]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    assert json.loads((out / "metrics.json").read_text())["num_shapes"] == 3
    # a different configuration in the same folder is refused (exit 2) unless --overwrite
    assert cli(_certify_args(tiny_dataset, trained, out, "--seed", "1")) == 2
    assert cli(_certify_args(tiny_dataset, trained, out, "--seed", "1", "--overwrite")) == 0


def test_certify_pc_single_file_rotation(trained, tmp_path):
    pts, _, _ = make_shape("Mug", np.random.default_rng(5), 300)
    cloud = tmp_path / "mug.npy"
    np.save(cloud, pts)  # no labels
    out = tmp_path / "rot"
    rc = cli(["certify-pc", str(cloud), "--checkpoint", str(trained / "model.pt"), "--output", str(out),
              "--category", "Mug", "--mode", "rotation", "--angle-sigma-deg", "5", "--n0", "4", "--n", "40",
              "--tau", "0.55", "--alpha", "0.1", "--num-points", "100", "--batch-size", "40"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["radius_unit"] == "degrees" and m["radius"] == pytest.approx(5 * 0.12566134685507402, rel=1e-6)
    assert "certified_accuracy" not in m and m["num_points"] == 100
    z = np.load(next((out / "shapes").glob("*.npz")))
    assert set(np.unique(z["certified"])) <= set(CATEGORY_PARTS["Mug"]) | {-1}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sigma", "0"], "sigma"),
        (["--tau", "1.0"], "tau"),
        (["--tau", "0.4"], "tau"),
        (["--n0", "60"], "n0"),
        (["--tau", "0.99"], "can never be certified"),
        (["--category", "Spaceship"], "category"),
    ],
)
def test_certify_pc_bad_parameters(tiny_dataset, trained, tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    assert cli(_certify_args(tiny_dataset, trained, out, *extra)) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "warning" not in ln]  # other plugins may warn
    assert len(err) == 1 and err[0].startswith("geocert certify-pc: error:") and message in err[0]
    assert not out.exists()  # nothing written


def test_certify_pc_bad_inputs(tiny_dataset, trained, tmp_path, capsys):
    out = tmp_path / "bad"
    bad = tmp_path / "nan.txt"
    bad.write_text("0 0 0\nnan 1 1\n")
    args = _certify_args(tiny_dataset, trained, out)
    assert cli([args[0], str(bad), *args[2:]]) == 2
    assert str(bad) in capsys.readouterr().err
    assert cli([*args[:3], str(tmp_path / "missing.pt"), *args[4:]]) == 2
    assert "missing.pt: model file not found" in capsys.readouterr().err
    assert cli(["train-pc", str(tmp_path), "--output", str(out)]) == 2
    assert "synsetoffset2category" in capsys.readouterr().err
    assert not out.exists()


def test_certify_shape_is_reproducible_and_seed_dependent():
    from geocert_pointcloud.data import Shape

    class SignModel(torch.nn.Module):  # blade if the noisy x > 0, else handle: the votes depend on the noise
        num_categories = 16

        def forward(self, points, category):
            logits = torch.zeros(*points.shape[:2], NUM_PARTS)
            logits[..., 22], logits[..., 23] = points[..., 0], -points[..., 0]
            return logits

    model = SignModel()
    pts, _, lab = make_shape("Knife", np.random.default_rng(3), 64)
    shape = Shape("k", "Knife", pts.astype(np.float32), lab, Path("k.txt"))
    a = certify_shape(model, shape, _cfg(n=40, n0=4), None, progress=False)
    b = certify_shape(model, shape, _cfg(n=40, n0=4), None, progress=False)
    c = certify_shape(model, shape, _cfg(n=40, n0=4, seed=1), None, progress=False)
    np.testing.assert_array_equal(a["top_counts"], b["top_counts"])
    np.testing.assert_array_equal(a["certified"], b["certified"])
    assert not np.array_equal(a["pvalues"], c["pvalues"])  # another seed draws other noise
    assert set(np.unique(a["top_classes"])) <= set(CATEGORY_PARTS["Knife"])


def test_scene_script_writes_the_benchmark_layout(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scenes" / "make_pointcloud.py"
    r = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "d"), "--shapes-per-category", "2",
                        "--num-points", "100"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ds = ShapeNetPart(tmp_path / "d")
    assert ds.categories == list(PROCEDURAL_CATEGORIES)
    items = ds.items("train") + ds.items("val") + ds.items("test")
    assert len(items) == 2 * len(PROCEDURAL_CATEGORIES) and all(p.is_file() for _, _, p in items)


def test_train_model_reduces_loss_with_rotation_augmentation(tiny_dataset):
    from geocert_pointcloud.train import stack_shapes, train_model

    shapes = load_shapes(tiny_dataset, split="train", num_points=128)
    pts, lab, cat = stack_shapes(shapes)
    torch.manual_seed(0)
    model = PointNetPartSeg(width=8)
    losses = train_model(model, pts, lab, cat, sigma=0.1, epochs=8, batch_size=4, lr=1e-2,
                         generator=torch.Generator().manual_seed(0), rotation_sigma=0.2, train_points=64,
                         progress=False)
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert not model.training  # left in eval mode


def test_normals_model_end_to_end(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "train"
    assert cli(["train-pc", str(tiny_dataset), "--output", str(out), "--epochs", "1", "--width", "8", "--normals",
                "--num-points", "128", "--train-points", "64", "--batch-size", "6"]) == 0
    from geocert_pointcloud.model import load_checkpoint

    model, ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["normals"] and model.in_channels == 6
    cert = tmp_path / "cert"
    args = ["certify-pc", str(tiny_dataset), "--checkpoint", str(out / "model.pt"), "--output", str(cert),
            "--num-shapes", "1", "--num-points", "128", "--n0", "4", "--n", "40", "--tau", "0.6", "--alpha", "0.1"]
    assert cli(args) == 0
    m = json.loads((cert / "metrics.json").read_text())
    assert m["base_model_inputs"] == "xyz + unperturbed normals" and m["num_points"] == 128
    # a cloud without normals cannot be certified by a normals model: one error line, nothing written
    pts, _, lab = make_shape("Mug", np.random.default_rng(0), 200)
    bare = tmp_path / "bare.npy"
    np.save(bare, np.c_[pts, lab])
    assert cli(["certify-pc", str(bare), *args[2:5], str(tmp_path / "none"), *args[6:]]) == 2
    assert "no normals" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_train_pc_bad_file_error_starts_its_own_line(tiny_dataset, tmp_path, capsys):
    """A bad file met while the loading bar is drawn: the bar is cleared first, so the one error line
    `geocert train-pc: error: <file>: ...` starts a line of its own, and nothing is written."""
    import re
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    _, _, path = ShapeNetPart(data).items("train")[5]
    rows = path.read_text().splitlines()
    rows[3] = "nan 0 0 0 0 1 " + rows[3].split()[-1]
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli(["train-pc", str(data), "--output", str(out), "--epochs", "1", "--width", "8",
                "--num-points", "128"]) == 2
    pieces = [p for p in re.split(r"[\r\n]", capsys.readouterr().err) if "error" in p]
    assert len(pieces) == 1 and pieces[0].startswith(f"geocert train-pc: error: {path}: non-finite"), pieces
    assert not out.exists()


# ------------------------------------------------------------------ certification-aware training (issue 11)


def test_noise_loss_terms():
    from geocert_pointcloud.train import noise_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 4)
    labels = torch.randint(0, 4, (2, 5))
    ce = torch.nn.functional.cross_entropy(logits.permute(0, 3, 1, 2), labels[:, None].expand(2, 3, 5))
    torch.testing.assert_close(noise_loss(logits, labels), ce)
    # identical copies: the KL term is zero, only the entropy term adds
    same = logits[:, :1].expand(2, 3, 5, 4)
    p = same[:, 0].softmax(-1)
    ent = -(p * p.log()).sum(-1).mean()
    torch.testing.assert_close(noise_loss(same, labels, consistency=10.0, entropy=0.5),
                               noise_loss(same, labels) + 0.5 * ent)
    assert noise_loss(logits, labels, consistency=1.0) > noise_loss(logits, labels)  # KL > 0 when copies differ
    # masked parts (-1e9) keep the loss and its gradient finite (a NaN gradient from the entropy's
    # 0 · log 0 at the masked parts once made every consistency run end as a constant model)
    masked = logits.masked_fill(torch.tensor([False, False, True, True]), -1e9).requires_grad_(True)
    loss = noise_loss(masked, labels % 2, consistency=10.0, entropy=0.5, count=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(masked.grad).all()


def test_count_loss_gives_up_points_far_below_the_cut():
    from geocert_pointcloud.train import noise_loss

    # point 0: true part has probability ≈ 0.05 (hopeless); point 1: ≈ 0.8 (near the cut 0.82)
    logits = torch.tensor([[[[3.0, 0.0], [0.0, 1.4]]]]).requires_grad_(True)  # [B=1, K=1, N=2, P=2]
    labels = torch.tensor([[1, 1]])
    (noise_loss(logits, labels, count=1.0) - noise_loss(logits, labels)).backward()  # the count term alone
    g = logits.grad[0, 0].abs().sum(-1)
    assert g[1] > 20 * g[0]


def _stripe_model():
    """A Knife model (parts 22, 23) whose logits do not depend on the input: part 22 leads by 1."""
    model = PointNetPartSeg(width=4, spatial_prior=True).eval()
    with torch.no_grad():
        model.head[-1].weight.zero_()
        model.head[-1].bias.zero_()
        model.head[-1].bias[22] = 1.0
    return model


def test_calibration_bias_and_linear_prior():
    from geocert_pointcloud.train import calibrate_part_biases

    gen = torch.Generator().manual_seed(0)
    pts = torch.rand(4, 200, 3, generator=gen) * 2 - 1
    knife = torch.full((4,), CATEGORIES.index("Knife"))
    cat_parts = CATEGORY_PARTS["Knife"]
    # every point is part 23: a constant bias > 1 on part 23 certifies all of them
    model = _stripe_model()
    lab = torch.full((4, 200), cat_parts[1])
    coef = calibrate_part_biases(model, pts, lab, knife, sigma=0.1, draws=16, cut=0.82, generator=gen)
    assert coef["Knife"][1][0] > 1.0 and model.prior.bias[23] > 1.0
    pred = predict_parts(model, pts, knife, part_mask(knife))
    assert (pred == 23).all()
    # part 23 is the half-space x > 0: no constant bias certifies both halves, an affine prior does
    lab = torch.where(pts[..., 0] > 0, cat_parts[1], cat_parts[0])
    for linear, lo in ((False, 0.0), (True, 0.7)):
        model = _stripe_model()
        calibrate_part_biases(model, pts, lab, knife, sigma=0.1, draws=32, cut=0.82, linear=linear,
                              generator=torch.Generator().manual_seed(1), sample_points=200)
        noisy = pts + torch.randn(pts.shape, generator=gen) * 0.1
        acc = float((predict_parts(model, noisy, knife, part_mask(knife)) == lab).float().mean())
        assert (acc > lo) if linear else (acc < 0.6)


def test_spatial_prior_checkpoint_roundtrip_and_fusion(tmp_path):
    from geocert_pointcloud.model import load_checkpoint, save_checkpoint

    model = _stripe_model()
    with torch.no_grad():
        model.prior.weight[23] = torch.tensor([2.0, 0.0, -1.0])
    x, cat = torch.randn(2, 50, 3), torch.tensor([7, 7])
    save_checkpoint(tmp_path / "m.pt", model, sigma=0.25, num_points=50, categories=["Knife"], train_config={},
                    metrics={})
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt["model"]["spatial_prior"] is True and loaded.prior is not None
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, cat), model(x, cat))
        torch.testing.assert_close(fuse_batchnorm(loaded)(x, cat), model(x, cat), atol=1e-5, rtol=1e-5)
    # a checkpoint written before the prior existed (no spatial_prior entry) still loads, without one
    old = torch.load(tmp_path / "m.pt", weights_only=False)
    del old["model"]["spatial_prior"]
    old["state_dict"] = {k: v for k, v in old["state_dict"].items() if not k.startswith("prior.")}
    torch.save(old, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")[0].prior is None


def test_certify_pc_refuses_a_category_the_model_never_saw(tiny_dataset, trained, tmp_path, capsys):
    unseen = next(c for c in CATEGORY_PARTS if c not in TINY_CATEGORIES)
    pts, _, _ = make_shape("Mug", np.random.default_rng(7), 200)
    cloud = tmp_path / "cloud.npy"
    np.save(cloud, pts)
    out = tmp_path / "unseen"
    rc = cli(["certify-pc", str(cloud), "--checkpoint", str(trained / "model.pt"), "--category", unseen,
              "--output", str(out), "--num-points", "100", "--n0", "4", "--n", "40", "--tau", "0.55",
              "--alpha", "0.1"])
    assert rc == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "warning" not in ln]
    assert len(err) == 1 and f"was not trained on {unseen}" in err[0]
    assert not out.exists()


# ------------------------------------------------------------------ local-feature model and MACER loss


def _voxel_model(resolution: int = 6, depth: int = 2) -> PointNetPartSeg:
    torch.manual_seed(0)
    model = PointNetPartSeg(width=8, arch="voxel", voxel_resolution=resolution, voxel_depth=depth,
                            spatial_prior=True)
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        for _ in range(3):
            model(torch.randn(4, 64, 3) * 0.6, torch.randint(0, 16, (4,)))
    return model.eval()


def test_voxel_model_shapes_fusion_permutation_and_determinism():
    model = _voxel_model()
    x, cat = torch.randn(3, 100, 3) * 0.7, torch.tensor([0, 4, -1])
    with torch.no_grad():
        out = model(x, cat)
        assert out.shape == (3, 100, NUM_PARTS)
        torch.testing.assert_close(fuse_batchnorm(model)(x, cat), out, atol=1e-5, rtol=1e-5)
        perm = torch.randperm(100)
        torch.testing.assert_close(model(x[:, perm], cat), out[:, perm], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(_voxel_model()(x, cat), out)  # same seed, same model
    # the local stage changes the outputs (it is not ignored): a PointNet with the same seed differs
    torch.manual_seed(0)
    assert not torch.allclose(PointNetPartSeg(width=8).eval()(x, cat), out)


def test_voxel_pool_is_local_and_density_invariant():
    from geocert_pointcloud.model import VoxelPool

    torch.manual_seed(0)
    pool = VoxelPool(4, 5, resolution=6, extent=1.5).eval()  # cells of 0.5
    xyz = torch.rand(1, 200, 3) - 1.3  # every point in the corner [-1.3, -0.3]³
    feats = torch.randn(1, 200, 4)
    with torch.no_grad():
        out = pool(xyz, feats)
        # each point twice: cell means and cell shares of the cloud are unchanged, so is every output
        torch.testing.assert_close(pool(xyz.repeat(1, 2, 1), feats.repeat(1, 2, 1))[:, :200], out,
                                   atol=1e-5, rtol=1e-5)
        # a point's features reach the points within about two cells (conv + trilinear read-back), no further
        def with_point(where: float, value: float) -> torch.Tensor:
            extra = torch.full((1, 1, 3), where)
            return pool(torch.cat([xyz, extra], 1), torch.cat([feats, torch.full((1, 1, 4), value)], 1))[:, :200]

        torch.testing.assert_close(with_point(1.3, 1.0), with_point(1.3, 5.0))  # corner cells 0-2, it: 5
        assert not torch.allclose(with_point(-1.2, 1.0), with_point(-1.2, 5.0))
    for bad in ({"resolution": 1}, {"depth": 0}):
        with pytest.raises(ValueError):
            VoxelPool(4, 5, **bad)


@pytest.mark.parametrize("arch", ["pointnet", "voxel"])
def test_a_separate_context_supplies_only_the_cloud_level_features(arch):
    torch.manual_seed(0)
    model = PointNetPartSeg(width=8, arch=arch, voxel_resolution=5).eval()
    for _ in range(2):  # non-trivial BatchNorm statistics
        model.train()(torch.randn(4, 64, 3) * 0.6, torch.tensor([0, 1, 2, 3]))
    model.eval()
    x, ctx, cat = torch.randn(2, 100, 3) * 0.6, torch.randn(2, 80, 3) * 0.6, torch.tensor([0, 5])
    with torch.no_grad():
        torch.testing.assert_close(model(x, cat, context=x), model(x, cat))
        out = model(x, cat, context=ctx)
        # with the context fixed, a point's logits depend on nothing but the point: a subset gives the same
        torch.testing.assert_close(model(x[:, 17:23], cat, context=ctx), out[:, 17:23], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(out, model(x, cat), atol=1e-3)  # and the context does matter
    with pytest.raises(ValueError, match="dgcnn"):
        PointNetPartSeg(width=8, arch="dgcnn").eval()(x, cat, context=ctx)


def test_voxel_checkpoint_roundtrip_and_old_or_unknown_checkpoints(tmp_path, capsys):
    from geocert_pointcloud.model import load_checkpoint, save_checkpoint

    model = _voxel_model(resolution=5, depth=3)
    save_checkpoint(tmp_path / "v.pt", model, sigma=0.25, num_points=50, categories=["Knife"], train_config={},
                    metrics={})
    loaded, ckpt = load_checkpoint(tmp_path / "v.pt")
    assert ckpt["model"]["arch"] == "voxel" and (loaded.voxel_resolution, loaded.voxel_depth) == (5, 3)
    x, cat = torch.randn(2, 50, 3), torch.tensor([7, 7])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, cat), model(x, cat))
    # a checkpoint without the arch entries (written before they existed) is a PointNet
    pn = PointNetPartSeg(width=4)
    save_checkpoint(tmp_path / "p.pt", pn, sigma=0.25, num_points=50, categories=["Knife"], train_config={},
                    metrics={})
    old = torch.load(tmp_path / "p.pt", weights_only=False)
    del old["model"]["arch"], old["model"]["voxel_resolution"]
    torch.save(old, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")[0].arch == "pointnet"
    # an architecture this version does not know: one clear error naming the file
    old["model"]["arch"] = "transformer"
    torch.save(old, tmp_path / "future.pt")
    with pytest.raises(InputError, match="future.pt: .*unknown architecture 'transformer'"):
        load_checkpoint(tmp_path / "future.pt")


def test_macer_loss_pushes_only_right_points_below_the_margin():
    from geocert_pointcloud.train import noise_loss
    from scipy.stats import norm

    # [B=1, K=1, N=3, P=2], label 0: p ≈ 0.98 (margin above γ), ≈ 0.6 (right, small margin), ≈ 0.1 (wrong)
    logits = torch.tensor([[[[4.0, 0.0], [0.4, 0.0], [0.0, 2.2]]]], dtype=torch.float64).requires_grad_(True)
    labels = torch.tensor([[0, 0, 0]])
    term = noise_loss(logits, labels, macer=1.0, macer_gamma=2.0) - noise_loss(logits, labels)
    p = torch.softmax(logits.detach(), -1)[0, 0, :, 0].numpy()
    margins = norm.ppf(p) - norm.ppf(1 - p)
    expected = max(0.0, 2.0 - margins[0]) + max(0.0, 2.0 - margins[1])  # the wrong point does not count
    assert margins[0] > 2.0 and margins[1] < 2.0
    assert float(term.detach()) == pytest.approx(expected / 2, rel=1e-6)
    term.backward()
    g = logits.grad[0, 0].abs().sum(-1)
    assert g[1] > 0 and float(g[0]) == 0.0 and float(g[2]) == 0.0


def test_checkpoint_auto_trains_the_default_once_under_the_model_version(tiny_dataset, tmp_path, monkeypatch):
    """`--checkpoint auto` trains train-pc's defaults once into the cache (file name carrying the dataset and
    model versions) and reuses the file; the training is shrunk here, the configuration it gets is checked."""
    import dataclasses

    import geocert_pointcloud.train_pc as train_pc
    from geocert_pointcloud.config import TrainPcConfig
    from geocert_pointcloud.default_model import default_checkpoint
    from geocert_pointcloud.train import DEFAULT_MODEL_VERSION

    monkeypatch.setenv("GEOCERT_CACHE", str(tmp_path / "cache"))
    real_run, seen = train_pc.run, []

    def tiny_run(cfg):
        seen.append(cfg)
        return real_run(dataclasses.replace(cfg, data=tiny_dataset, epochs=1, width=8, num_points=128,
                                            train_points=64, calibration_draws=2))

    monkeypatch.setattr(train_pc, "run", tiny_run)
    out = tmp_path / "cert"
    assert cli(["certify-pc", str(tiny_dataset), "--checkpoint", "auto", "--output", str(out), "--num-shapes", "1",
                "--num-points", "128", "--n0", "4", "--n", "40", "--tau", "0.6", "--alpha", "0.1"]) == 0
    assert len(seen) == 1 and seen[0] == TrainPcConfig(output=seen[0].output)  # the defaults, nothing else
    path = default_checkpoint()  # cached: no second training
    assert len(seen) == 1 and path.name.endswith(f"_m{DEFAULT_MODEL_VERSION}.pt")
    assert path.parent == tmp_path / "cache" / "pointcloud" / "models"
    assert json.loads((out / "metrics.json").read_text())["certified_accuracy"] >= 0


# ------------------------------------------------------------------ further training options (issue 11)


def test_ema_update_and_boundary_distance():
    from geocert_pointcloud.train import _ema_update, part_boundary_distance

    torch.manual_seed(0)
    a, b = PointNetPartSeg(width=4), PointNetPartSeg(width=4)
    b.enc1[1].bn.num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    _ema_update(a, b, 0.75)
    for k, v in a.state_dict().items():
        want = 0.75 * before[k] + 0.25 * b.state_dict()[k] if v.dtype.is_floating_point else b.state_dict()[k]
        torch.testing.assert_close(v, want)
    pts = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [1.0, 0, 0], [0.0, 2, 0]])
    lab = torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(part_boundary_distance(pts, lab), torch.tensor([1.0, 0.9, 0.9, 2.0]))
    assert torch.isinf(part_boundary_distance(pts, torch.zeros(4, dtype=torch.long))).all()


def test_weighted_cross_entropy_and_count_temperature():
    from geocert_pointcloud.train import noise_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 4)
    labels = torch.randint(0, 4, (2, 5))
    torch.testing.assert_close(noise_loss(logits, labels, weights=torch.ones(2, 5)), noise_loss(logits, labels))
    # a zero weight drops that point's cross-entropy: the loss is the mean over the other points
    w = torch.ones(2, 5)
    w[:, 0] = 0
    torch.testing.assert_close(noise_loss(logits, labels, weights=w), noise_loss(logits[:, :, 1:], labels[:, 1:]))
    # a point right in every copy with probability 0.6: a low temperature counts it nearly as its votes (1.0)
    right = torch.tensor([[[[0.405, 0.0]]]]).expand(1, 4, 1, 2)  # softmax ≈ (0.6, 0.4)
    lab = torch.zeros(1, 1, dtype=torch.long)
    count = {t: float(noise_loss(right, lab) - noise_loss(right, lab, count=1.0, count_temperature=t))
             for t in (1.0, 0.05)}
    assert count[1.0] < 0.02 and count[0.05] > 0.95


def test_global_mean_pool_and_quadratic_prior_checkpoints(tmp_path):
    from geocert_pointcloud.model import load_checkpoint, prior_features, save_checkpoint

    x = torch.randn(2, 60, 3) * 0.5
    feats = prior_features(x, "quadratic")
    assert feats.shape == (2, 60, 9)
    torch.testing.assert_close(feats[..., 6], x[..., 0] * x[..., 1])  # xy, yz, zx after the squares
    torch.testing.assert_close(feats[..., 8], x[..., 2] * x[..., 0])
    torch.manual_seed(0)
    model = PointNetPartSeg(width=4, arch="voxel", global_pool="max+mean", spatial_prior="quadratic").eval()
    with torch.no_grad():
        model.prior.weight[23, 3] = 2.0  # + 2x² on part 23
    cat = torch.tensor([7, 7])
    with torch.no_grad():
        dense = model(x.repeat(1, 3, 1), cat)[:, :60]  # mean pooling: the same cloud three times over
        torch.testing.assert_close(dense, model(x, cat), atol=1e-5, rtol=1e-5)
    save_checkpoint(tmp_path / "m.pt", model, sigma=0.25, num_points=60, categories=["Knife"], train_config={},
                    metrics={})
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt["model"]["spatial_prior"] == "quadratic" and ckpt["model"]["global_pool"] == "max+mean"
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, cat), model(x, cat))
        torch.testing.assert_close(fuse_batchnorm(loaded)(x, cat), model(x, cat), atol=1e-5, rtol=1e-5)
    # checkpoints written before these options: max pooling, linear prior
    old = torch.load(tmp_path / "m.pt", weights_only=False)
    pn = PointNetPartSeg(width=4, spatial_prior=True)
    save_checkpoint(tmp_path / "p.pt", pn, sigma=0.25, num_points=60, categories=["Knife"], train_config={},
                    metrics={})
    old = torch.load(tmp_path / "p.pt", weights_only=False)
    del old["model"]["global_pool"]
    torch.save(old, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")[0]
    assert (loaded.global_pool, loaded.prior_kind) == ("max", "linear")


def test_quadratic_calibration_certifies_a_slab_no_affine_prior_can():
    from geocert_pointcloud.train import calibrate_part_biases

    # part 23 is |x| > 0.5, part 22 the slab between, where the model's logits lead by 1: an affine prior in
    # xyz cannot carve the slab out (at most ≈ 0.75 right: x > 0.5 and the slab), a quadratic one can
    # (a·x² > 1 outside it)
    gen = torch.Generator().manual_seed(0)
    pts = torch.rand(4, 300, 3, generator=gen) * 2 - 1
    knife = torch.full((4,), CATEGORIES.index("Knife"))
    lab = torch.where(pts[..., 0].abs() > 0.5, CATEGORY_PARTS["Knife"][1], CATEGORY_PARTS["Knife"][0])
    acc = {}
    for kind in ("linear", "quadratic"):
        model = PointNetPartSeg(width=4, spatial_prior=kind).eval()
        with torch.no_grad():
            model.head[-1].weight.zero_()
            model.head[-1].bias.zero_()
            model.head[-1].bias[22] = 1.0
        calibrate_part_biases(model, pts, lab, knife, sigma=0.05, draws=16, cut=0.82, linear=True,
                              generator=torch.Generator().manual_seed(1), sample_points=300)
        acc[kind] = float((predict_parts(model, pts, knife, part_mask(knife)) == lab).float().mean())
    assert acc["quadratic"] > 0.9 and acc["linear"] < 0.8


@pytest.mark.parametrize("extra, message", [
    (["--train-sigma", "-0.1"], "--train-sigma must be >= 0"),
    (["--ema", "1"], "--ema must lie in [0, 1)"),
    (["--count-warmup", "2"], "--count-warmup must lie in [0, 1]"),
    (["--count-temperature", "0"], "--count-temperature must be > 0"),
    (["--boundary-weight", "-1"], "--boundary-weight must be >= 0"),
])
def test_train_pc_bad_training_options(tiny_dataset, tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    assert cli(["train-pc", str(tiny_dataset), "--output", str(out), *extra]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_train_pc_with_the_extra_options_certifies_at_its_own_sigma(tiny_dataset, tmp_path):
    from geocert_pointcloud.model import load_checkpoint

    out = tmp_path / "extra"
    assert cli(["train-pc", str(tiny_dataset), "--output", str(out), "--epochs", "2", "--width", "8",
                "--num-points", "128", "--train-points", "64", "--calibration-draws", "4", "--sigma", "0.2",
                "--train-sigma", "0.3", "--ema", "0.9", "--boundary-weight", "0.5", "--count-warmup", "0.5",
                "--count-temperature", "0.5", "--global-pool", "max+mean", "--calibrate", "quadratic"]) == 0
    model, ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["sigma"] == 0.2 and ckpt["train_config"]["train_sigma"] == 0.3
    assert model.prior_kind == "quadratic" and model.global_pool == "max+mean"
    assert model.prior.weight.abs().sum() > 0  # calibrated


@pytest.mark.parametrize("calibrate, prior", [("off", None), ("bias", None), ("linear", "linear")])
def test_train_pc_calibrate_choices_build_their_prior(tiny_dataset, tmp_path, calibrate, prior):
    from geocert_pointcloud.model import load_checkpoint

    out = tmp_path / calibrate
    assert cli(["train-pc", str(tiny_dataset), "--output", str(out), "--epochs", "1", "--width", "8",
                "--num-points", "128", "--train-points", "64", "--calibration-draws", "4",
                "--calibrate", calibrate]) == 0
    model, _ = load_checkpoint(out / "model.pt")
    assert model.prior_kind == prior and (model.prior is None) == (prior is None)
