"""geocert.io: atomic writes, resumable JSONL, plain-data configs, PLY readable by other tools."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from geocert import io
from geocert.errors import InputError


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.json"
    io.write_json(target, {"x": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_write(target) as fh:
            fh.write('{"x": 2, "trunc')
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_to_plain_handles_dataclasses_paths_numpy_and_nan(tmp_path):
    @dataclasses.dataclass
    class Cfg:
        path: Path
        arr: object
        value: float

    plain = io.to_plain(Cfg(Path("/x/y"), np.arange(3), math.nan))
    assert plain == {"path": "/x/y", "arr": [0, 1, 2], "value": None}
    io.write_config(tmp_path, Cfg(Path("a"), np.float32(2.5), 1.0), plugin="p", plugin_version="9", seed=3)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["config"]["arr"] == 2.5 and cfg["plugin_version"] == "9"
    assert cfg["geocert_version"]


def test_jsonl_resume_drops_a_truncated_last_line(tmp_path):
    p = tmp_path / "r.jsonl"
    io.append_jsonl(p, {"shape": 0, "acc": 0.5})
    io.append_jsonl(p, {"shape": 1, "acc": 0.7})
    with open(p, "a") as fh:
        fh.write('{"shape": 2, "ac')
    assert [r["shape"] for r in io.read_jsonl(p)] == [0, 1]
    assert io.read_jsonl(tmp_path / "missing.jsonl") == []


def test_read_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(InputError, match="bad.json: malformed JSON"):
        io.read_json(bad)
    with pytest.raises(InputError, match="file not found"):
        io.read_json(tmp_path / "none.json")


def test_ply_round_trips_through_trimesh(tmp_path):
    import trimesh

    pts = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    labels = np.r_[np.zeros(25, int), -np.ones(25, int)]
    cols = io.label_palette(4)[labels]
    io.write_ply(tmp_path / "c.ply", pts, colors=cols, labels=labels)
    cloud = trimesh.load(tmp_path / "c.ply")
    np.testing.assert_allclose(np.asarray(cloud.vertices), pts, atol=1e-6)
    assert tuple(cloud.colors[30][:3]) == io.ABSTAIN_COLOR
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    io.write_ply(tmp_path / "m.ply", pts[:4], faces=faces)
    mesh = trimesh.load(tmp_path / "m.ply", process=False)
    assert mesh.faces.tolist() == faces.tolist()


def test_images_round_trip_and_bad_image_names_file(tmp_path):
    img = np.random.default_rng(1).random((8, 9, 3))
    io.write_image(tmp_path / "a.png", img)
    back = io.read_image(tmp_path / "a.png")
    assert back.shape == (8, 9, 3) and back.dtype == np.uint8
    assert np.abs(back / 255.0 - img).max() < 1 / 255 + 1e-9
    (tmp_path / "b.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="b.png: cannot read image"):
        io.read_image(tmp_path / "b.png")


def test_atomic_write_gives_files_the_usual_permissions(tmp_path):
    import os
    import stat

    from geocert.io import atomic_write

    with atomic_write(tmp_path / "a.txt") as fh:
        fh.write("x")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o666 & ~mask


def test_atomic_directory_publishes_whole_folders_only(tmp_path):
    import os
    import stat

    import pytest

    from geocert.io import atomic_directory

    target = tmp_path / "data"
    with atomic_directory(target) as tmp:
        assert not target.exists() and tmp.parent == tmp_path
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o777 & ~mask
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:  # failure: the old folder stays
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] and not (target / "b.txt").exists()
    with atomic_directory(target) as tmp:  # replace=True: the new folder replaces the old one
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    with pytest.raises(OSError), atomic_directory(target, replace=False) as tmp:  # another process finished
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


def test_read_checkpoint_names_the_file_for_missing_and_unreadable_files(tmp_path):
    import pytest
    import torch

    from geocert.io import read_checkpoint

    with pytest.raises(InputError, match=r"none\.pt: checkpoint not found \(train one\)"):
        read_checkpoint(tmp_path / "none.pt", hint=" (train one)")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"bad\.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "bad.pt")
    torch.save({"format": 1, "w": torch.ones(2)}, tmp_path / "ok.pt")
    data = read_checkpoint(tmp_path / "ok.pt")
    assert data["format"] == 1 and torch.equal(data["w"], torch.ones(2))


def test_read_npy_clean_errors(tmp_path):
    import numpy as np

    from geocert.io import read_npy

    good = tmp_path / "a.npy"
    np.save(good, np.arange(6.0).reshape(2, 3))
    assert read_npy(good).shape == (2, 3)
    garbage = tmp_path / "g.npy"
    garbage.write_bytes(bytes(range(256)))
    objects = tmp_path / "o.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object))
    truncated = tmp_path / "t.npy"
    truncated.write_bytes(good.read_bytes()[:90])
    for path, why in ((garbage, "not a NumPy .npy array file"), (objects, "holds Python objects"),
                      (truncated, "not a NumPy .npy array file"), (tmp_path / "none.npy", "file not found"),
                      (tmp_path, "is a folder")):
        with pytest.raises(InputError, match=why) as err:
            read_npy(path)
        assert "allow_pickle" not in str(err.value) and str(path) in str(err.value)
