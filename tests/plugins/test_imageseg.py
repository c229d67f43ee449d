"""Tests of the imageseg plugin: data, loaders and their errors, metrics, denoisers (t* mapping, denoising,
diffusers folder loading) and the certify-seg / train-seg / train-denoiser commands end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from geocert_imageseg import scenes
from geocert_imageseg.data import convert_channels, load_image, load_mask
from geocert_imageseg.denoise import (
    DiffusionDenoiser,
    UNetDenoiser,
    load_diffusion_denoiser,
    timestep_for_sigma,
)
from geocert_imageseg.metrics import class_scores
from geocert_imageseg.models import SEG_KIND, SegModel, load_checkpoint, save_checkpoint

from geocert.cli import main as cli_main
from geocert.errors import InputError, ParameterError
from geocert.pipeline.models import ModelError

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return scenes.make_dataset(tmp_path_factory.mktemp("is") / "xray", kind="xray", num_train=12, num_test=2,
                               size=32, seed=3)


@pytest.fixture(scope="module")
def tiny_model(tiny_data) -> Path:
    from geocert_imageseg.train import train_segmenter

    model, meta = train_segmenter(tiny_data, noise_sigma=0.25, epochs=40, batch_size=4, width=8, lr=1e-2,
                                  progress=False)
    return save_checkpoint(tiny_data.parent / "model.pt", model, meta)


# ---------------------------------------------------------------------------------------------- data


def test_scenes_deterministic_layout_and_classes(tmp_path):
    a = scenes.make_dataset(tmp_path / "a", kind="xray", num_train=2, num_test=1, size=48, seed=7)
    b = scenes.make_dataset(tmp_path / "b", kind="xray", num_train=2, num_test=1, size=48, seed=7)
    for split, count in (("train", 2), ("test", 1)):
        files = sorted((a / split / "images").iterdir())
        assert len(files) == count
        for f in files:
            assert f.read_bytes() == (b / split / "images" / f.name).read_bytes()
            assert (a / split / "masks" / f.name).is_file()
    meta = json.loads((a / "classes.json").read_text())
    assert meta["names"] == ["background", "lungs", "heart", "clavicles"]
    mask = load_mask(a / "train" / "masks" / "xray_train_0000.png", 4, shape=(48, 48))
    assert set(torch.unique(mask).tolist()) == {0, 1, 2, 3}
    img = load_image(a / "train" / "images" / "xray_train_0000.png")
    assert img.shape == (1, 48, 48) and 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    # lungs are darker than the heart (air vs soft tissue), as on a real radiograph
    assert img[0][mask == 1].mean() < img[0][mask == 2].mean() - 0.2


@pytest.mark.parametrize("kind, channels, classes", [("skin", 3, {0, 1}), ("coins", 1, {0, 1})])
def test_other_scene_kinds(tmp_path, kind, channels, classes):
    root = scenes.make_dataset(tmp_path / kind, kind=kind, num_train=1, num_test=1, size=40, seed=1)
    img = load_image(root / "train" / "images" / f"{kind}_train_0000.png")
    mask = load_mask(root / "train" / "masks" / f"{kind}_train_0000.png", 2, shape=(40, 40))
    assert img.shape == (channels, 40, 40)
    assert set(torch.unique(mask).tolist()) == classes
    assert 0.02 < float(mask.float().mean()) < 0.9


def test_loader_errors(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "img.png", np.zeros((8, 10), np.uint8))
    iio.imwrite(tmp_path / "mask.png", np.zeros((8, 9), np.uint8))
    with pytest.raises(InputError, match=r"mask\.png: mask size 8x9 does not match the image size 8x10"):
        load_mask(tmp_path / "mask.png", 4, shape=tuple(load_image(tmp_path / "img.png").shape[-2:]))
    bad = np.zeros((8, 10), np.uint8)
    bad[0, 0], bad[1, 1] = 7, 9
    iio.imwrite(tmp_path / "bad.png", bad)
    with pytest.raises(InputError, match=r"bad\.png: unknown class label\(s\) 7, 9"):
        load_mask(tmp_path / "bad.png", 4)
    arr = np.full((8, 10), 0.5, np.float32)
    arr[2, 3] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    with pytest.raises(InputError, match=r"nan\.npy: 1 non-finite pixel\(s\) \(first at row 2, column 3\)"):
        load_image(tmp_path / "nan.npy")
    np.save(tmp_path / "big.npy", np.full((8, 10), 3.0, np.float32))
    with pytest.raises(InputError, match=r"must lie in \[0, 1\]"):
        load_image(tmp_path / "big.npy")
    iio.imwrite(tmp_path / "rgbmask.png", np.random.default_rng(0).integers(0, 3, (8, 10, 3)).astype(np.uint8))
    with pytest.raises(InputError, match="single channel"):
        load_mask(tmp_path / "rgbmask.png", 4)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"broken\.png: cannot read image"):
        load_image(tmp_path / "broken.png")


def test_convert_channels_roundtrip():
    g = torch.rand(2, 1, 5, 6)
    rgb = convert_channels(g, 3)
    assert rgb.shape == (2, 3, 5, 6)
    torch.testing.assert_close(convert_channels(rgb, 1), g)


# ---------------------------------------------------------------------------------------------- metrics


def _class_abstain_reference(pred, target, num_classes):
    """Loop twin of the per-class % abstain and pixel counts of :func:`class_scores`."""
    total, abstained = [0] * num_classes, [0] * num_classes
    for pv, tv in zip(pred.reshape(-1).tolist(), target.reshape(-1).tolist(), strict=True):
        total[tv] += 1
        abstained[tv] += pv < 0
    return [100.0 * a / t if t else None for a, t in zip(abstained, total, strict=True)], total


def test_class_scores_match_reference_and_known_dice():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (17, 13), generator=gen)
    pred = torch.randint(-1, 3, (17, 13), generator=gen)
    fast = class_scores(pred, target, 3)
    pct, total = _class_abstain_reference(pred, target, 3)
    for c in range(3):
        assert fast["per_class"][f"class_{c}"]["abstain_pct"] == pytest.approx(pct[c])
        assert fast["per_class"][f"class_{c}"]["pixels"] == total[c]
    assert fast["pixels"] == 17 * 13
    # hand-computed: 4 pixels, class 1 predicted on 2 (1 right), one abstained
    t = torch.tensor([1, 1, 0, 0])
    p = torch.tensor([1, -1, 1, 0])
    s = class_scores(p, t, 2, ["bg", "fg"])
    assert s["per_class"]["fg"]["dice"] == pytest.approx(2 * 1 / (2 + 1))  # abstained fg pixel ignored
    assert s["per_class"]["fg"]["iou"] == pytest.approx(1 / 2)
    assert s["per_class"]["fg"]["abstain_pct"] == pytest.approx(50.0)
    assert s["certified_pixel_accuracy"] == pytest.approx(2 / 4)  # abstain counted wrong
    assert s["abstain_pct"] == pytest.approx(25.0)
    # a class absent from prediction and target is undefined (None), left out of the means
    s3 = class_scores(p, t, 3)
    assert s3["per_class"]["class_2"] == {"dice": None, "iou": None, "abstain_pct": None, "pixels": 0}
    assert s3["mean_dice"] == pytest.approx(s["mean_dice"])


def test_metrics_agree_with_core_segmentation_metrics():
    from geocert.metrics import segmentation_metrics

    gen = torch.Generator().manual_seed(2)
    target = torch.randint(0, 4, (40, 30), generator=gen)
    pred = torch.where(torch.rand(40, 30, generator=gen) < 0.7, target, torch.randint(-1, 4, (40, 30), generator=gen))
    core = segmentation_metrics(pred, target, 4)
    ours = class_scores(pred, target, 4)
    assert ours["certified_pixel_accuracy"] == pytest.approx(core["certified_accuracy"])
    assert ours["abstain_pct"] == pytest.approx(100 * core["abstain_rate"])
    for c in range(4):
        assert ours["per_class"][f"class_{c}"]["dice"] == pytest.approx(core["dice_per_class"][c])
        assert ours["per_class"][f"class_{c}"]["iou"] == pytest.approx(core["iou_per_class"][c])
    assert ours["mean_dice"] == pytest.approx(core["mean_dice"]) and ours["mean_iou"] == pytest.approx(core["miou"])


# ---------------------------------------------------------------------------------------------- denoisers


def _linear_alphas(t: int = 1000) -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, t, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def test_timestep_mapping_matches_formula():
    abar = _linear_alphas()
    ratio = (1 - abar) / abar
    for sigma in (0.12, 0.25, 0.5, 1.0):
        t = timestep_for_sigma(abar, 2 * sigma)
        # t* is the grid point nearest to σ² = (1 − ᾱ)/ᾱ in the [−1, 1] convention (2σ)
        assert t == int(torch.argmin((ratio - (2 * sigma) ** 2).abs()))
        assert abs(float(ratio[t]) - 4 * sigma**2) <= float((ratio[t + 1] - ratio[t - 1]).abs())
    ts = [timestep_for_sigma(abar, 2 * s) for s in (0.1, 0.25, 0.5, 1.0)]
    assert ts == sorted(ts) and len(set(ts)) == 4
    den = DiffusionDenoiser(torch.nn.Identity(), abar.float())
    assert den.timestep(0.5) == timestep_for_sigma(abar, 1.0)


class _OracleEps(torch.nn.Module):
    """An ε-predictor that knows the clean image y ∈ [−1, 1]: ε = (x_t − √ᾱ_t y)/√(1 − ᾱ_t)."""

    def __init__(self, clean01: torch.Tensor, abar: torch.Tensor):
        super().__init__()
        self.y, self.abar = 2 * clean01 - 1, abar

    def forward(self, x_t, t):
        a = self.abar[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return (x_t - a.sqrt() * self.y) / (1 - a).sqrt()


@pytest.mark.parametrize("steps", [1, 4])
def test_diffusion_denoiser_scaling_with_oracle(steps):
    """With an exact ε-predictor, one-step (and DDIM multi-step) denoising returns the clean image: this
    checks the [0, 1] → [−1, 1] map, the √ᾱ_t* scaling and the x̂₀ formula together."""
    abar = _linear_alphas().float()
    gen = torch.Generator().manual_seed(1)
    clean = torch.rand(3, 1, 8, 8, generator=gen) * 0.8 + 0.1
    noisy = clean + 0.5 * torch.randn(clean.shape, generator=gen)
    den = DiffusionDenoiser(_OracleEps(clean, abar), abar, steps=steps)
    torch.testing.assert_close(den.denoise(noisy, 0.5), clean, atol=2e-4, rtol=0)


def test_trained_denoisers_reduce_error(tiny_data):
    from geocert_imageseg.train import load_split, train_ddpm, train_unet_denoiser

    imgs, _, _, _ = load_split(tiny_data, "test")
    gen = torch.Generator().manual_seed(5)
    sigma = 0.5
    noisy = imgs + sigma * torch.randn(imgs.shape, generator=gen)
    err_noisy = float(((noisy - imgs) ** 2).mean())
    unet, _ = train_unet_denoiser(tiny_data, sigma_min=0.3, sigma_max=0.7, epochs=8, batch_size=4, width=8,
                                  progress=False)
    with torch.no_grad():
        err_unet = float(((unet(noisy, sigma) - imgs) ** 2).mean())
    assert err_unet < 0.5 * err_noisy
    folder, _ = train_ddpm(tiny_data, tiny_data.parent / "ddpm", sigma_min=0.3, sigma_max=0.7, epochs=8,
                           batch_size=4, width=8, progress=False)
    den = load_diffusion_denoiser(folder)
    err_ddpm = float(((den.denoise(noisy, sigma) - imgs) ** 2).mean())
    assert err_ddpm < 0.5 * err_noisy


def test_diffusers_folder_loading(tmp_path):
    import diffusers

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 8), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    sched = diffusers.DDPMScheduler(num_train_timesteps=200, beta_schedule="linear")
    unet.save_pretrained(str(tmp_path / "ckpt" / "unet"))
    sched.save_pretrained(str(tmp_path / "ckpt" / "scheduler"))
    den = load_diffusion_denoiser(tmp_path / "ckpt")
    assert den.alphas_cumprod.numel() == 200 and den.in_channels == 1
    x = torch.rand(2, 1, 16, 16)
    ref = DiffusionDenoiser(unet, sched.alphas_cumprod).denoise(x, 0.3)
    torch.testing.assert_close(den.denoise(x, 0.3), ref)
    odd = den.denoise(torch.rand(1, 1, 15, 13), 0.3)  # padded to the U-Net's multiple, cropped back
    assert odd.shape == (1, 1, 15, 13) and float(odd.min()) >= 0 and float(odd.max()) <= 1
    with pytest.raises(ParameterError, match="outside the diffusion schedule's noise range"):
        den.check_sigma(500.0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: not a diffusers model folder"):
        load_diffusion_denoiser(tmp_path / "empty")
    (tmp_path / "ckpt" / "unet" / "config.json").write_text("{ broken")
    with pytest.raises(InputError, match="ckpt: cannot load a diffusers UNet2DModel"):
        load_diffusion_denoiser(tmp_path / "ckpt")


def test_unet_denoiser_checkpoint_roundtrip(tmp_path):
    from geocert_imageseg.models import DENOISER_KIND

    torch.manual_seed(0)
    den = UNetDenoiser(1, width=8).eval()
    save_checkpoint(tmp_path / "d.pt", den, {"kind": DENOISER_KIND, "in_channels": 1, "width": 8, "depth": 2})
    back, _ = load_checkpoint(tmp_path / "d.pt", DENOISER_KIND)
    x = torch.rand(2, 1, 12, 12)
    torch.testing.assert_close(back(x, 0.3), den(x, 0.3))
    with pytest.raises(InputError, match="expected 'geocert-imageseg-unet-seg'"):
        load_checkpoint(tmp_path / "d.pt", SEG_KIND)


def test_pipeline_labels_match_plain_argmax():
    from geocert_imageseg.adapter import SegPipeline

    from geocert.pipeline.models import timed

    torch.manual_seed(0)
    model = SegModel(1, 5, width=8).eval()
    f = SegPipeline(model, model_channels=1, num_classes=5, sigma=0.1)
    ft = timed(f)
    batch = torch.rand(3, 1, 20, 24)
    with torch.no_grad():
        assert torch.equal(ft(batch), model(batch).argmax(1))
        rgb = SegPipeline(model, model_channels=1, num_classes=5, sigma=0.1)(convert_channels(batch, 3))
        assert float((rgb == ft(batch)).float().mean()) > 0.99  # RGB → luminance equals the gray input (up to rounding)
    assert f.calls == 2 and ft.seconds > 0


def test_certify_with_known_pixel_probabilities():
    """Base model with known per-pixel probabilities: label 1 iff the pixel's noise exceeds a threshold.
    Left half: P(1) = 0.5 (must abstain at τ = 0.75); right half: P(1) = 0.99 (certified as 1)."""
    from geocert_imageseg.adapter import SegPipeline
    from scipy.stats import norm

    from geocert.certify import certify, certify_from_counts
    from geocert.pipeline.models import timed
    from geocert.smoothing import sample_counts

    sigma = 0.5
    thr = torch.zeros(1, 8, 16)
    thr[..., 8:] = -sigma * norm.ppf(0.99)

    class Threshold(torch.nn.Module):
        def forward(self, z):
            return torch.stack([torch.zeros_like(z[:, 0]), (z[:, 0] > thr[0]).float()], dim=1)

    f = SegPipeline(Threshold(), model_channels=1, num_classes=2, sigma=sigma)
    ft = timed(f)
    x = torch.zeros(1, 8, 16)
    cert = certify(ft, x, num_classes=2, sigma=sigma, n0=10, n=100, tau=0.75, alpha=0.01, correction="holm", k=1,
                   batch_size=32, generator=torch.Generator().manual_seed(0))
    assert cert.n == 100 and cert.n0 == 10 and f.calls == 1 + 4  # ceil(10/32) + ceil(100/32) batches
    assert bool(cert.abstain[:, :8].all())
    assert float((cert.labels[:, 8:] == 1).float().mean()) > 0.9
    assert 0 < ft.seconds <= cert.timings["total_s"]
    g = torch.Generator().manual_seed(0)  # the same counts again: the statistics alone give the same labels
    c0 = sample_counts(f, x, sigma=sigma, n=10, num_classes=2, batch_size=32, generator=g)
    c1 = sample_counts(f, x, sigma=sigma, n=100, num_classes=2, batch_size=32, generator=g)
    again = certify_from_counts(c0, c1, sigma=sigma, tau=0.75, alpha=0.01, correction="holm", k=1, n0=10)
    assert torch.equal(again.labels, cert.labels)


# ---------------------------------------------------------------------------------------------- commands


def _run(*argv) -> int:
    return cli_main([str(a) for a in argv])


def test_certify_seg_single_image_outputs(tiny_data, tiny_model, tmp_path):
    import imageio.v3 as iio

    img = tiny_data / "test" / "images" / "xray_test_0000.png"
    mask = tiny_data / "test" / "masks" / "xray_test_0000.png"
    out = tmp_path / "single"
    assert _run("certify-seg", img, "--mask", mask, "--model", tiny_model, "--n", 40, "--n0", 5, "--tau", 0.6,
                "--alpha", 0.01, "--output", out, "--no-progress") == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["per_class"]) == {"background", "lungs", "heart", "clavicles"}
    assert m["radius"] == pytest.approx(0.25 * 0.2533471, rel=1e-5)
    labels = np.load(out / "labels.npy")
    assert labels.shape == (32, 32) and labels.min() >= -1 and labels.max() <= 3
    assert m["abstain_pct"] == pytest.approx(100 * float((labels == -1).mean()))
    png = iio.imread(out / "labels.png")
    assert png.shape == (32, 32, 3)
    assert np.all(png[labels == -1] == 255)  # abstentions white
    assert m["certified_pixel_accuracy"] > 0.5 and m["per_class"]["lungs"]["dice"] > 0.6
    assert (out / "certified_accuracy_vs_radius.png").is_file() and (out / "comparison.png").is_file()
    pts = sorted((p["radius"], p["certified_accuracy"]) for p in m["curve"] if p["correction"] == "holm")
    accs = [a for _, a in pts]
    assert len(accs) >= 3 and accs == sorted(accs, reverse=True)  # certified accuracy cannot grow with the radius
    t = m["timings"]
    assert 0 < t["forward_s"] <= t["total_s"] and 0 <= t["outside_forward_fraction"] < 1
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["plugin"] == "imageseg" and cfg["seed"] == 0 and cfg["config"]["n"] == 40


def test_certify_seg_reproducible_and_denoised(tiny_data, tiny_model, tmp_path):
    img = tiny_data / "test" / "images" / "xray_test_0001.png"
    common = ["--model", tiny_model, "--n", 30, "--n0", 5, "--tau", 0.6, "--alpha", 0.05, "--no-progress"]
    assert _run("certify-seg", img, *common, "--output", tmp_path / "a") == 0
    assert _run("certify-seg", img, *common, "--output", tmp_path / "b") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "labels.npy"), np.load(tmp_path / "b" / "labels.npy"))
    from geocert_imageseg.models import DENOISER_KIND

    den = UNetDenoiser(1, width=8)
    torch.nn.init.zeros_(den.net.head.weight)
    torch.nn.init.zeros_(den.net.head.bias)  # an identity denoiser: x̂ = x̃ exactly
    save_checkpoint(tmp_path / "id.pt", den, {"kind": DENOISER_KIND, "in_channels": 1, "width": 8, "depth": 2})
    assert _run("certify-seg", img, *common, "--denoiser", tmp_path / "id.pt", "--output", tmp_path / "c") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "labels.npy"), np.load(tmp_path / "c" / "labels.npy"))
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert cfg["denoiser"]["kind"] == "unet"


def test_certify_seg_with_diffusers_folder(tiny_data, tiny_model, tmp_path):
    import diffusers

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=32, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 8), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    unet.save_pretrained(str(tmp_path / "ddpm" / "unet"))
    sched.save_pretrained(str(tmp_path / "ddpm" / "scheduler"))
    img = tiny_data / "test" / "images" / "xray_test_0000.png"
    out = tmp_path / "dd"
    assert _run("certify-seg", img, "--model", tiny_model, "--denoiser", tmp_path / "ddpm", "--sigma", 0.5,
                "--n", 20, "--n0", 2, "--tau", 0.5, "--alpha", 0.05, "--output", out, "--no-progress") == 0
    info = json.loads((out / "config.json").read_text())["denoiser"]
    abar = sched.alphas_cumprod.double()
    assert info["kind"] == "diffusion" and info["t_star"] == int(torch.argmin(((1 - abar) / abar - 1.0).abs()))
    assert info["sigma_at_t_star"] == pytest.approx(0.5, rel=0.01)
    assert np.load(out / "labels.npy").shape == (32, 32)


def test_certify_seg_dataset_mode_resumes(tiny_data, tiny_model, tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["certify-seg", tiny_data, "--model", tiny_model, "--n", 30, "--n0", 5, "--tau", 0.6, "--alpha", 0.05,
            "--output", out, "--no-progress"]
    assert _run(*args, "--max-images", 1) == 0
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["name"] for r in recs] == ["xray_test_0000"]
    assert _run(*args) == 0  # resumes: only the second image is certified
    recs2 = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["name"] for r in recs2] == ["xray_test_0000", "xray_test_0001"] and recs2[0] == recs[0]
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_items"] == 2 and (out / "labels" / "xray_test_0001.png").is_file()
    pooled_px = sum(r["num_components"] for r in recs2)
    assert m["pooled"]["pixels"] == pooled_px == 2 * 32 * 32
    assert (out / "certified_accuracy_vs_radius.png").is_file()
    # a different configuration refuses to mix results
    capsys.readouterr()
    assert _run(*args[:-3], "--sigma", 0.5, "--output", out, "--no-progress") == 2
    assert "holds results of a different run (differs in: sigma)" in capsys.readouterr().err


def test_certify_seg_bad_inputs_write_nothing(tiny_data, tiny_model, tmp_path, capsys):
    import imageio.v3 as iio

    img = tiny_data / "test" / "images" / "xray_test_0000.png"
    small = np.zeros((16, 16), np.uint8)
    iio.imwrite(tmp_path / "small.png", small)
    wrong = np.zeros((32, 32), np.uint8)
    wrong[3, 3] = 6
    iio.imwrite(tmp_path / "wrong.png", wrong)
    out = tmp_path / "never"
    cases = [
        (["--mask", tmp_path / "small.png"], "does not match the image size"),
        (["--mask", tmp_path / "wrong.png"], "unknown class label(s) 6"),
        (["--sigma", -1], "sigma must be > 0"),
        (["--n0", 50, "--n", 10], "--n0 must be < --n"),
        (["--n0", 10, "--n", 10], "--n0 must be < --n"),
        (["--n0", 2, "--n", 5, "--tau", 0.99], "can never be certified"),
        (["--denoiser", tmp_path], "not a diffusers model folder"),
        (["--model", tmp_path / "small.png"], "small.png"),
        (["--device", "tpu"], "device must be cpu, cuda, cuda:N or auto"),
    ]
    for extra, msg in cases:
        capsys.readouterr()
        assert _run("certify-seg", img, "--model", tiny_model, *extra, "--output", out, "--no-progress") == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("geocert certify-seg: error:")]
        assert len(err) == 1 and msg in err[0], err
        assert not out.exists()


def test_denoiser_folder_without_weights_gives_one_error_line(tiny_data, tiny_model, tmp_path, capfd):
    """A diffusers folder whose UNet weights are missing: exactly one stderr line (diffusers' own warnings
    while it looks for weight files are silenced), naming the folder; nothing written."""
    folder = tmp_path / "noweights"
    (folder / "scheduler").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "in_channels": 1}))
    (folder / "scheduler" / "scheduler_config.json").write_text("{}")
    img = tiny_data / "test" / "images" / "xray_test_0000.png"
    out = tmp_path / "never"
    capfd.readouterr()
    assert _run("certify-seg", img, "--model", tiny_model, "--denoiser", folder, "--n0", 2, "--n", 20,
                "--tau", 0.6, "--alpha", 0.1, "--output", out, "--no-progress") == 2
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith(f"geocert certify-seg: error: {folder}: cannot load"), err
    assert not out.exists()


def test_certify_seg_labels_npy_is_written_atomically(tiny_data, tiny_model, tmp_path, monkeypatch):
    """A write that fails half-way (disk full) leaves no partial labels.npy and no temporary file."""
    def half_written(f, arr, *a, **kw):
        fh = open(f, "wb") if isinstance(f, (str, Path)) else f  # noqa: SIM115
        fh.write(b"\x93NUMPY partial")
        fh.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", half_written)
    img = tiny_data / "test" / "images" / "xray_test_0000.png"
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space left"):
        _run("certify-seg", img, "--model", tiny_model, "--n0", 2, "--n", 20, "--tau", 0.6, "--alpha", 0.1,
             "--output", out, "--no-progress")
    assert not (out / "labels.npy").exists() and not list(out.glob("*.tmp"))


def test_torchscript_constant_model_certifies_everything(tiny_data, tmp_path):
    class Const(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 4, x.shape[-2], x.shape[-1])
            logits[:, 1] = 1.0
            return logits

    torch.jit.script(Const()).save(str(tmp_path / "const.pt"))
    img = tiny_data / "test" / "images" / "xray_test_0000.png"
    mask = tiny_data / "test" / "masks" / "xray_test_0000.png"
    out = tmp_path / "ts"
    assert _run("certify-seg", img, "--mask", mask, "--model", tmp_path / "const.pt", "--n", 20, "--n0", 2,
                "--tau", 0.5, "--output", out, "--no-progress") == 0
    m = json.loads((out / "metrics.json").read_text())
    gt = load_mask(mask)
    assert m["abstain_pct"] == 0.0
    assert m["certified_pixel_accuracy"] == pytest.approx(float((gt == 1).float().mean()))
    assert m["num_classes"] == 4


def test_torchscript_labels_out_of_range_are_a_clean_error(tiny_data, tmp_path, capsys):
    """A label-returning TorchScript model whose labels exceed --num-classes: one error line naming the model,
    exit 2, nothing written (checked on the clean image before anything is written); a model that goes out of
    range only under noise is stopped by the pipeline with the same kind of error."""
    from geocert_imageseg.adapter import SegPipeline

    class Labels(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], x.shape[-2], x.shape[-1]), 5, dtype=torch.long)

    torch.jit.script(Labels()).save(str(tmp_path / "labels.pt"))
    img = tiny_data / "test" / "images" / "xray_test_0000.png"
    out = tmp_path / "never"
    capsys.readouterr()
    assert _run("certify-seg", img, "--model", tmp_path / "labels.pt", "--num-classes", 2, "--n", 20, "--n0", 2,
                "--tau", 0.6, "--alpha", 0.1, "--output", out, "--no-progress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"geocert certify-seg: error: {tmp_path / 'labels.pt'}: the model "
                                               "returned labels outside 0..1"), err
    assert not out.exists()

    class NoisyOnly(torch.nn.Module):
        def forward(self, x):
            return (x[:, 0] > 1.0).long() * 3  # in range on [0, 1] images, label 3 once noise exceeds 1

    torch.jit.script(NoisyOnly()).save(str(tmp_path / "noisy.pt"))  # single image: fails while sampling
    assert _run("certify-seg", img, "--model", tmp_path / "noisy.pt", "--num-classes", 2, "--n", 20, "--n0", 2,
                "--tau", 0.6, "--alpha", 0.1, "--output", out, "--no-progress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "noisy.pt: the model returned labels outside 0..1" in err[0], err
    assert not out.exists()  # nothing written: config.json comes after the certification in single-image mode
    f = SegPipeline(NoisyOnly(), model_channels=1, num_classes=2, sigma=0.5, source="noisy.pt")
    assert torch.equal(f(torch.full((1, 1, 4, 4), 0.5)), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ModelError, match=r"noisy\.pt: the model returned labels outside 0\.\.1"):
        f(torch.full((1, 1, 4, 4), 1.5))


def test_dataset_mode_error_line_starts_after_the_bar(tiny_data, tmp_path, capsys):
    """Dataset mode through the CLI, a label model that leaves 0..K-1 only under noise (passes the clean
    probe): exit 2 and one `geocert certify-seg: error:` line naming the model, at the start of a line
    (after the dataset bar), not a traceback."""
    import re

    class NoisyOnly(torch.nn.Module):
        def forward(self, x):
            return (x[:, 0] > 1.0).long() * 7

    torch.jit.script(NoisyOnly()).save(str(tmp_path / "noisy.pt"))
    capsys.readouterr()
    assert _run("certify-seg", tiny_data, "--model", tmp_path / "noisy.pt", "--num-classes", 4, "--n", 20,
                "--n0", 2, "--tau", 0.6, "--alpha", 0.1, "--output", tmp_path / "out") == 2
    pieces = [p for p in re.split(r"[\r\n]", capsys.readouterr().err) if "error" in p]
    assert len(pieces) == 1 and pieces[0].startswith(f"geocert certify-seg: error: {tmp_path / 'noisy.pt'}: "
                                                     "the model returned labels outside 0..3"), pieces


def test_train_commands_write_checkpoints(tiny_data, tmp_path):
    out = tmp_path / "seg"
    assert _run("train-seg", tiny_data, "--epochs", 1, "--width", 8, "--noise-sigma", 0, "--output", out,
                "--threads", 1, "--no-progress") == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["threads"] == 1 and cfg["device"] == "cpu" and cfg["command"] == "train-seg"
    model, meta = load_checkpoint(out / "model.pt", SEG_KIND)
    assert isinstance(model, SegModel) and meta["num_classes"] == 4 and meta["train_sigma"] == 0.0
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["loss_history"]) == 1 and "lungs" in m["test_clean"]["per_class"]
    assert _run("train-denoiser", tiny_data, "--kind", "ddpm", "--epochs", 1, "--width", 8, "--output",
                tmp_path / "dd", "--no-progress") == 0
    den = load_diffusion_denoiser(tmp_path / "dd" / "ddpm")
    assert den.in_channels == 1 and den.prediction_type == "epsilon"
    assert json.loads((tmp_path / "dd" / "config.json").read_text())["config"]["kind"] == "ddpm"
    assert _run("train-denoiser", tiny_data, "--kind", "unet", "--epochs", 1, "--width", 8, "--output",
                tmp_path / "du", "--no-progress") == 0
    from geocert_imageseg.models import DENOISER_KIND

    assert isinstance(load_checkpoint(tmp_path / "du" / "denoiser.pt", DENOISER_KIND)[0], UNetDenoiser)
    assert _run("train-seg", tiny_data, "--noise-sigma", -0.1, "--output", tmp_path / "x", "--no-progress") == 2
    assert _run("train-denoiser", tiny_data, "--sigma-min", 0.8, "--sigma-max", 0.2, "--output", tmp_path / "y",
                "--no-progress") == 2
    assert _run("train-seg", tiny_data, "--device", "tpu", "--output", tmp_path / "z", "--no-progress") == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_plugin_module_is_light():
    code = ("import sys, geocert_imageseg; p = geocert_imageseg.PLUGIN; "
            "assert p.name == 'imageseg' and 'certify-seg' in p.commands; "
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------------------------- any model (issue 9)

_FACTORIES = '''
import torch


class Const(torch.nn.Module):
    """Logits favouring class 1 everywhere."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 4, x.shape[-2], x.shape[-1], device=x.device)
        logits[:, 1] = 1.0
        return logits


