"""Denoisers for denoised smoothing (Salman et al.; Carlini et al.; Laousy et al.).

Input-range convention: certification works on images in **[0, 1]** and σ is in those units. A diffusion
model works in **[−1, 1]** (y = 2x − 1), where the same noise has standard deviation **2σ**. The timestep
t* is the one whose noise-to-signal ratio matches:

    (1 − ᾱ_t*) / ᾱ_t*  ≈  (2σ)²      (nearest t on the scheduler's discrete grid),

the noisy image y + 2δ is scaled by √ᾱ_t* (so it is distributed like x_t* of the forward process), and one
model call predicts the clean image x̂₀ (``steps > 1``: deterministic DDIM (η = 0) over ``steps`` evenly spaced
timesteps from t* down to 0). The output is mapped back to [0, 1] and clamped.

:class:`UNetDenoiser` is the small alternative: a U-Net given the noisy image and a constant σ channel that
predicts the noise, x̂ = x̃ − σ·net(x̃, σ), trained by ``geocert train-denoiser --kind unet`` over a σ range.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from geocert.errors import InputError

__all__ = ["UNetDenoiser", "DiffusionDenoiser", "timestep_for_sigma", "load_diffusion_denoiser", "load_denoiser"]


class UNetDenoiser(nn.Module):
    """σ-conditioned residual denoiser: ``[B, C, H, W]`` noisy images in [0, 1] units → denoised ``[B, C, H, W]``."""

    def __init__(self, in_channels: int, width: int = 16, depth: int = 2):
        super().__init__()
        from geocert_imageseg.models import UNet

        self.in_channels = in_channels
        self.net = UNet(in_channels + 1, in_channels, width, depth)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        s_map = s.expand(x.shape[0], 1, *x.shape[-2:])
        return x - s * self.net(torch.cat([x, s_map], dim=1))

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self(x, sigma)


def timestep_for_sigma(alphas_cumprod: torch.Tensor, sigma: float) -> int:
    """The t* with (1 − ᾱ_t)/ᾱ_t nearest to σ² (σ in the diffusion model's own units).

    Args:
        alphas_cumprod: ``[T]`` ᾱ_t of the scheduler, decreasing in t.
        sigma: noise standard deviation in the model's input units (2σ for [0, 1]-unit σ and a [−1, 1] model).
    """
    a = alphas_cumprod.to(torch.float64)
    ratio = (1.0 - a) / a
    return int(torch.argmin((ratio - float(sigma) ** 2).abs()))


class DiffusionDenoiser:
    """One-step (or DDIM multi-step) denoising with a diffusers ``UNet2DModel`` and its scheduler's ᾱ_t.

    Call ``denoise(x_noisy, sigma)`` with ``x_noisy = x + δ``, ``δ ~ N(0, σ²I)``, x in [0, 1] units, shape
    ``[B, C, H, W]``; returns x̂ ``[B, C, H, W]`` in [0, 1].
    """

    def __init__(self, unet: nn.Module, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon",
                 steps: int = 1):
        if prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise InputError(f"unsupported diffusion prediction_type {prediction_type!r}")
        self.unet = unet.eval()
        self.alphas_cumprod = alphas_cumprod.to(torch.float64)
        self.prediction_type = prediction_type
        self.steps = int(steps)
        cfg = getattr(unet, "config", None)
        self.in_channels = int(getattr(cfg, "in_channels", 3)) if cfg is not None else 3
        self.sample_size = getattr(cfg, "sample_size", None) if cfg is not None else None
        levels = len(getattr(cfg, "block_out_channels", (0,))) if cfg is not None else 1
        self.size_multiple = 2 ** max(levels - 1, 0)

    def timestep(self, sigma: float) -> int:
        """t* for σ in [0, 1] units (the model sees 2σ in [−1, 1])."""
        return timestep_for_sigma(self.alphas_cumprod, 2.0 * sigma)

    def sigma_range(self) -> tuple[float, float]:
        """The σ ([0, 1] units) at the first and last timestep of the schedule."""
        ratio = (1.0 - self.alphas_cumprod) / self.alphas_cumprod
        return float(ratio[0].sqrt()) / 2.0, float(ratio[-1].sqrt()) / 2.0

    def check_sigma(self, sigma: float) -> None:
        """Raise :class:`ParameterError` when σ lies beyond the schedule's noise levels (no t* matches)."""
        from geocert.errors import ParameterError

        lo, hi = self.sigma_range()
        if not lo * 0.5 <= sigma <= hi * 1.05:
            raise ParameterError(f"sigma={sigma} is outside the diffusion schedule's noise range "
                                 f"[{lo:.4g}, {hi:.4g}] ([0, 1] pixel units)")

    def _predict_x0(self, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = float(self.alphas_cumprod[t])
        tt = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        res = self.unet(x_t, tt)
        out = res.sample if hasattr(res, "sample") else res
        if out.shape[1] == 2 * x_t.shape[1]:  # learned-variance models: first half is the mean prediction
            out = out[:, : x_t.shape[1]]
        if self.prediction_type == "epsilon":
            eps = out
            x0 = (x_t - (1.0 - a) ** 0.5 * eps) / a**0.5
        elif self.prediction_type == "sample":
            x0 = out
            eps = (x_t - a**0.5 * x0) / (1.0 - a) ** 0.5
        else:
            x0 = a**0.5 * x_t - (1.0 - a) ** 0.5 * out
            eps = (1.0 - a) ** 0.5 * x_t + a**0.5 * out
        return x0.clamp(-1.0, 1.0), eps

    @torch.no_grad()
    def denoise(self, x_noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        t_star = self.timestep(sigma)
        a = float(self.alphas_cumprod[t_star])
        h, w = x_noisy.shape[-2:]
        ph, pw = (-h) % self.size_multiple, (-w) % self.size_multiple
        if ph or pw:  # the U-Net's down-sampling needs a multiple of 2^(levels-1): pad, denoise, crop
            x_noisy = torch.nn.functional.pad(x_noisy, (0, pw, 0, ph), mode="replicate")
        x_t = a**0.5 * (2.0 * x_noisy - 1.0)
        x0, eps = self._predict_x0(x_t, t_star)
        if self.steps > 1 and t_star > 0:
            ts = torch.linspace(t_star, 0, self.steps + 1).round().long().tolist()
            for t_prev in ts[1:]:
                a_prev = float(self.alphas_cumprod[t_prev])
                x_t = a_prev**0.5 * x0 + (1.0 - a_prev) ** 0.5 * eps  # DDIM, η = 0
                if t_prev == 0:
                    x0, eps = self._predict_x0(x_t, 0)
                    break
                x0, eps = self._predict_x0(x_t, t_prev)
        return ((x0[..., :h, :w] + 1.0) / 2.0).clamp(0.0, 1.0)


def _scheduler_config(folder: Path) -> Path | None:
    for cand in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if cand.is_file():
            return cand
    return None


def load_diffusion_denoiser(folder: str | Path, steps: int = 1) -> DiffusionDenoiser:
    """Load a local diffusers folder offline: a ``UNet2DModel`` (in ``unet/`` or the folder itself) and the
    scheduler config (``scheduler/scheduler_config.json`` or ``scheduler_config.json``), read for ᾱ_t."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: denoiser folder not found")
    unet_dir = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    if not (unet_dir / "config.json").is_file():
        raise InputError(f"{folder}: not a diffusers model folder (no unet/config.json or config.json)")
    sched_path = _scheduler_config(folder)
    if sched_path is None:
        raise InputError(f"{folder}: no scheduler config (expected scheduler/scheduler_config.json)")
    try:
        import diffusers
    except ImportError:
        raise InputError(f"{folder}: loading a diffusion denoiser needs the 'diffusers' package") from None
    # diffusers logs its own errors/warnings while it searches for weight files ("An error occurred while
    # trying to fetch ...", "Defaulting to unsafe serialization"): silence them so a folder that does not
    # load gives exactly the one error line below (which carries the exception's message)
    from diffusers.utils import logging as dlog

    verbosity = dlog.get_verbosity()
    dlog.set_verbosity(dlog.CRITICAL)
    try:
        unet = diffusers.UNet2DModel.from_pretrained(str(unet_dir), local_files_only=True, low_cpu_mem_usage=False)
    except Exception as exc:
        raise InputError(f"{folder}: cannot load a diffusers UNet2DModel ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]})") from None
    finally:
        dlog.set_verbosity(verbosity)
    try:
        cfg = json.loads(sched_path.read_text())
        sched = diffusers.DDPMScheduler.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
        alphas = sched.alphas_cumprod.clone()
        prediction_type = cfg.get("prediction_type", "epsilon")
    except Exception as exc:
        raise InputError(f"{sched_path}: cannot read the scheduler ({type(exc).__name__}: {str(exc)[:120]})") from None
    return DiffusionDenoiser(unet, alphas, prediction_type=prediction_type, steps=steps)


def load_denoiser(spec: str | Path, steps: int = 1):
    """A denoiser from a path: a diffusers folder → :class:`DiffusionDenoiser`, a ``train-denoiser --kind unet``
    checkpoint file → :class:`UNetDenoiser`. Returns (denoiser with ``.denoise(x, σ)`` and ``.in_channels``,
    description dict)."""
    path = Path(spec)
    if path.is_dir():
        den = load_diffusion_denoiser(path, steps=steps)
        return den, {"kind": "diffusion", "path": str(path), "prediction_type": den.prediction_type,
                     "num_train_timesteps": int(den.alphas_cumprod.numel()), "steps": den.steps}
    if not path.exists():
        raise InputError(f"{path}: denoiser not found (give a diffusers folder or a train-denoiser checkpoint)")
    from geocert_imageseg.models import DENOISER_KIND, load_checkpoint

    model, meta = load_checkpoint(path, DENOISER_KIND)
    return model, {"kind": "unet", "path": str(path), **{k: meta.get(k) for k in ("sigma_min", "sigma_max")}}
