"""Training the built-in base models: the segmentation U-Net (optionally with Gaussian noise augmentation,
the SegCertify base model) and the denoisers (σ-conditioned U-Net, or a small diffusers DDPM); and the
default models certify-seg uses when none is given (trained once on the default data, cached)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from geocert.pipeline.progress import Progress
from geocert_imageseg.data import load_pairs, read_class_names, split_folder
from geocert_imageseg.metrics import class_scores
from geocert_imageseg.models import DENOISER_KIND, SEG_KIND, SegModel, save_checkpoint

__all__ = ["train_segmenter", "train_unet_denoiser", "train_ddpm", "load_split", "evaluate_segmenter",
           "default_segmenter", "default_unet_denoiser", "DEFAULT_EPOCHS", "DEFAULT_DENOISER_EPOCHS"]

DEFAULT_EPOCHS = 15
DEFAULT_DENOISER_EPOCHS = 40


def load_split(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str] | None, Path]:
    """Images ``[N, C, H, W]``, masks ``[N, H, W]``, class names and the split folder."""
    folder = split_folder(root, split)
    names = read_class_names(folder)
    imgs, masks = load_pairs(folder, num_classes=len(names) if names else None)
    return imgs, masks, names, folder


def _batches(n: int, batch_size: int, g: torch.Generator):
    perm = torch.randperm(n, generator=g)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def _optimise(model: torch.nn.Module, batch_loss: Callable[[torch.Tensor], torch.Tensor], *, n: int, epochs: int,
              batch_size: int, lr: float, g: torch.Generator, desc: str, progress: bool, metric: str = "loss",
              digits: int = 4) -> list[float]:
    """Train ``model`` with AdamW and a one-cycle schedule for ``epochs`` passes over ``n`` items in random
    batches (indices drawn from ``g``); ``batch_loss(indices)`` is the mean loss of one batch. Returns the mean
    loss per epoch."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    history: list[float] = []
    model.train()
    with Progress(steps, desc, "steps", disable=not progress) as bar:
        for ep in range(epochs):
            total = 0.0
            for idx in _batches(n, batch_size, g):
                loss = batch_loss(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                bar.update(1)
            history.append(total / n)
            bar.set_postfix_str(f"{metric} {history[-1]:.{digits}f}, epoch {ep + 1}")
    return history


@torch.no_grad()
def evaluate_segmenter(model: torch.nn.Module, imgs: torch.Tensor, masks: torch.Tensor, num_classes: int,
                       sigma: float = 0.0, seed: int = 0, batch_size: int = 16,
                       class_names: list[str] | None = None) -> dict[str, Any]:
    """Plain (uncertified) per-class Dice / IoU of ``model`` on clean (σ = 0) or noisy images ``[N, C, H, W]``
    (noise from a seeded CPU generator), on the model's device."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    preds = []
    model.eval()
    for i in range(0, len(imgs), batch_size):
        x = imgs[i:i + batch_size]
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=g)
        preds.append(model(x.to(device)).argmax(1).cpu())
    return class_scores(torch.cat(preds), masks, num_classes, class_names)


def train_segmenter(root: str | Path, *, noise_sigma: float, epochs: int, batch_size: int = 8, lr: float = 3e-3,
                    width: int = 16, depth: int = 2, seed: int = 0, num_classes: int | None = None,
                    progress: bool = True, device: str | torch.device = "cpu") -> tuple[SegModel, dict[str, Any]]:
    """Train :class:`SegModel` with cross-entropy on ``root``'s train split; each training image gets fresh
    N(0, σ²I) noise when ``noise_sigma > 0``. Returns (model in eval mode on the CPU, meta for the checkpoint)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    imgs, masks, names, _ = load_split(root, "train")
    k = num_classes or (len(names) if names else int(masks.max()) + 1)
    model = SegModel(imgs.shape[1], k, width, depth).to(device)
    # class weights from pixel frequencies (sqrt-inverse): keeps small structures (clavicles) learnable
    freq = torch.bincount(masks.reshape(-1), minlength=k).double().clamp(min=1)
    weight = (freq.sum() / freq).sqrt()
    weight = (weight / weight.mean()).float().to(device)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x = imgs[idx]
        if noise_sigma > 0:  # noise drawn on the CPU generator: the same stream on every device
            x = x + noise_sigma * torch.randn(x.shape, generator=g)
        return F.cross_entropy(model(x.to(device)), masks[idx].to(device), weight=weight)

    t0 = time.perf_counter()
    history = _optimise(model, batch_loss, n=len(imgs), epochs=epochs, batch_size=batch_size, lr=lr, g=g,
                        desc=f"train-seg (σ={noise_sigma})", progress=progress)
    model = model.cpu().eval()
    meta = {"kind": SEG_KIND, "in_channels": int(imgs.shape[1]), "num_classes": k, "width": width, "depth": depth,
            "train_sigma": float(noise_sigma), "class_names": names, "image_size": list(imgs.shape[-2:]),
            "epochs": epochs, "seed": seed, "loss_history": history, "train_s": time.perf_counter() - t0}
    return model, meta


def train_unet_denoiser(root: str | Path, *, sigma_min: float, sigma_max: float, epochs: int, batch_size: int = 8,
                        lr: float = 3e-3, width: int = 16, depth: int = 2, seed: int = 0,
                        progress: bool = True, device: str | torch.device = "cpu"):
    """Train the σ-conditioned :class:`UNetDenoiser` with MSE on the train split, σ ~ U[σ_min, σ_max] per image."""
    from geocert_imageseg.denoise import UNetDenoiser

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    imgs, _, _, _ = load_split(root, "train")
    model = UNetDenoiser(imgs.shape[1], width, depth).to(device)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x = imgs[idx]
        s = sigma_min + (sigma_max - sigma_min) * torch.rand(len(idx), generator=g)
        noisy = x + s.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)
        return F.mse_loss(model(noisy.to(device), s.to(device)), x.to(device))

    t0 = time.perf_counter()
    history = _optimise(model, batch_loss, n=len(imgs), epochs=epochs, batch_size=batch_size, lr=lr, g=g,
                        desc="train-denoiser (unet)", progress=progress, metric="mse", digits=5)
    model = model.cpu().eval()
    meta = {"kind": DENOISER_KIND, "in_channels": int(imgs.shape[1]), "width": width, "depth": depth,
            "sigma_min": sigma_min, "sigma_max": sigma_max, "epochs": epochs, "seed": seed,
            "loss_history": history, "train_s": time.perf_counter() - t0}
    return model, meta


