"""What certify-seg hands to the core runner (:mod:`geocert.pipeline.dataset`): the base model f of SegCertify /
denoised smoothing, and the images as a :class:`~geocert.pipeline.dataset.DatasetTask`.

* :class:`SegPipeline` is f: a batch of noisy images ``[B, C, H, W]`` (intensities in [0, 1] plus noise) →
  optional denoiser → segmentation model → labels ``[B, H, W]``, with the model's output checked against the
  contract (:func:`geocert.pipeline.labels_from_output`: logits ``[B, K, H, W]`` or labels ``[B, H, W]`` in
  ``0..K−1``, finite logits) on every batch, so a model that breaks it only under noise is stopped too.
* :func:`probe_num_classes` runs the segmentation model once on a clean image to learn K (logits) or check
  ``--num-classes`` (labels), before anything is written.
* :class:`SegTask` loads images and masks, builds f on the worker's device, adds per-image scores to each
  ``results.jsonl`` line, writes ``labels/NAME.png`` for each finished image, and pools per-class Dice / IoU /
  % abstain over all pixels. The noise, counting, certificates, curves and plots are the core's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from geocert.errors import GeocertError, ParameterError
from geocert.pipeline.dataset import DatasetTask, Sample, safe_name
from geocert.pipeline.models import ModelError, labels_from_output
from geocert_imageseg.data import convert_channels, load_image, load_mask
from geocert_imageseg.metrics import class_scores

__all__ = ["SegPipeline", "SegTask", "probe_num_classes", "colour_labels", "LABELS_DIR"]

LABELS_DIR = "labels"


class SegPipeline:
    """The base model f: ``[B, C, H, W]`` noisy images → labels ``[B, H, W]`` (see the module docstring).

    ``model_channels`` converts the input (gray ↔ RGB) to the segmentation model's channels (None: as given);
    a denoiser gets its own channel count and σ first. ``calls`` counts the forward passes."""

    def __init__(self, model: Any, *, model_channels: int | None, num_classes: int, sigma: float,
                 denoiser: Any | None = None, source: str = "the segmentation model"):
        self.model, self.model_channels, self.num_classes = model, model_channels, num_classes
        self.sigma, self.denoiser, self.source = sigma, denoiser, source
        self.calls = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        z = batch
        if self.denoiser is not None:
            z = self.denoiser.denoise(convert_channels(z, self.denoiser.in_channels), self.sigma)
        if self.model_channels is not None:
            z = convert_channels(z, self.model_channels)
        out = self.model(z)
        self.calls += 1
        return labels_from_output(out, batch=int(batch.shape[0]), components=tuple(batch.shape[-2:]),
                                  num_classes=self.num_classes, source=self.source, class_axis=1, what="pixels")


def probe_num_classes(model: Any, x: torch.Tensor, *, num_classes: int | None, source: str) -> int:
    """K from one forward pass of ``model`` on the clean image ``x`` ``[C, H, W]``: the channels of logits
    ``[1, K, H, W]``, or ``num_classes`` for a model returning labels ``[1, H, W]`` (then required). The output
    is checked against the contract; every failure is one line naming ``source``."""
    h, w = (int(v) for v in x.shape[-2:])
    try:
        with torch.inference_mode():
            out = model(x.unsqueeze(0))
    except GeocertError:
        raise
    except Exception as exc:
        msg = " ".join(str(exc).split())[:160]
        raise ModelError(f"{source}: the model failed on a [1, {x.shape[0]}, {h}, {w}] image in [0, 1] "
                         f"({type(exc).__name__}: {msg})") from None
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    k = num_classes
    if isinstance(out, torch.Tensor) and out.dtype.is_floating_point and out.dim() == 4:
        if num_classes is not None and num_classes != out.shape[1]:
            raise ParameterError(f"--num-classes {num_classes} differs from the model's {out.shape[1]} output "
                                 "channels")
        k = int(out.shape[1])
    elif isinstance(out, torch.Tensor) and not out.dtype.is_floating_point and out.dim() == 3:
        if num_classes is None:
            raise ParameterError(f"{source}: the model returns labels, not logits: give --num-classes")
    elif k is None:
        k = int(out.shape[1]) if isinstance(out, torch.Tensor) and out.dim() >= 2 else 2
    labels_from_output(out, batch=1, components=(h, w), num_classes=k, source=source, class_axis=1,
                       what="pixels")
    return k


def colour_labels(labels: Any, num_classes: int) -> np.ndarray:
    """``[H, W]`` labels (−1 = abstain) → ``[H, W, 3]`` uint8 with the core's palette (abstain white)."""
    from geocert.io import label_palette

    lab = np.asarray(labels)
    return label_palette(num_classes)[np.where(lab < 0, num_classes, lab)]


