"""``geocert certify-pc``: per-point certified part segmentation (SegCertify) of one cloud or a dataset split.

This module is the point-cloud half of a dataset certification: which clouds (:class:`PointCloudTask`),
how a model sees them (:mod:`geocert_pointcloud.adapter`), and the per-shape extras (category, part mIoU,
PLY files). The core (:func:`geocert.pipeline.dataset.certify_dataset`) does the sampling, statistics,
resume, pooled metrics and plots, on any executor.

Noise goes on every coordinate (``--mode xyz``, ℓ2 radius R = σ·Φ⁻¹(τ)) or on the rotation angle about the
up axis (``--mode rotation``, angle radius in degrees).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geocert.errors import InputError, ParameterError
from geocert.pipeline.dataset import CertifySettings, DatasetTask, Sample, safe_name
from geocert.pipeline.models import model_identity
from geocert_pointcloud.data import CATEGORIES, CATEGORY_PARTS, NUM_PARTS, Shape, load_shapes
from geocert_pointcloud.evaluate import miou_summary, shape_iou

__all__ = ["PointCloudTask", "run"]


@dataclasses.dataclass
class PointCloudTask(DatasetTask):
    """The clouds of one ``certify-pc`` run and how the model sees them (picklable; the loaded clouds are
    kept in-process and reloaded from their files on other workers)."""

    model_spec: str
    shapes_spec: dict
    """name → (kind, path, category, synset/id name) to reload a cloud on a worker."""
    num_points: int
    seed: int
    mode: str
    normals: bool
    allowed_unknown: tuple[int, ...] | None
    model_sha256: str | None
    data: str
    num_classes: int = NUM_PARTS
    item_dir: str = "shapes"
    what: str = "point"
    label: str = "certify-pc"
    save_ply: bool = True
    normals_used: bool = False
    """Whether the model takes the unperturbed normals (known once it is loaded)."""
    _shapes: dict = dataclasses.field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_shapes"] = {}  # workers reload clouds from their files
        return state

    def item_names(self) -> list[str]:
        return list(self.shapes_spec)

    def max_components(self) -> int:
        return self.num_points

    def result_key(self) -> dict:
        return {"data": self.data, "model": self.model_spec, "model_sha256": self.model_sha256,
                "num_points": self.num_points, "mode": self.mode, "normals": self.normals,
                "shapes_seed": self.seed}

    def load_model(self, device: Any) -> Any:
        from geocert_pointcloud.adapter import load_part_segmenter

        return load_part_segmenter(self.model_spec, device=device, normals=self.normals)

    def shape(self, name: str) -> Shape:
        if name not in self._shapes:
            from geocert_pointcloud.data import ShapeNetPart, load_cloud_file

            kind, path, category, item_name = self.shapes_spec[name]
            if kind == "dataset":
                root, item_path = path
                self._shapes[name] = ShapeNetPart(root).load((category, item_name, Path(item_path)),
                                                             num_points=self.num_points, seed=self.seed)
            else:
                allowed = CATEGORY_PARTS[category] if category is not None else None
                self._shapes[name] = load_cloud_file(path, num_points=self.num_points, seed=self.seed,
                                                     allowed_labels=allowed, category=category)
        return self._shapes[name]

    def load_item(self, name: str) -> Sample:
        s = self.shape(name)
        target = torch.from_numpy(s.labels) if s.labels is not None else None
        return Sample(x=torch.from_numpy(s.points).float(), target=target, data={"shape": s})

    def base_model(self, model: Any, sample: Sample, device: Any):
        from geocert_pointcloud.adapter import make_base_model

        s: Shape = sample.data["shape"]
        points = sample.x.to(device)
        normals = torch.from_numpy(s.normals).float().to(device) if s.normals is not None else None
        return make_base_model(model, points, normals, s.category, self.mode, self.allowed_unknown)

    def item_arrays(self, name: str, sample: Sample) -> dict:
        return {"points": sample.data["shape"].points}

    def item_record(self, name: str, sample: Sample, arrays: dict) -> dict:
        s: Shape = sample.data["shape"]
        rec = {"category": s.category, "source": str(s.source), "num_points": int(len(s.points)),
               "mode": self.mode}
        if s.labels is not None:
            parts = CATEGORY_PARTS[s.category] if s.category else sorted(set(s.labels.tolist()))
            rec["certified_miou"] = shape_iou(arrays["certified"], s.labels, parts)
            rec["smoothed_miou"] = shape_iou(arrays["smoothed"], s.labels, parts)
        return rec

    def item_line(self, record: dict) -> str | None:
        if record.get("certified_accuracy") is None:
            return None
        return (f"  {record['name']} ({record['category']}): certified acc {record['certified_accuracy']:.3f}, "
                f"abstain {record['abstain_rate']:.3f}, {record['sampling_s']:.1f}s sampling")

    def write_item(self, run: Any, name: str, arrays: dict, record: dict) -> None:
        if not self.save_ply:
            return
        from geocert.io import label_palette, write_ply

        palette = label_palette(NUM_PARTS)  # index -1 (abstain) is the last row: white
        write_ply(run.path(f"ply/{safe_name(name)}.ply"), arrays["points"], palette[arrays["certified"]],
                  labels=arrays["certified"])

    def summarize(self, metrics: dict, records: list[dict], arrays: list[dict]) -> None:
        metrics["mode"] = self.mode
        metrics["num_shapes"] = metrics["num_items"]
        metrics["num_points"] = metrics["num_components"]
        metrics["shapes"] = metrics["items"]
        metrics["base_model_inputs"] = "xyz + unperturbed normals" if self.normals_used else "xyz"
        labelled = [r for r in records if r.get("certified_miou") is not None]
        if not labelled:
            return
        cats = [r["category"] for r in labelled]
        metrics["certified"] = miou_summary([r["certified_miou"] for r in labelled], cats)
        metrics["smoothed"] = miou_summary([r["smoothed_miou"] for r in labelled], cats)
        per_cat = {}
        by_name = dict(zip([r["name"] for r in records], arrays, strict=True))
        for c in sorted({c for c in cats if c is not None}, key=CATEGORIES.index):
            sel = [(by_name[r["name"]], r) for r in labelled if r["category"] == c]
            per_cat[c] = {
                "num_shapes": len(sel),
                "certified_accuracy": float(np.mean(np.concatenate([a["certified"] == a["target"] for a, _ in sel]))),
                "abstain_rate": float(np.mean(np.concatenate([a["certified"] == -1 for a, _ in sel]))),
                "certified_miou": float(np.mean([r["certified_miou"] for _, r in sel])),
            }
        metrics["per_category"] = per_cat


def _settings(cfg) -> CertifySettings:
    from geocert.validate import check_sigma

    xyz_sigma = check_sigma(cfg.sigma, "sigma")  # both checked, so a bad value is never silently ignored
    angle_sigma = math.radians(check_sigma(cfg.angle_sigma_deg, "angle-sigma-deg"))
    if cfg.mode == "xyz":
        sigma, scale, unit = xyz_sigma, 1.0, "l2 (unit sphere)"
    else:
        sigma, scale, unit = angle_sigma, 180.0 / math.pi, "degrees"
    return CertifySettings(sigma=sigma, n0=cfg.n0, n=cfg.n, tau=cfg.tau, alpha=cfg.alpha, correction=cfg.correction,
                           k=cfg.k, batch_size=cfg.batch_size, seed=cfg.seed, curve_taus=tuple(cfg.curve_taus),
                           radius_scale=scale, radius_unit=unit).validate()


def run(cfg) -> dict:
    """``geocert certify-pc``: validate everything, then certify shape by shape (resumable)."""
    from geocert.pipeline import certify_dataset, executor_from, open_run, preflight
    from geocert.validate import check_positive_int

    device = preflight(cfg)  # --output, --threads, --device: before anything slow (data, the default model)
    settings = _settings(cfg)
    for name in ("num_points",):
        check_positive_int(getattr(cfg, name), name.replace("_", "-"))
    if cfg.num_shapes < 0:
        raise ParameterError(f"--num-shapes must be >= 0 (0 = all), got {cfg.num_shapes}")
    if cfg.category is not None and cfg.category not in CATEGORIES:
        raise ParameterError(f"--category must be one of {', '.join(CATEGORIES)}, got {cfg.category!r}")
    executor = executor_from(cfg)

    from geocert_pointcloud.scenes import default_dataset

    data = Path(cfg.data) if cfg.data is not None else default_dataset()
    shapes = load_shapes(data, split=cfg.split, num_shapes=cfg.num_shapes, num_points=cfg.num_points,
                         seed=cfg.seed, category=cfg.category)
    names = [s.name for s in shapes]
    if len(set(names)) != len(names):
        raise InputError(f"{data}: duplicate shape names in split {cfg.split!r}")
    if str(cfg.model) == "auto":
        from geocert_pointcloud.default_model import default_checkpoint

        model_spec = str(default_checkpoint())
    else:
        model_spec = str(cfg.model)
    from geocert_pointcloud.adapter import load_part_segmenter

    segmenter = load_part_segmenter(model_spec, device="cpu", normals=cfg.normals)  # validate before any output
    if segmenter.in_channels == 6:
        missing = [s for s in shapes if s.normals is None]
        if missing:
            raise InputError(f"{missing[0].source}: no normals (x y z nx ny nz columns), needed by a normals model")
    allowed_unknown = None
    if segmenter.categories is not None:
        unseen = sorted({s.category for s in shapes if s.category is not None} - set(segmenter.categories))
        if unseen:
            raise ParameterError(f"--model {model_spec}: was not trained on {', '.join(unseen)} (trained on "
                                 f"{', '.join(segmenter.categories)}); choose --category among those or another model")
        trained = [c for c in segmenter.categories if c in CATEGORY_PARTS]
        allowed_unknown = tuple(sorted(p for c in trained for p in CATEGORY_PARTS[c])) or None

    spec = {}
    for s in shapes:
        if data.is_dir():
            spec[s.name] = ("dataset", (str(data), str(s.source)), s.category, s.name)
        else:
            spec[s.name] = ("file", str(s.source), s.category, s.name)
    task = PointCloudTask(model_spec=model_spec, shapes_spec=spec, num_points=cfg.num_points, seed=cfg.seed,
                          mode=cfg.mode, normals=cfg.normals, allowed_unknown=allowed_unknown,
                          model_sha256=model_identity(model_spec), data=str(data), save_ply=cfg.save_ply,
                          _shapes={s.name: s for s in shapes}, normals_used=segmenter.in_channels == 6)
    first = task.load_item(names[0])  # the output contract, checked on the clean first cloud before any output
    f, x = task.base_model(segmenter, first, torch.device("cpu"))
    with torch.inference_mode():
        f(x.unsqueeze(0))
    run_ = open_run(cfg, device=device, resumable=True, result_key={**settings.key(), **task.result_key()},
                    data=str(data), model=model_spec, model_kind="checkpoint" if segmenter.native else "user",
                    checkpoint_sigma=segmenter.meta.get("sigma"))
    metrics = certify_dataset(run_, task, settings, executor=executor)
    if cfg.mode == "rotation":
        metrics["sigma"] = cfg.angle_sigma_deg
    run_.finish(metrics)
    unit = "" if cfg.mode == "xyz" else "°"
    acc = metrics.get("certified_accuracy")
    print(f"certify-pc: {len(shapes)} shapes × {cfg.num_points} points, R = {metrics['radius']:.3f}{unit}: "
          + (f"certified acc {acc:.3f}, " if acc is not None else "")
          + f"abstain {metrics['abstain_rate']:.3f}, sampling {metrics['timings']['sampling_s']:.1f}s, "
          f"statistics {metrics['timings']['statistics_s']:.2f}s → {run_.output}")
    return metrics
