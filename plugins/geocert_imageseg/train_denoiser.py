"""``geocert train-denoiser``: train a denoiser for denoised smoothing into a staged run: ``denoiser.pt``
(``--kind unet``) or the diffusers folder ``ddpm/`` (``--kind ddpm``), ``config.json``, ``metrics.json``."""

from __future__ import annotations

from geocert.errors import ParameterError
from geocert_imageseg.config import TrainDenoiserConfig

__all__ = ["run", "DDPM_LEVELS"]

DDPM_LEVELS = 3
"""Resolution levels of the diffusers U-Net ``train_ddpm`` builds (2 down-samplings)."""


def run(cfg: TrainDenoiserConfig) -> dict:
    """Validate, open the run, train, publish."""
    from geocert.pipeline import open_run
    from geocert.validate import check_sigma
    from geocert_imageseg.models import check_unet_options, save_checkpoint
    from geocert_imageseg.scenes import resolve_data
    from geocert_imageseg.train import load_split, train_ddpm, train_unet_denoiser

    smin, smax = check_sigma(cfg.sigma_min, "--sigma-min"), check_sigma(cfg.sigma_max, "--sigma-max")
    if smin > smax:
        raise ParameterError(f"--sigma-min must be <= --sigma-max, got {smin} > {smax}")
    cfg.check_training()
    if cfg.kind == "ddpm" and cfg.width % min(8, cfg.width):
        raise ParameterError(f"--width {cfg.width}: a ddpm denoiser needs a multiple of 8 (or a width below 8: its "
                             "group norm splits the channels into groups of equal size)")
    run_ = open_run(cfg)
    root = resolve_data(cfg.data)
    imgs, _, _, _ = load_split(root, "train")  # validates every training pair before training
    c = int(imgs.shape[1])
    # the unet denoiser is the plugin's U-Net (depth 2) on C + 1 channels; the ddpm halves the image twice too
    check_unet_options(width=cfg.width, depth=DDPM_LEVELS - 1, image_size=tuple(imgs.shape[-2:]), in_channels=c + 1,
                       out_channels=c)
    common = dict(sigma_min=smin, sigma_max=smax, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                  width=cfg.width, seed=cfg.seed, progress=cfg.progress, device=run_.device)
    if cfg.kind == "unet":
        model, meta = train_unet_denoiser(root, **common)
        save_checkpoint(run_.path("denoiser.pt"), model, meta)
        target = "denoiser.pt"
    else:
        _, meta = train_ddpm(root, run_.path("ddpm"), **common)
        target = "ddpm"
    metrics = {"train_s": meta["train_s"], "loss_history": meta["loss_history"], "data": str(root)}
    out = run_.finish(metrics)
    print(f"wrote {out / target} (trained {meta['train_s']:.1f} s, final loss {meta['loss_history'][-1]:.5f})")
    return metrics
