"""Atomic file output, results JSON/JSONL (resumable), config dumps, PNG and PLY helpers.

Every writer here goes through :func:`atomic_write`: the data is written to a temporary file in the same
folder and renamed over the target, so an interrupted run never leaves a truncated file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from geocert import __version__
from geocert.errors import InputError

__all__ = [
    "atomic_write",
    "atomic_directory",
    "read_checkpoint",
    "to_plain",
    "write_json",
    "read_json",
    "write_config",
    "append_jsonl",
    "read_jsonl",
    "repair_jsonl",
    "write_image",
    "read_image",
    "read_npy",
    "write_ply",
    "label_palette",
    "ABSTAIN_COLOR",
]

ABSTAIN_COLOR = (255, 255, 255)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success rename it over ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Assemble a folder in a temporary sibling of ``path`` (yielded); on success rename it to ``path``, on
    error delete it, so that ``path`` is never seen half-written.

    ``replace=True`` removes an existing ``path`` first. ``replace=False`` leaves an existing ``path`` alone:
    the rename then raises ``OSError`` (for caches: another process finished first) and ours is deleted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; outputs get the usual permissions
        yield tmp
        if replace and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_checkpoint(path: str | os.PathLike, *, hint: str = "") -> Any:
    """Load a torch checkpoint on the CPU with ``weights_only=True`` (no code runs from the file).

    Raises :class:`InputError` naming the file when it is missing (``hint`` is appended, e.g. how to make one)
    or unreadable. The caller checks the loaded object's format."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found{hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:120]})") from None


def to_plain(obj: Any) -> Any:
    """Turn dataclasses, paths, enums, numpy/torch scalars and arrays into JSON-ready plain data.

    Non-finite floats become ``None`` (JSON has no NaN)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy / torch
        return to_plain(obj.tolist())
    if hasattr(obj, "item"):
        return to_plain(obj.item())
    return str(obj)


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` (through :func:`to_plain`) as JSON, atomically."""
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(to_plain(obj), fh, indent=indent, allow_nan=False)
        fh.write("\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, raising :class:`InputError` naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: malformed JSON ({exc})") from None


def write_config(outdir: str | os.PathLike, config: Any, *, plugin: str | None = None,
                 plugin_version: str | None = None, seed: int | None = None, **extra: Any) -> Path:
    """Write ``outdir/config.json``: the resolved config as plain data plus versions and the seed."""
    import platform

    data = {
        "command_config": type(config).__name__,
        "config": to_plain(config),
        "geocert_version": __version__,
        "plugin": plugin,
        "plugin_version": plugin_version,
        "seed": seed,
        "python": platform.python_version(),
    }
    try:
        import torch

        data["torch_version"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    data.update(to_plain(extra))
    return write_json(Path(outdir) / "config.json", data)


def append_jsonl(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON record as a line, flushed and fsynced (a crash loses at most this line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(to_plain(record), allow_nan=False)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def repair_jsonl(path: str | os.PathLike) -> int:
    """Cut a JSONL file back to its last complete line (an interrupted append leaves a partial one), so the
    next append starts on a fresh line. Returns the number of bytes removed."""
    path = Path(path)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as fh:
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return len(data) - keep


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read the complete records of a JSONL file; a truncated last line (interrupted run) is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def write_image(path: str | os.PathLike, image: Any) -> Path:
    """Write an image array (H×W or H×W×{3,4}; uint8, or float in [0, 1]) atomically; format from suffix."""
    import imageio.v3 as iio
    import numpy as np

    arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if arr.dtype != np.uint8:
        arr = (np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        iio.imwrite(fh, arr, extension=path.suffix or ".png")
    return path


def read_npy(path: str | os.PathLike) -> Any:
    """Read a ``.npy`` array without running code from the file; :class:`InputError` naming the file when it
    is missing or not a plain NumPy array file (never NumPy's ``allow_pickle`` advice)."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found" if not path.exists() else f"{path}: is a folder, expected a .npy file")
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise InputError(f"{path}: not a NumPy .npy array file")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        why = "holds Python objects, not a numeric array" if "pickle" in str(exc) else "not a NumPy .npy array file"
        raise InputError(f"{path}: {why}") from None
    except (OSError, EOFError):
        raise InputError(f"{path}: not a NumPy .npy array file (unreadable or truncated)") from None


def read_image(path: str | os.PathLike) -> Any:
    """Read an image file into a numpy array, raising :class:`InputError` naming the file on failure."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return iio.imread(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None


def label_palette(num_classes: int) -> Any:
    """A ``[num_classes + 1, 3]`` uint8 palette; index ``-1`` (the last row) is white for abstentions."""
    import numpy as np

    base = np.array(
        [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
         [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [57, 59, 121], [99, 121, 57],
         [140, 109, 49], [132, 60, 57], [123, 65, 115], [0, 0, 0]], dtype=np.uint8)
    reps = -(-max(num_classes, 1) // len(base))
    pal = np.concatenate([base] * reps)[:num_classes]
    return np.concatenate([pal, np.array([ABSTAIN_COLOR], dtype=np.uint8)])


def write_ply(path: str | os.PathLike, points: Any, colors: Any | None = None, faces: Any | None = None,
              labels: Any | None = None) -> Path:
    """Write a binary little-endian PLY point cloud or mesh atomically.

    Args:
        points: ``[N, 3]`` float coordinates.
        colors: optional ``[N, 3]`` uint8 RGB.
        faces: optional ``[F, 3]`` int triangle indices (makes it a mesh).
        labels: optional ``[N]`` int labels stored as a ``label`` vertex property (-1 = abstain).
    """
    import numpy as np

    def np_(a):
        return None if a is None else np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)

    pts, cols, fcs, labs = np_(points).astype("<f4"), np_(colors), np_(faces), np_(labels)
    n = len(pts)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if cols is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if labs is not None:
        fields += [("label", "<i4")]
    vert = np.empty(n, dtype=fields)
    vert["x"], vert["y"], vert["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if cols is not None:
        cols = cols.astype(np.uint8)
        vert["red"], vert["green"], vert["blue"] = cols[:, 0], cols[:, 1], cols[:, 2]
    if labs is not None:
        vert["label"] = labs.astype(np.int32)
    ply_types = {"<f4": "float", "u1": "uchar", "<i4": "int"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property {ply_types[t]} {name}" for name, t in fields]
    if fcs is not None:
        header += [f"element face {len(fcs)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    with atomic_write(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vert.tobytes())
        if fcs is not None:
            face = np.empty(len(fcs), dtype=[("n", "u1"), ("i", "<i4", (3,))])
            face["n"] = 3
            face["i"] = fcs.astype(np.int32)
            fh.write(face.tobytes())
    return Path(path)