def const():
    return Const()


class _Lambda(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def wrong_shape():
    return _Lambda(lambda x: torch.zeros(x.shape[0], 4, x.shape[-2] // 2, x.shape[-1] // 2))


def nan_logits():
    return _Lambda(lambda x: torch.full((x.shape[0], 4, x.shape[-2], x.shape[-1]), float("nan")))


def not_a_tensor():
    return _Lambda(lambda x: {"logits": x})


def crashes():
    return _Lambda(lambda x: x.reshape(7, -1, 3))


def broken_factory():
    raise RuntimeError("no weights here")
'''


@pytest.fixture(scope="module")
def factories(tmp_path_factory) -> str:
    """A test module of model factories on sys.path; returns its name for ``--model name:factory``."""
    folder = tmp_path_factory.mktemp("factories")
    (folder / "imageseg_test_factories.py").write_text(_FACTORIES)
    sys.path.insert(0, str(folder))
    yield "imageseg_test_factories"
    sys.path.remove(str(folder))


def test_factory_model_certifies_like_the_same_torchscript_model(tiny_data, factories, tmp_path):
    """--model package.module:factory and a TorchScript file of the same model give the same certificates."""
    import importlib

    torch.jit.script(importlib.import_module(factories).Const()).save(str(tmp_path / "const.pt"))
    img = tiny_data / "test" / "images" / "xray_test_0000.png"
    mask = tiny_data / "test" / "masks" / "xray_test_0000.png"
    common = ["--mask", mask, "--n", 20, "--n0", 2, "--tau", 0.5, "--no-progress"]
    assert _run("certify-seg", img, "--model", f"{factories}:const", *common, "--output", tmp_path / "f") == 0
    assert _run("certify-seg", img, "--model", tmp_path / "const.pt", *common, "--output", tmp_path / "t") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "f" / "labels.npy"), np.load(tmp_path / "t" / "labels.npy"))
    m = json.loads((tmp_path / "f" / "metrics.json").read_text())
    assert m["num_classes"] == 4 and m["abstain_pct"] == 0.0
    assert m["certified_pixel_accuracy"] == pytest.approx(float((load_mask(mask) == 1).float().mean()))
    cfg = json.loads((tmp_path / "f" / "config.json").read_text())
    assert cfg["model_kind"] == "factory" and cfg["model"] == f"{factories}:const"


@pytest.mark.parametrize("factory, message", [
    ("wrong_shape", "the model must return logits [1, 4, 32, 32] or integer labels [1, 32, 32] for these pixels, "
                    "got [1, 4, 16, 16]"),
    ("nan_logits", "the model returned NaN or infinite logits"),
    ("not_a_tensor", "the model must return a tensor, got dict"),
    ("crashes", "the model failed on a [1, 1, 32, 32] image in [0, 1] (RuntimeError"),
    ("broken_factory", "the factory failed (RuntimeError: no weights here)"),
    ("no_such_factory", "has no attribute 'no_such_factory'"),
])
def test_model_contract_errors_are_one_line(tiny_data, factories, tmp_path, capsys, factory, message):
    """A user's model that breaks the output contract: exit 2, one line naming the model, nothing written."""
    img = tiny_data / "test" / "images" / "xray_test_0000.png"
    out = tmp_path / "never"
    capsys.readouterr()
    assert _run("certify-seg", img, "--model", f"{factories}:{factory}", "--n", 20, "--n0", 2, "--tau", 0.6,
                "--alpha", 0.1, "--output", out, "--no-progress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"geocert certify-seg: error: {factories}:{factory}: ") and \
        message in err[0], err
    assert not out.exists()


def test_item_seed_depends_on_the_name_not_the_position(tiny_data, tiny_model, tmp_path):
    """Per-image noise seeds come from item_seed(seed, file stem): an image gets the same labels alone, second
    in a folder, or in a folder run that starts with it."""
    from geocert.pipeline import item_seed

    common = ["--model", tiny_model, "--n", 30, "--n0", 5, "--tau", 0.6, "--alpha", 0.05, "--no-progress"]
    assert _run("certify-seg", tiny_data, *common, "--output", tmp_path / "ds") == 0
    img = tiny_data / "test" / "images" / "xray_test_0001.png"
    assert _run("certify-seg", img, *common, "--output", tmp_path / "one") == 0
    with np.load(tmp_path / "ds" / "items" / "xray_test_0001.npz") as z:
        np.testing.assert_array_equal(z["certified"], np.load(tmp_path / "one" / "labels.npy"))
    assert item_seed(0, "xray_test_0001") != item_seed(0, "xray_test_0000") != 1  # not seed + index


# ---------------------------------------------------------------------------------------------- hardening (issue 12)


def _forbid_training(monkeypatch):
    """Make every training entry point fail loudly: a check that must come first did not."""
    import geocert_imageseg.train as train

    def boom(*a, **kw):
        raise AssertionError("training started before the check")

    for name in ("train_segmenter", "train_unet_denoiser", "train_ddpm"):
        monkeypatch.setattr(train, name, boom)


def _one_error_line(capsys, command: str) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith(f"geocert {command}: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def _read_only_place(tmp_path) -> Path:
    """A folder in which nothing can be created (root ignores permission bits: /sys is read-only)."""
    import os

    if os.geteuid() == 0:
        if not Path("/sys").is_dir():
            pytest.skip("no read-only place for root")
        return Path("/sys/geocert-test-output")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    return ro / "out"


@pytest.mark.parametrize("command, extra", [
    ("train-seg", ["--epochs", 1, "--width", 8]),
    ("train-denoiser", ["--epochs", 1, "--width", 8]),
    ("certify-seg", ["--n", 20, "--n0", 2, "--tau", 0.6]),
])
def test_output_at_a_file_or_read_only_place_is_refused_before_work(tiny_data, tiny_model, tmp_path, capsys,
                                                                    monkeypatch, command, extra):
    _forbid_training(monkeypatch)
    if command == "certify-seg":
        extra = [*extra, "--model", tiny_model]
    (tmp_path / "F").write_text("keep me")
    capsys.readouterr()
    assert _run(command, tiny_data, *extra, "--output", tmp_path / "F", "--no-progress") == 2
    assert "exists and is not a folder" in _one_error_line(capsys, command)
    assert (tmp_path / "F").read_text() == "keep me"
    ro = _read_only_place(tmp_path)
    assert _run(command, tiny_data, *extra, "--output", ro, "--no-progress") == 2
    assert "cannot write in" in _one_error_line(capsys, command)


def test_train_seg_architecture_checked_against_the_image_size(tiny_data, tmp_path, capsys, monkeypatch):
    """--depth beyond what 32x32 images allow (7; 30 used to hang) and a U-Net too large are refused in one line
    before training; the largest allowed depth is named."""
    _forbid_training(monkeypatch)
    out = tmp_path / "never"
    for extra, msg in (
        (["--depth", 7], "--depth 7: the U-Net halves the image 7 times, but the 32x32 training images allow at "
                         "most --depth 4"),
        (["--depth", 30], "--depth 30:"),
        (["--width", 4096, "--depth", 3], "--width 4096 --depth 3: the U-Net would have"),
        (["--depth", 0], "--depth must be a positive integer"),
    ):
        capsys.readouterr()
        assert _run("train-seg", tiny_data, *extra, "--output", out, "--no-progress") == 2
        assert msg in _one_error_line(capsys, "train-seg")
        assert not out.exists()
    from geocert_imageseg.models import check_unet_options

    check_unet_options(width=16, depth=4, image_size=(32, 32), in_channels=1, out_channels=4)  # the limit itself


@pytest.mark.parametrize("command, option, value, msg", [
    ("train-seg", "--batch-size", 0, "--batch-size must be a positive integer"),
    ("train-seg", "--epochs", -1, "--epochs must be a positive integer"),
    ("train-seg", "--noise-sigma", "nan", "--noise-sigma must be a finite number >= 0"),
    ("train-seg", "--threads", -1, "--threads must be 0 (auto) or a positive integer"),
    ("train-denoiser", "--batch-size", 0, "--batch-size must be a positive integer"),
    ("train-denoiser", "--sigma-min", 0, "--sigma-min must be > 0"),
    ("train-denoiser", "--lr", 0, "--lr must be a finite number > 0"),
    ("certify-seg", "--batch-size", 0, "--batch-size must be a positive integer"),
    ("certify-seg", "--denoise-steps", 0, "--denoise-steps must be a positive integer"),
    ("certify-seg", "--max-images", 0, "--max-images must be a positive integer"),
    ("certify-seg", "--threads", -2, "--threads must be 0 (auto) or a positive integer"),
])
def test_errors_name_options_as_typed(tiny_data, tmp_path, capsys, monkeypatch, command, option, value, msg):
    _forbid_training(monkeypatch)
    capsys.readouterr()
    assert _run(command, tiny_data, option, value, "--output", tmp_path / "never", "--no-progress") == 2
    assert msg in _one_error_line(capsys, command)
    assert not (tmp_path / "never").exists()


def test_ddpm_width_that_group_norm_cannot_split_is_refused(tiny_data, tmp_path, capsys, monkeypatch):
    _forbid_training(monkeypatch)
    capsys.readouterr()
    assert _run("train-denoiser", tiny_data, "--kind", "ddpm", "--width", 12, "--output", tmp_path / "never",
                "--no-progress") == 2
    assert "--width 12: a ddpm denoiser needs a multiple of 8" in _one_error_line(capsys, "train-denoiser")


def test_corrupt_image_files_give_clean_lines_without_library_hints(tiny_data, tiny_model, tmp_path, capsys):
    """Empty / corrupt PNG and garbage .npy: one line naming the file, no imageio plugin advice
    (`pip install imageio[pyav]`) and no NumPy `allow_pickle` advice."""
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    (tmp_path / "garbage.npy").write_bytes(b"\x80\x04\x95" + bytes(range(100)))
    (tmp_path / "pickled.npy").write_bytes(b"")
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name, msg in (("empty.png", "empty.png: empty file"),
                      ("corrupt.png", "corrupt.png: cannot read image (corrupt, truncated, or not a PNG image)"),
                      ("garbage.npy", "garbage.npy: not a readable NumPy .npy array"),
                      ("pickled.npy", "pickled.npy: not a readable NumPy .npy array")):
        capsys.readouterr()
        assert _run("certify-seg", tmp_path / name, "--model", tiny_model, "--output", tmp_path / "never",
                    "--no-progress") == 2
        line = _one_error_line(capsys, "certify-seg")
        assert msg in line and "pip install" not in line and "allow_pickle" not in line, line
        assert not (tmp_path / "never").exists()
    with pytest.raises(InputError, match="corrupt.png: cannot read image"):  # a mask through the same reader
        load_mask(tmp_path / "corrupt.png")


def test_certify_seg_help_says_what_sigma_is(capsys):
    assert _run("certify-seg", "--help") == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "[0, 1] pixel units" not in text
    assert "the standard deviation of the Gaussian noise added to pixel intensities scaled to [0, 1]" in text


def test_overwrite_empties_the_dataset_folder(tiny_data, tiny_model, tmp_path):
    """--overwrite with a different configuration starts from an empty folder: no label PNG, item file or
    results line of the older run is left behind."""
    out = tmp_path / "ds"
    common = ["--model", tiny_model, "--n", 30, "--n0", 5, "--tau", 0.6, "--alpha", 0.05, "--output", out,
              "--no-progress"]
    assert _run("certify-seg", tiny_data, *common) == 0
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["xray_test_0000.png", "xray_test_0001.png"]
    assert _run("certify-seg", tiny_data, *common, "--sigma", 0.5, "--max-images", 1, "--overwrite") == 0
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["xray_test_0000.png"]
    assert sorted(p.name for p in (out / "items").iterdir()) == ["xray_test_0000.npz"]
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["name"] for r in recs] == ["xray_test_0000"]
    assert json.loads((out / "config.json").read_text())["config"]["sigma"] == 0.5


def test_overwrite_keeps_old_results_when_the_new_run_fails_its_checks(tiny_data, tiny_model, tmp_path, capsys):
    """--overwrite empties the folder only for a run whose inputs passed every check: a τ that n samples can
    never certify (found once the image sizes are known) leaves the finished results alone."""
    out = tmp_path / "ds"
    common = ["--model", tiny_model, "--alpha", 0.05, "--output", out, "--no-progress"]
    assert _run("certify-seg", tiny_data, *common, "--n", 30, "--n0", 5, "--tau", 0.6) == 0
    before = (out / "results.jsonl").read_text()
    capsys.readouterr()
    assert _run("certify-seg", tiny_data, *common, "--n", 5, "--n0", 2, "--tau", 0.99, "--overwrite") == 2
    assert "can never be certified" in _one_error_line(capsys, "certify-seg")
    assert (out / "results.jsonl").read_text() == before and len(list((out / "labels").iterdir())) == 2


def test_interrupted_train_seg_does_not_promise_resume(tiny_data, tmp_path, capsys, monkeypatch):
    """Ctrl-C during train-seg (after model.pt was written, while scoring the test split): exit 130, the message
    says nothing was written (train-seg does not resume), and nothing is in --output."""
    import geocert_imageseg.train as train

    def interrupt(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "evaluate_segmenter", interrupt)
    out = tmp_path / "seg"
    capsys.readouterr()
    assert _run("train-seg", tiny_data, "--epochs", 1, "--width", 8, "--output", out, "--no-progress") == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["geocert train-seg: interrupted (nothing was written)"], err
    assert not out.exists()
    assert not list(tmp_path.glob(".seg.*"))  # no staging folder left beside it


def test_cuda_absent_is_one_line_on_every_command(tiny_data, tiny_model, tmp_path, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    _forbid_training(monkeypatch)
    for command, extra in (("train-seg", []), ("train-denoiser", []), ("certify-seg", ["--model", tiny_model])):
        capsys.readouterr()
        assert _run(command, tiny_data, *extra, "--device", "cuda:0", "--output", tmp_path / "never",
                    "--no-progress") == 2
        assert "--device cuda:0: CUDA is not available" in _one_error_line(capsys, command)
