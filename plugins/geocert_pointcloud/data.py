"""Loading point clouds: the ShapeNet-part benchmark folder and single ``.txt`` / ``.ply`` / ``.npy`` files.

Every cloud is validated (finite, non-empty, right column count, labels in range), centred on its centroid,
scaled into the unit sphere, and resampled to a fixed number of points with a per-shape deterministic RNG.
Part labels are the 50 global ShapeNet-part ids; each of the 16 categories owns a contiguous range of them.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path

import numpy as np

from geocert.errors import InputError, ParameterError

__all__ = [
    "CATEGORIES", "CATEGORY_SYNSETS", "CATEGORY_PARTS", "NUM_PARTS", "NUM_CATEGORIES", "part_category",
    "Shape", "ShapeNetPart", "normalize_unit_sphere", "resample", "load_cloud_file", "load_shapes",
    "evenly_spaced",
]

# The 16 ShapeNet-part categories in the benchmark's order, their synset offsets and global part ids.
CATEGORIES = ("Airplane", "Bag", "Cap", "Car", "Chair", "Earphone", "Guitar", "Knife", "Lamp", "Laptop",
              "Motorbike", "Mug", "Pistol", "Rocket", "Skateboard", "Table")
CATEGORY_SYNSETS = {
    "Airplane": "02691156", "Bag": "02773838", "Cap": "02954340", "Car": "02958343", "Chair": "03001627",
    "Earphone": "03261776", "Guitar": "03467517", "Knife": "03624134", "Lamp": "03636649",
    "Laptop": "03642806", "Motorbike": "03790512", "Mug": "03797390", "Pistol": "03948459",
    "Rocket": "04099429", "Skateboard": "04225987", "Table": "04379243",
}
_PART_COUNTS = (4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3)
CATEGORY_PARTS: dict[str, tuple[int, ...]] = {}
_start = 0
for _cat, _k in zip(CATEGORIES, _PART_COUNTS, strict=False):
    CATEGORY_PARTS[_cat] = tuple(range(_start, _start + _k))
    _start += _k
NUM_PARTS = _start  # 50
NUM_CATEGORIES = len(CATEGORIES)  # 16
_PART_TO_CATEGORY = {p: c for c, parts in CATEGORY_PARTS.items() for p in parts}


def part_category(part: int) -> str:
    """The category owning global part id ``part``."""
    return _PART_TO_CATEGORY[int(part)]


@dataclasses.dataclass
class Shape:
    """One normalized, resampled cloud.

    Attributes:
        name: identifier (``<synset>/<shape id>`` for the benchmark, the file stem for single files).
        category: one of :data:`CATEGORIES`, or ``None`` when unknown.
        points: ``[N, 3]`` float32 in the unit sphere.
        labels: ``[N]`` int64 global part ids, or ``None`` when the file has none.
        source: the file it came from.
    """

    name: str
    category: str | None
    points: np.ndarray
    labels: np.ndarray | None
    source: Path
    normals: np.ndarray | None = None
    """``[N, 3]`` float32 unit normals when the file has them (6 or 7 columns), else ``None``."""


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre ``[N, 3]`` points on their centroid and scale the farthest point to radius 1."""
    centred = points - points.mean(axis=0, keepdims=True)
    scale = np.linalg.norm(centred, axis=1).max()
    return centred / scale if scale > 0 else centred


def resample(num_in: int, num_out: int, rng: np.random.Generator) -> np.ndarray:
    """Indices choosing ``num_out`` of ``num_in`` points: without replacement when there are enough,
    otherwise every point once plus random repeats."""
    if num_in >= num_out:
        return np.sort(rng.choice(num_in, size=num_out, replace=False))
    extra = rng.choice(num_in, size=num_out - num_in, replace=True)
    return np.concatenate([np.arange(num_in), extra])


def _shape_rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(name.encode("utf-8")), seed])


