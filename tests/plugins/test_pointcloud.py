"""Tests of the ``pointcloud`` plugin: data, loader errors, model, certification, CLI end to end (tiny configs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from geocert.cli import main as cli
from geocert.errors import InputError, ParameterError
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
from geocert_pointcloud.model import PointNetPartSeg, fuse_batchnorm, part_mask, predict_parts, rotate_about_up
from geocert_pointcloud.scenes import PROCEDURAL_CATEGORIES, make_dataset, make_shape

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("pcds"), shapes_per_category=5, num_points=400, seed=3)


# ---------------------------------------------------------------------------------------------- data


def test_make_dataset_layout_and_determinism(tiny_dataset, tmp_path):
    lines = (tiny_dataset / "synsetoffset2category.txt").read_text().split("\n")
    assert [ln.split("\t")[0] for ln in lines if ln] == list(PROCEDURAL_CATEGORIES)
    train = json.loads((tiny_dataset / "train_test_split" / "shuffled_train_file_list.json").read_text())
    test = json.loads((tiny_dataset / "train_test_split" / "shuffled_test_file_list.json").read_text())
    assert len(train) == 4 * 4 and len(test) == 4 * 1 and not set(train) & set(test)
    assert all(e.startswith("shape_data/") for e in train)
    first = tiny_dataset / train[0].split("/", 1)[1]
    rows = np.loadtxt(first.with_suffix(".txt"))
    assert rows.shape == (400, 7)
    np.testing.assert_allclose(np.linalg.norm(rows[:, 3:6], axis=1), 1.0, atol=1e-5)  # unit normals
    again = make_dataset(tmp_path / "again", shapes_per_category=5, num_points=400, seed=3)
    first = first.with_suffix(".txt")
    assert (again / first.relative_to(tiny_dataset)).read_bytes() == first.read_bytes()


@pytest.mark.parametrize("category", PROCEDURAL_CATEGORIES)
def test_make_shape_parts(category):
    pts, nrm, lab = make_shape(category, np.random.default_rng(0), 3000)
    assert pts.shape == (3000, 3) and nrm.shape == (3000, 3)
    assert set(np.unique(lab)) <= set(CATEGORY_PARTS[category])
    assert len(np.unique(lab)) >= 3  # at least three parts present in every category
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
    allitems = ShapeNetPart(tiny_dataset).items("train")
    assert [s.name for s in shapes] == [allitems[i][1] for i in evenly_spaced(4, len(allitems))]
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
    cat, name, path = next(it for it in ds.items("train") if it[0] == "Airplane")
    rows = np.loadtxt(path)
    rows[0, 6] = CATEGORY_PARTS["Chair"][0]
    wrong = tmp_path / "wrong.txt"
    np.savetxt(wrong, rows, fmt="%.6f")
    with pytest.raises(InputError, match="out of range"):
        ds.load((cat, name, wrong))
    with pytest.raises(InputError, match="synsetoffset2category"):
        ShapeNetPart(tmp_path)


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
