"""The voxel plugin's items and model adapter; the core's dataset runner does everything else."""

import dataclasses
from pathlib import Path

import numpy as np
import torch

from geocert.errors import InputError
from geocert.pipeline import Sample, certify_dataset, executor_from, load_model, open_run
from geocert.pipeline.dataset import DatasetTask
from geocert.pipeline.models import labels_from_output

CLASSES = ("sphere", "cube", "ring")
SIZE = 16


def make_grid(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A 16³ occupancy grid of one shape class, randomly sized and placed."""
    axis, shift = np.arange(SIZE) - (SIZE - 1) / 2, rng.uniform(-2, 2, size=3)
    x, y, z = np.meshgrid(axis - shift[0], axis - shift[1], axis - shift[2], indexing="ij")
    r = rng.uniform(4.0, 6.0)
    if kind == "sphere":
        occ = x**2 + y**2 + z**2 <= r**2
    elif kind == "cube":
        occ = np.maximum(np.maximum(abs(x), abs(y)), abs(z)) <= 0.8 * r
    else:
        occ = ((np.sqrt(x**2 + y**2) - r) ** 2 + z**2) <= 2.0**2
    return occ.astype(np.float32)


class TemplateClassifier(torch.nn.Module):
    """Logits = correlation of the (noisy) grid with a centred template of each class."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        t = np.stack([np.mean([make_grid(k, rng) for _ in range(16)], axis=0) for k in CLASSES])
        t = t - t.mean(axis=(1, 2, 3), keepdims=True)
        t /= np.linalg.norm(t.reshape(3, -1), axis=1)[:, None, None, None]
        self.register_buffer("templates", torch.from_numpy(t))

    def forward(self, grids: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bxyz,cxyz->bc", grids, self.templates) * 10.0


@dataclasses.dataclass
class VoxelTask(DatasetTask):
    grids: dict  # name -> (grid [16, 16, 16], class index)
    model_spec: str
    num_classes: int = len(CLASSES)
    item_dir: str = "grids"
    what: str = "grid"
    label: str = "certify-vox"

    def item_names(self):
        return list(self.grids)

    def load_model(self, device):
        return load_model(self.model_spec, device=device).model

    def load_item(self, name):
        grid, cls = self.grids[name]
        return Sample(x=torch.from_numpy(grid), target=torch.tensor(cls))

    def base_model(self, model, sample, device):
        def f(batch):  # [B, 16, 16, 16] -> labels [B]
            return labels_from_output(model(batch), batch=batch.shape[0], components=(), num_classes=3,
                                      source=self.model_spec, what="grids")

        return f, sample.x.to(device)

    def result_key(self):
        return {"model": self.model_spec, "grids": sorted(self.grids)}


def load_grids(folder: Path | None) -> dict:
    if folder is None:
        rng = np.random.default_rng(1)
        return {f"{k}-{i}": (make_grid(k, rng), c) for i in range(4) for c, k in enumerate(CLASSES)}
    out = {}
    for p in sorted(Path(folder).glob("*.npy")):
        cls = p.stem.rsplit("_", 1)[-1]
        grid = np.load(p, allow_pickle=False)
        if cls not in CLASSES or grid.shape != (SIZE,) * 3:
            raise InputError(f"{p}: expected <name>_<{'|'.join(CLASSES)}>.npy holding a [16, 16, 16] grid")
        out[p.stem] = (grid.astype(np.float32), CLASSES.index(cls))
    if not out:
        raise InputError(f"{folder}: no .npy grids")
    return out


def run(cfg) -> None:
    settings = cfg.certify_settings()
    task = VoxelTask(grids=load_grids(cfg.data), model_spec=cfg.model)
    run_ = open_run(cfg, resumable=True, result_key={**settings.key(), **task.result_key()})
    metrics = certify_dataset(run_, task, settings, executor=executor_from(cfg))
    run_.finish(metrics)
    print(f"certify-vox: certified accuracy {metrics['certified_accuracy']:.3f} at R = {metrics['radius']:.3f}")