def _check_array(path: Path, arr: np.ndarray, allowed_cols: tuple[int, ...]) -> None:
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InputError(f"{path}: empty point cloud")
    if arr.shape[1] not in allowed_cols:
        cols = "/".join(str(c) for c in allowed_cols)
        raise InputError(f"{path}: expected {cols} columns (x y z [nx ny nz] [part]), got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr).all(axis=1)).nonzero()[0][0])
        raise InputError(f"{path}: non-finite value (NaN/inf) in row {bad}")


def _labels_from(path: Path, column: np.ndarray, allowed: tuple[int, ...] | None) -> np.ndarray:
    if not np.all(column == np.round(column)):
        raise InputError(f"{path}: part labels must be integers")
    labels = column.astype(np.int64)
    valid = np.isin(labels, allowed) if allowed is not None else (labels >= 0) & (labels < NUM_PARTS)
    if not valid.all():
        bad = int(labels[~valid][0])
        rng_txt = f"{allowed[0]}..{allowed[-1]}" if allowed is not None else f"0..{NUM_PARTS - 1}"
        raise InputError(f"{path}: part label {bad} out of range (expected {rng_txt})")
    return labels


def _read_txt(path: Path) -> np.ndarray:
    import warnings

    try:  # fast path (numpy's C parser); the slow path below diagnoses malformed files
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.loadtxt(path, ndmin=2, dtype=np.float64, comments="#")
        if arr.size:
            return arr
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text point-cloud file") from None
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise InputError(f"{path}: empty point cloud")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise InputError(f"{path}: rows have different column counts ({sorted(widths)})")
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        raise InputError(f"{path}: non-numeric value in point-cloud file") from None


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _read_ply(path: Path) -> np.ndarray:
    """Vertices of a PLY file as ``[N, 3]`` (x y z) or ``[N, 4]`` (x y z label) float64."""
    raw = path.read_bytes()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise InputError(f"{path}: not a PLY file")
    nl = raw.find(b"\n", end)
    header = raw[:end].decode("ascii", errors="replace").splitlines()
    body = raw[nl + 1:]
    fmt, count, props, in_vertex, before = None, 0, [], False, True
    for line in header:
        tok = line.split()
        if not tok:
            continue
        try:
            if tok[0] == "format":
                fmt = tok[1]
            elif tok[0] == "element":
                in_vertex = tok[1] == "vertex"
                if in_vertex:
                    count = int(tok[2])
                    if count < 0:
                        raise ValueError
                elif not props:
                    before = False  # another element before the vertices
            elif tok[0] == "property" and in_vertex:
                if tok[1] == "list":
                    raise InputError(f"{path}: list properties on vertices are not supported")
                if tok[1] not in _PLY_TYPES:
                    raise InputError(f"{path}: unknown PLY property type {tok[1]!r}")
                props.append((tok[2], _PLY_TYPES[tok[1]]))
        except (IndexError, ValueError):  # a missing token or a count that is not a number
            raise InputError(f"{path}: malformed PLY header line {line.strip()!r}") from None
    names = [p[0] for p in props]
    if not {"x", "y", "z"} <= set(names):
        raise InputError(f"{path}: PLY vertices need x, y, z properties")
    if not before:
        raise InputError(f"{path}: the vertex element must come first in the PLY file")
    if count == 0:
        raise InputError(f"{path}: empty point cloud")
    try:
        if fmt == "ascii":
            rows = body.decode("ascii").split("\n")
            table = np.array([r.split() for r in rows[:count]], dtype=np.float64)
            if table.shape != (count, len(props)):
                raise ValueError
            cols = {n: table[:, i] for i, n in enumerate(names)}
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            order = "<" if fmt == "binary_little_endian" else ">"
            dt = np.dtype([(n, order + t) for n, t in props])
            vert = np.frombuffer(body, dtype=dt, count=count)
            cols = {n: vert[n].astype(np.float64) for n in names}
        else:
            raise InputError(f"{path}: unknown PLY format {fmt!r}")
    except ValueError:
        raise InputError(f"{path}: truncated or malformed PLY vertex data") from None
    out = [cols["x"], cols["y"], cols["z"]]
    for key in ("label", "part", "scalar_label"):
        if key in cols:
            out.append(cols[key])
            break
    return np.stack(out, axis=1)


def load_cloud_file(path: str | Path, *, num_points: int = 2048, seed: int = 0,
                    allowed_labels: tuple[int, ...] | None = None, category: str | None = None,
                    name: str | None = None) -> Shape:
    """Read one cloud: ``.txt`` (3, 4, 6 or 7 columns: x y z [nx ny nz] [part]), ``.npy`` (same columns)
    or ``.ply`` (x y z and an optional ``label`` vertex property).

    Raises :class:`InputError` (message starts with the path) on a missing, empty, non-finite or malformed
    file, a wrong column count, or labels out of range.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a point-cloud file (.txt, .ply, .npy)")
    suffix = path.suffix.lower()
    if suffix in (".txt", ".pts", ".xyz"):
        arr = _read_txt(path)
    elif suffix == ".npy":
        from geocert.io import read_npy

        arr = read_npy(path)
        if arr.ndim == 1 and arr.size == 0:
            arr = arr.reshape(0, 3)
        if arr.ndim != 2:
            raise InputError(f"{path}: expected a 2-D array [N, 3|4|6|7], got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{path}: expected a numeric array, got {arr.dtype}")
        arr = arr.astype(np.float64)
    elif suffix == ".ply":
        arr = _read_ply(path)
    else:
        raise InputError(f"{path}: unsupported point-cloud format {suffix!r} (use .txt, .ply or .npy)")
    _check_array(path, arr, (3, 4, 6, 7))
    labels = _labels_from(path, arr[:, -1], allowed_labels) if arr.shape[1] in (4, 7) else None
    if category is None and labels is not None:
        cats = {part_category(p) for p in np.unique(labels)}
        category = cats.pop() if len(cats) == 1 else None
    points = normalize_unit_sphere(arr[:, :3])
    normals = None
    if arr.shape[1] in (6, 7):
        nrm = arr[:, 3:6]
        length = np.linalg.norm(nrm, axis=1, keepdims=True)
        normals = (nrm / np.where(length > 0, length, 1.0)).astype(np.float32)
    name = name or path.stem
    idx = resample(len(points), num_points, _shape_rng(name, seed))
    return Shape(name=name, category=category, points=points[idx].astype(np.float32),
                 labels=None if labels is None else labels[idx], source=path,
                 normals=None if normals is None else normals[idx])


class ShapeNetPart:
    """The ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` layout (or the procedural stand-in).

    ``ShapeNetPart(root).items(split)`` lists ``(category, name, path)`` for a split in file order;
    :meth:`load` reads one of them.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index = self.root / "synsetoffset2category.txt"
        if not self.root.is_dir():
            raise InputError(f"{self.root}: dataset folder not found")
        if not index.is_file():
            raise InputError(f"{self.root}: not a ShapeNet-part folder (no synsetoffset2category.txt)")
        self.synset_to_category: dict[str, str] = {}
        try:
            index_lines = index.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise InputError(f"{index}: not a text file") from None
        for i, line in enumerate(index_lines):
            tok = line.split()
            if not tok:
                continue
            if len(tok) != 2 or tok[0] not in CATEGORY_SYNSETS:
                raise InputError(f"{index}: line {i + 1} is not '<category> <synset>' with a ShapeNet-part "
                                 f"category ({', '.join(CATEGORIES)})")
            self.synset_to_category[tok[1]] = tok[0]
        if not self.synset_to_category:
            raise InputError(f"{index}: no categories listed")

    @property
    def categories(self) -> list[str]:
        return sorted(self.synset_to_category.values(), key=CATEGORIES.index)

    def split_file(self, split: str) -> Path:
        return self.root / "train_test_split" / f"shuffled_{split}_file_list.json"

    def items(self, split: str) -> list[tuple[str, str, Path]]:
        """``(category, "<synset>/<id>", path)`` for every shape of ``split`` (train/val/test)."""
        if split not in ("train", "val", "test"):
            raise ParameterError(f"split must be train, val or test, got {split!r}")
        f = self.split_file(split)
        if not f.is_file():
            raise InputError(f"{f}: split file not found")
        try:
            entries = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{f}: malformed JSON ({type(exc).__name__})") from None
        if not isinstance(entries, list):
            raise InputError(f"{f}: expected a JSON list of 'shape_data/<synset>/<id>' strings")
        out = []
        for e in entries:
            parts = str(e).split("/")
            if len(parts) < 2:
                raise InputError(f"{f}: malformed entry {e!r}")
            synset, shape_id = parts[-2], parts[-1]
            if synset not in self.synset_to_category:
                continue  # a category not listed in synsetoffset2category.txt (a subset download)
            out.append((self.synset_to_category[synset], f"{synset}/{shape_id}",
                        self.root / synset / f"{shape_id}.txt"))
        return out

    def load(self, item: tuple[str, str, Path], *, num_points: int = 2048, seed: int = 0) -> Shape:
        category, name, path = item
        shape = load_cloud_file(path, num_points=num_points, seed=seed,
                                allowed_labels=CATEGORY_PARTS[category], category=category, name=name)
        if shape.labels is None:
            raise InputError(f"{path}: ShapeNet-part files need a part column (x y z nx ny nz part)")
        return shape


def evenly_spaced(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them when ``count >= total``)."""
    if count <= 0 or count >= total:
        return list(range(total))
    return sorted({int(i) for i in np.floor(np.arange(count) * total / count)})


def load_shapes(data: Path, *, split: str = "test", num_shapes: int = 0, num_points: int = 2048, seed: int = 0,
                category: str | None = None) -> list[Shape]:
    """A dataset folder's split (``num_shapes`` shapes evenly spaced over the split sorted by category and
    name, 0 = all) or one cloud file."""
    data = Path(data)
    if category is not None and category not in CATEGORIES:
        raise ParameterError(f"category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    if data.is_dir():
        ds = ShapeNetPart(data)
        items = ds.items(split)
        if category is not None:
            items = [it for it in items if it[0] == category]
        # a stable order (category, then name) so evenly spaced shapes cover every category in proportion
        items = sorted(items, key=lambda it: (CATEGORIES.index(it[0]), it[1]))
        if not items:
            raise InputError(f"{ds.split_file(split)}: no shapes in split {split!r}"
                             + (f" for category {category}" if category else ""))
        chosen = [items[i] for i in evenly_spaced(num_shapes, len(items))]
        return [ds.load(it, num_points=num_points, seed=seed) for it in chosen]
    allowed = CATEGORY_PARTS[category] if category is not None else None
    return [load_cloud_file(data, num_points=num_points, seed=seed, allowed_labels=allowed, category=category)]