@dataclasses.dataclass
class SegTask(DatasetTask):
    """The images of a certify-seg run for :func:`geocert.pipeline.certify_dataset` (picklable: paths and
    settings; the loaded models are cached per process and not pickled)."""

    images: list[tuple[str, str, str | None]]
    """(name, image path, mask path or None) per image; the name is the file stem."""
    model: str
    """The segmentation model: checkpoint / TorchScript path or ``package.module:factory``."""
    sigma: float
    """Noise σ (the denoiser's noise level)."""
    num_classes: int = 0
    """K, resolved with :func:`probe_num_classes` before the run."""
    model_channels: int | None = None
    """Channels the model takes (images are converted before noise is added)."""
    denoiser: str | None = None
    """A denoiser checkpoint or diffusers folder (None: plain SegCertify)."""
    denoise_steps: int = 1
    class_names: list[str] | None = None
    max_pixels: int | None = None
    """The largest image's H·W (checks up front that τ is reachable)."""
    identity: dict = dataclasses.field(default_factory=dict)
    """What identifies the model and denoiser files (the resume key)."""
    what: str = "pixel"
    label: str = "certify-seg"
    item_dir: str = "items"

    def __post_init__(self) -> None:
        self._parts: tuple[str, Any, Any, dict] | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_parts"] = None
        return state

    # ------------------------------------------------------------------ models
    def load_parts(self, device: Any) -> tuple[Any, Any, dict]:
        """(:class:`geocert.pipeline.LoadedModel` of the segmentation model, denoiser or None, denoiser
        description) on ``device``, loaded once per process."""
        from geocert.pipeline.models import load_model
        from geocert_imageseg.denoise import load_denoiser
        from geocert_imageseg.models import load_segmenter

        if self._parts is not None and self._parts[0] == str(device):
            return self._parts[1:]
        loaded = load_model(self.model, device=device, native=load_segmenter)
        den, info = (None, {"kind": "none"}) if self.denoiser is None else load_denoiser(self.denoiser,
                                                                                          steps=self.denoise_steps)
        if den is not None:
            (den.unet if hasattr(den, "unet") else den).to(device)
        self._parts = (str(device), loaded, den, info)
        return loaded, den, info

    def load_model(self, device: Any) -> SegPipeline:
        loaded, den, _ = self.load_parts(device)
        return SegPipeline(loaded.model, model_channels=self.model_channels, num_classes=self.num_classes,
                           sigma=self.sigma, denoiser=den, source=self.model)

    # ------------------------------------------------------------------ items
    def item_names(self) -> list[str]:
        return [name for name, _, _ in self.images]

    def _paths(self, name: str) -> tuple[str, str | None]:
        for n, ip, mp in self.images:
            if n == name:
                return ip, mp
        raise KeyError(name)

    def load_item(self, name: str) -> Sample:
        ip, mp = self._paths(name)
        x = load_image(ip)
        if self.model_channels is not None:
            x = convert_channels(x, self.model_channels)
        target = load_mask(mp, self.num_classes, shape=tuple(x.shape[-2:])) if mp is not None else None
        return Sample(x=x, target=target, data={"image": ip})

    def base_model(self, model: SegPipeline, sample: Sample, device: Any) -> tuple[Any, torch.Tensor]:
        return model, sample.x.to(device)

    def max_components(self) -> int | None:
        return self.max_pixels

    def result_key(self) -> dict:
        return dict(self.identity)

    def item_record(self, name: str, sample: Sample, arrays: dict) -> dict:
        h, w = (int(v) for v in sample.x.shape[-2:])
        rec: dict[str, Any] = {"image": sample.data["image"], "height": h, "width": w}
        if sample.target is not None:
            rec["metrics"] = class_scores(arrays["certified"], arrays["target"], self.num_classes, self.class_names)
        return rec

    def write_item(self, run: Any, name: str, arrays: dict, record: dict) -> None:
        run.save_image(f"{LABELS_DIR}/{safe_name(name)}.png", colour_labels(arrays["certified"], self.num_classes))

    def summarize(self, metrics: dict, records: list[dict], arrays: list[dict]) -> None:
        """Adds ``num_classes``, ``class_names``, ``pooled`` (:func:`class_scores` over every labelled pixel)
        and ``per_image_mean`` (per-class Dice / IoU / % abstain and pixel accuracy averaged over images)."""
        metrics["num_classes"] = self.num_classes
        metrics["class_names"] = self.class_names
        with_gt = [(r, a) for r, a in zip(records, arrays, strict=True) if "metrics" in r]
        if not with_gt:
            return
        pred = np.concatenate([a["certified"].reshape(-1) for _, a in with_gt])
        target = np.concatenate([a["target"].reshape(-1) for _, a in with_gt])
        metrics["pooled"] = class_scores(pred, target, self.num_classes, self.class_names)
        per_image = {}
        for cls in with_gt[0][0]["metrics"]["per_class"]:
            per_image[cls] = {}
            for key in ("dice", "iou", "abstain_pct"):
                vals = [r["metrics"]["per_class"][cls][key] for r, _ in with_gt]
                vals = [v for v in vals if v is not None]
                per_image[cls][key] = float(np.mean(vals)) if vals else None
        metrics["per_image_mean"] = {
            "per_class": per_image,
            "certified_pixel_accuracy": float(np.mean([r["metrics"]["certified_pixel_accuracy"] for r, _ in with_gt])),
        }
