"""SegCertify vs denoised smoothing on the synthetic chest X-ray set (Laousy et al., Table 2, reproduced small).

    python tools/imageseg_compare.py                      # defaults: 64x64 images, 64 train / 4 test, n=100
    python tools/imageseg_compare.py --denoiser unet      # the σ-conditioned U-Net denoiser instead of a DDPM
    python tools/imageseg_compare.py --denoiser PATH      # a local diffusers folder or train-denoiser checkpoint

* SegCertify: the U-Net trained with Gaussian noise σ_train = 0.25 (as in the paper: one noisy model for all σ),
  certified directly.
* Denoised smoothing: the U-Net trained without noise, behind a denoiser (default: a small diffusers DDPM
  trained on the same clean images for 40 epochs on the timesteps of σ ∈ [0.1, 1], denoising in one step from
  t*; ``--denoiser unet``: the σ-conditioned U-Net denoiser).

Both are certified per pixel with n0 = 10, n = 100, τ = 0.75, α = 0.001, Holm (the paper's settings) at
σ ∈ {0.25, 0.5, 1.0} (noise std on intensities in [0, 1]), each image with the noise seed certify-seg gives it
(:func:`geocert.pipeline.item_seed` of the run seed and the file stem), through the core's
:func:`geocert.certify.certify`. Dice / IoU are over non-abstained pixels, pooled over the test images; % abstain
is the share of each class's pixels abstained. Trained models are cached in the output folder. Runs in a few
minutes on 2 CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="image size (pixels)")
    ap.add_argument("--num-train", type=int, default=64)
    ap.add_argument("--num-test", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=15, help="segmentation model epochs")
    ap.add_argument("--denoiser-epochs", type=int, default=40)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--train-sigma", type=float, default=0.25, help="noise σ of the SegCertify model")
    ap.add_argument("--n0", type=int, default=10)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--tau", type=float, default=0.75)
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--denoiser", default="ddpm", help="'unet', 'ddpm', or a path (diffusers folder / checkpoint)")
    ap.add_argument("--denoise-steps", type=int, default=1, help="diffusion steps from t* (1 = one-step, as the paper)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", type=Path, default=Path("outputs/imageseg_compare"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from geocert_imageseg.adapter import SegPipeline
    from geocert_imageseg.data import find_pairs
    from geocert_imageseg.denoise import load_denoiser
    from geocert_imageseg.metrics import class_scores
    from geocert_imageseg.models import SEG_KIND, load_checkpoint, save_checkpoint
    from geocert_imageseg.scenes import make_dataset
    from geocert_imageseg.train import load_split, train_ddpm, train_segmenter, train_unet_denoiser

    from geocert.certify import certify
    from geocert.io import write_json
    from geocert.pipeline import item_seed

    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = out / f"xray_{args.size}px_{args.num_train}+{args.num_test}_seed{args.seed}"
    if not (data / "classes.json").is_file():
        make_dataset(data, kind="xray", num_train=args.num_train, num_test=args.num_test, size=args.size,
                     seed=args.seed)

    def seg_model(sigma: float):
        path = out / f"seg_sigma{sigma:g}_e{args.epochs}.pt"
        if not path.is_file():
            model, meta = train_segmenter(data, noise_sigma=sigma, epochs=args.epochs, seed=args.seed)
            save_checkpoint(path, model, meta)
        return load_checkpoint(path, SEG_KIND)

    noisy_model, noisy_meta = seg_model(args.train_sigma)
    clean_model, clean_meta = seg_model(0.0)
    if args.denoiser == "unet":
        den_path = out / f"denoiser_unet_e{args.denoiser_epochs}.pt"
        if not den_path.is_file():
            model, meta = train_unet_denoiser(data, sigma_min=0.1, sigma_max=1.0, epochs=args.denoiser_epochs,
                                              seed=args.seed)
            save_checkpoint(den_path, model, meta)
    elif args.denoiser == "ddpm":
        den_path = out / f"denoiser_ddpm_e{args.denoiser_epochs}"
        if not (den_path / "unet" / "config.json").is_file():
            train_ddpm(data, den_path, sigma_min=0.1, sigma_max=1.0, epochs=args.denoiser_epochs, seed=args.seed)
    else:
        den_path = Path(args.denoiser)
    denoiser, den_info = load_denoiser(den_path, steps=args.denoise_steps)
    t_trained = time.perf_counter()

    imgs, masks, names, folder = load_split(data, "test")
    stems = [ip.stem for ip, _ in find_pairs(folder)]
    k = noisy_meta["num_classes"]
    rows = []
    for sigma in args.sigmas:
        for method, model, meta, den in (("SegCertify", noisy_model, noisy_meta, None),
                                         ("denoised", clean_model, clean_meta, denoiser)):
            f = SegPipeline(model, model_channels=meta["in_channels"], num_classes=k, sigma=sigma, denoiser=den)
            labels = []
            for i, stem in enumerate(stems):
                g = torch.Generator().manual_seed(item_seed(args.seed, stem))
                cert = certify(f, imgs[i], num_classes=k, sigma=sigma, n0=args.n0, n=args.n, tau=args.tau,
                               alpha=args.alpha, correction="holm", k=1, batch_size=20, generator=g)
                labels.append(cert.labels)
            summ = class_scores(torch.stack(labels), masks, k, names)
            rows.append({"method": method, "sigma": sigma, "radius": cert.radius, **summ})
            print(f"done {method} σ={sigma}", file=sys.stderr)
    t_end = time.perf_counter()

    classes = [c for c in (names or [])[1:]] or list(rows[0]["per_class"])[1:]
    head = f"| method | σ | R | {' | '.join(f'{c} Dice | {c} IoU | {c} %∅' for c in classes)} | pixel acc |"
    lines = [head, "|" + "---|" * (4 + 3 * len(classes))]
    for r in rows:
        cells = []
        for c in classes:
            pc = r["per_class"][c]
            cells += ["n/a" if pc["dice"] is None else f"{pc['dice']:.3f}", "n/a" if pc["iou"] is None else
                      f"{pc['iou']:.3f}", f"{pc['abstain_pct']:.1f}"]
        lines.append(f"| {r['method']} | {r['sigma']:g} | {r['radius']:.3f} | {' | '.join(cells)} | "
                     f"{r['certified_pixel_accuracy']:.3f} |")
    table = "\n".join(lines)
    print(table)
    summary = {"rows": rows, "table_markdown": table, "denoiser": den_info, "settings": vars(args) | {
        "output": str(out)}, "train_s": t_trained - t_start, "certify_s": t_end - t_trained,
        "final_train_loss": {"segcertify": noisy_meta["loss_history"][-1], "clean": clean_meta["loss_history"][-1]}}
    write_json(out / "compare.json", summary)
    _plot(out / "compare.png", rows, classes)
    (out / "compare.md").write_text(table + "\n")
    print(f"train {t_trained - t_start:.0f} s, certify {t_end - t_trained:.0f} s; wrote {out / 'compare.json'}, "
          f"compare.md and compare.png")
    lung = next((r["per_class"].get("lungs", {}).get("dice") for r in rows
                 if r["method"] == "SegCertify" and abs(r["sigma"] - 0.25) < 1e-9), None)
    if lung is not None:
        print(f"lung certified Dice at σ=0.25 (SegCertify): {lung:.3f} (bar: >= 0.85)")
    return 0


def _plot(path: Path, rows: list[dict], classes: list[str]) -> None:
    """Certified pixel accuracy and per-class % abstain against σ, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(classes), figsize=(3.2 * (1 + len(classes)), 3), dpi=110)
    for method, style in (("SegCertify", "o-"), ("denoised", "s--")):
        rs = [r for r in rows if r["method"] == method]
        sig = [r["sigma"] for r in rs]
        axes[0].plot(sig, [r["certified_pixel_accuracy"] for r in rs], style, label=method)
        for ax, c in zip(axes[1:], classes, strict=True):
            ax.plot(sig, [r["per_class"][c]["abstain_pct"] for r in rs], style, label=method)
    axes[0].set_title("certified pixel accuracy", fontsize=9)
    axes[0].set_ylim(0, 1.02)
    for ax, c in zip(axes[1:], classes, strict=True):
        ax.set_title(f"{c}: % abstain", fontsize=9)
        ax.set_ylim(0, 102)
    for ax in axes:
        ax.set_xlabel("σ (noise std on intensities in [0, 1])")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