def train_ddpm(root: str | Path, out_dir: str | Path, *, sigma_min: float, sigma_max: float, epochs: int,
               batch_size: int = 8, lr: float = 2e-3, width: int = 16, num_train_timesteps: int = 1000,
               seed: int = 0, progress: bool = True, device: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
    """Train a small diffusers ``UNet2DModel`` (ε-prediction, linear β schedule) and save it with its
    ``DDPMScheduler`` as a diffusers folder (``unet/`` + ``scheduler/``) that ``--denoiser`` loads.

    Timesteps are drawn from [t*(σ_min), t*(σ_max)] only (the range denoised smoothing uses), with images
    in [−1, 1] (σ in [0, 1] units ↔ 2σ)."""
    import diffusers

    from geocert_imageseg.denoise import timestep_for_sigma

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    imgs, _, _, _ = load_split(root, "train")
    c = imgs.shape[1]
    unet = diffusers.UNet2DModel(
        sample_size=int(imgs.shape[-1]), in_channels=c, out_channels=c, layers_per_block=1,
        block_out_channels=(width, 2 * width, 2 * width), norm_num_groups=min(8, width),
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
    ).to(device)
    sched = diffusers.DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="linear",
                                    prediction_type="epsilon")
    abar = sched.alphas_cumprod.to(torch.float32)
    t_lo = timestep_for_sigma(abar, 2 * sigma_min)
    t_hi = timestep_for_sigma(abar, 2 * sigma_max)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        y = 2.0 * imgs[idx] - 1.0
        t = torch.randint(t_lo, t_hi + 1, (len(idx),), generator=g)
        eps = torch.randn(y.shape, generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * y + (1 - a).sqrt() * eps
        return F.mse_loss(unet(x_t.to(device), t.to(device)).sample, eps.to(device))

    t0 = time.perf_counter()
    history = _optimise(unet, batch_loss, n=len(imgs), epochs=epochs, batch_size=batch_size, lr=lr, g=g,
                        desc="train-denoiser (ddpm)", progress=progress, metric="mse")
    unet = unet.cpu().eval()
    out_dir = Path(out_dir)
    unet.save_pretrained(str(out_dir / "unet"))
    sched.save_pretrained(str(out_dir / "scheduler"))
    meta = {"kind": "diffusers-ddpm", "in_channels": c, "width": width, "sigma_min": sigma_min,
            "sigma_max": sigma_max, "timestep_range": [t_lo, t_hi], "epochs": epochs, "seed": seed,
            "loss_history": history, "train_s": time.perf_counter() - t0}
    return out_dir, meta


def _models_dir() -> Path:
    from geocert.pipeline import cache_root

    return cache_root("imageseg", "models")


def default_segmenter(noise_sigma: float = 0.25, progress: bool = True) -> Path:
    """The default base model (U-Net on the default X-ray set, trained with noise σ), trained once and cached."""
    from geocert_imageseg.scenes import default_dataset

    path = _models_dir() / f"seg_xray64_sigma{noise_sigma:g}_e{DEFAULT_EPOCHS}.pt"
    if not path.is_file():
        print(f"training the default segmentation model once (cached at {path}) ...")
        model, meta = train_segmenter(default_dataset("xray"), noise_sigma=noise_sigma, epochs=DEFAULT_EPOCHS,
                                      progress=progress)
        save_checkpoint(path, model, meta)
    return path


def default_unet_denoiser(progress: bool = True) -> Path:
    """The default σ-conditioned U-Net denoiser (σ ∈ [0.1, 1]) on the default X-ray set, cached."""
    from geocert_imageseg.scenes import default_dataset

    path = _models_dir() / f"denoiser_xray64_e{DEFAULT_DENOISER_EPOCHS}.pt"
    if not path.is_file():
        print(f"training the default denoiser once (cached at {path}) ...")
        model, meta = train_unet_denoiser(default_dataset("xray"), sigma_min=0.1, sigma_max=1.0,
                                          epochs=DEFAULT_DENOISER_EPOCHS, progress=progress)
        save_checkpoint(path, model, meta)
    return path
