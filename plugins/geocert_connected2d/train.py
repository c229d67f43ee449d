"""Joint training of the connected segmenter and its teacher from scribbles, with the paper's loss schedule.

Loss per batch (ŷ = scribble label, only on scribbled pixels; y = model probability, y_t = teacher
probability):

- epochs [0, round_after):           BCE(y_t, ŷ) + BCE(y, ŷ)
- epochs [round_after, soft_after):  + MSE(y, round(y_t))     (on every pixel of the batch)
- epochs [soft_after, ∞):            + MSE(y, y_t)            (replaces the rounded term)

The teacher is detached inside the MSE terms (the model follows the teacher, not the other way round).
Without a teacher only BCE(y, ŷ) on the scribbles is used. Each epoch visits every scribbled pixel once plus
``random_points`` pixels drawn uniformly from the whole image (unlabelled ones only contribute through the
teacher terms), shuffled into batches of ``batch_size``. Adam, constant learning rate; after each step the
FICNN's z-path weights are projected to ≥ 0.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F

from .data import FOREGROUND, UNLABELLED, pixel_positions
from .model import FICNN, ConnectedSegmenter, SquareFlow, TeacherMLP

__all__ = ["TrainSettings", "TrainResult", "train_segmenter", "build_model", "teacher_features"]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Everything training needs (the CLI config maps onto this)."""

    use_flow: bool = True
    use_teacher: bool = True
    epochs: int = 300
    batch_size: int = 1500
    lr: float = 1e-4
    random_points: int = 1200
    round_after: int = 30
    soft_after: int = 200
    flow_layers: int = 6
    flow_bins: int = 8
    flow_hidden: int = 64
    ficnn_hidden: int = 64
    ficnn_layers: int = 2
    activation: str = "relu"
    teacher_hidden: int = 130
    teacher_features: str = "rgbxy"
    seed: int = 0


@dataclasses.dataclass
class TrainResult:
    model: ConnectedSegmenter
    teacher: TeacherMLP | None
    history: list[dict]
    train_s: float


def teacher_features(image: np.ndarray, which: str) -> torch.Tensor:
    """Per-pixel teacher inputs ``[H * W, F]`` float64 in [-1, 1]: colour and/or position."""
    H, W = image.shape[:2]
    parts = []
    if "rgb" in which:
        parts.append(image.reshape(-1, 3))
    if "xy" in which:
        parts.append(pixel_positions(H, W))
    if not parts:
        raise ValueError(f"teacher_features must contain rgb and/or xy, got {which!r}")
    return torch.from_numpy(np.concatenate(parts, axis=1) * 2.0 - 1.0).to(torch.float64)


def build_model(s: TrainSettings) -> ConnectedSegmenter:
    flow = SquareFlow(s.flow_layers, s.flow_bins, s.flow_hidden) if s.use_flow else None
    return ConnectedSegmenter(FICNN(2, s.ficnn_hidden, s.ficnn_layers, s.activation), flow).to(torch.float64)


def train_segmenter(image: np.ndarray, scribbles: np.ndarray, s: TrainSettings, *,
                    progress: bool = False) -> TrainResult:
    """Train on ``image [H, W, 3]`` (float in [0, 1]) and ``scribbles [H, W]`` (1 fg, 0 bg, -1 none)."""
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    H, W = scribbles.shape
    xy = torch.from_numpy(pixel_positions(H, W)).to(torch.float64)
    lab = torch.from_numpy(scribbles.reshape(-1).astype(np.int64))
    labelled = torch.nonzero(lab != UNLABELLED)[:, 0]
    target = (lab == FOREGROUND).to(torch.float64)
    model = build_model(s)
    teacher = None
    params = list(model.parameters())
    if s.use_teacher:
        feats = teacher_features(image, s.teacher_features)
        teacher = TeacherMLP(feats.shape[1], s.teacher_hidden).to(torch.float64)
        params += list(teacher.parameters())
    opt = torch.optim.Adam(params, lr=s.lr)
    history: list[dict] = []
    t0 = time.perf_counter()
    epochs = range(s.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="train", unit="epoch", leave=False)
    for epoch in epochs:
        extra = torch.randint(0, H * W, (s.random_points,), generator=gen) if s.use_teacher else labelled[:0]
        idx = torch.cat([labelled, extra])
        idx = idx[torch.randperm(len(idx), generator=gen)]
        total, count = 0.0, 0
        for start in range(0, len(idx), s.batch_size):
            b = idx[start:start + s.batch_size]
            lab_b = lab[b] != UNLABELLED
            logit = model(xy[b])
            loss = logit.new_zeros(())
            if lab_b.any():
                loss = loss + F.binary_cross_entropy_with_logits(logit[lab_b], target[b][lab_b])
            if teacher is not None:
                t_logit = teacher(feats[b])
                if lab_b.any():
                    loss = loss + F.binary_cross_entropy_with_logits(t_logit[lab_b], target[b][lab_b])
                if epoch >= s.round_after:
                    y, yt = torch.sigmoid(logit), torch.sigmoid(t_logit).detach()
                    loss = loss + F.mse_loss(y, yt if epoch >= s.soft_after else torch.round(yt))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.project()
            total += float(loss.detach()) * len(b)
            count += len(b)
        history.append({"epoch": epoch, "loss": total / max(count, 1)})
    return TrainResult(model, teacher, history, time.perf_counter() - t0)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, inputs: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Logits of ``model`` over ``inputs [P, F]`` in chunks."""
    return torch.cat([model(inputs[i:i + chunk]) for i in range(0, len(inputs), chunk)])
