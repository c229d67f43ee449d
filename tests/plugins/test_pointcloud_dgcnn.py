"""Tests of ``--arch dgcnn`` (the DGCNN-style point-cloud model): kNN, EdgeConv, equivariance, checkpoints."""

from __future__ import annotations

import pytest
import torch
from geocert_pointcloud.data import NUM_PARTS
from geocert_pointcloud.model import (
    EdgeConv,
    PointNetPartSeg,
    fuse_batchnorm,
    hashed_subset,
    knn,
    load_checkpoint,
    save_checkpoint,
)

from geocert.cli import main as cli

torch.set_num_threads(1)


def _brute_knn(x: torch.Tensor, k: int, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Each point itself, then its k − 1 nearest other candidates, by a full distance matrix and a sort."""
    b, n, _ = x.shape
    cand = torch.arange(n).expand(b, n) if candidates is None else candidates
    d = torch.cdist(x, x.gather(1, cand[..., None].expand(-1, -1, x.shape[-1])))  # [B, N, M]
    d = d.masked_fill(cand[:, None, :] == torch.arange(n)[None, :, None], float("inf"))
    near = cand.gather(1, d.argsort(-1)[..., :k - 1].reshape(b, -1)).reshape(b, n, k - 1)
    return torch.cat([torch.arange(n).expand(b, n)[..., None], near], dim=-1)


def _dgcnn(**kw) -> PointNetPartSeg:
    torch.manual_seed(0)
    model = PointNetPartSeg(width=8, arch="dgcnn", **kw)
    # non-trivial BatchNorm statistics and affine maps (some scales negative: the max then acts as a min)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(-1.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("dims", [3, 8])
def test_knn_matches_brute_force(dims):
    gen = torch.Generator().manual_seed(dims)
    x = torch.randn(2, 40, dims, generator=gen)
    # all points as candidates; a budget of 100 entries splits the distances into blocks of one or two rows
    for budget in (1 << 24, 100):
        idx = knn(x, 6, budget=budget)
        assert idx.shape == (2, 40, 6)
        assert torch.equal(idx[..., 0], torch.arange(40).expand(2, 40))  # the point itself first
        torch.testing.assert_close(idx.sort(-1).values, _brute_knn(x, 6).sort(-1).values)
    # among a subset of candidates (a point outside it still comes first, inside it is not repeated)
    cand = torch.stack([torch.randperm(40, generator=gen)[:15] for _ in range(2)])
    idx = knn(x, 5, cand, budget=64)
    torch.testing.assert_close(idx.sort(-1).values, _brute_knn(x, 5, cand).sort(-1).values)
    assert (idx[..., 1:] != torch.arange(40)[None, :, None]).all()
    # fewer candidates than neighbours: all of them
    assert knn(x[:, :3], 6).shape == (2, 3, 3)
    assert torch.equal(knn(x, 1)[..., 0], torch.arange(40).expand(2, 40))


def test_hashed_subset_follows_the_points():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 300, 3, generator=gen)
    assert hashed_subset(x, 300) is None  # no more points than the subset: all of them
    sub = hashed_subset(x, 64)
    assert sub.shape == (3, 64) and all(len(set(s.tolist())) == 64 for s in sub)
    assert not torch.equal(sub[0].sort().values, sub[1].sort().values)  # each cloud its own subset
    perm = torch.randperm(300, generator=gen)
    again = hashed_subset(x[:, perm], 64)  # the same points, under their new indices
    assert torch.equal(perm[again].sort(-1).values, sub.sort(-1).values)


def test_edge_conv_is_the_max_over_edge_features():
    """EdgeConv = ReLU(BN(max_j θ·[x_i, x_j − x_i])); the gradient path (arg-max, then a gather) and the
    no-gradient path (max) agree with a direct per-edge computation, values and gradients."""
    torch.manual_seed(1)
    conv = EdgeConv(4, 5, k=4).eval()
    conv.bn.bn.running_mean.uniform_(-1, 1)
    conv.bn.bn.weight.data.uniform_(-1, 1)
    x = torch.randn(2, 12, 4, requires_grad=True)
    idx = knn(x, 4)
    xi = x[:, :, None, :].expand(-1, -1, 4, -1)
    xj = torch.stack([x[b][idx[b]] for b in range(2)])  # [B, N, k, C]
    # θ·[x_i, x_j − x_i] with θ = [W_c + W_n, W_n]: center(x_i) + nbr(x_j)
    theta = torch.cat([conv.center.weight + conv.nbr.weight, conv.nbr.weight], dim=1)
    edges = torch.cat([xi, xj - xi], dim=-1) @ theta.T + conv.center.bias
    ref = torch.relu(conv.bn(edges.amax(dim=2)))
    out = conv(x)
    torch.testing.assert_close(out, ref)
    g_out, = torch.autograd.grad(out.square().sum(), x)
    g_ref, = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(g_out, g_ref)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), ref)


@pytest.mark.parametrize("n", [40, 90])  # all points as neighbour candidates / a hashed subset of 64
def test_dgcnn_shape_and_permutation_equivariance(n):
    model = _dgcnn(knn_k=5, knn_ref_points=64)
    gen = torch.Generator().manual_seed(n)
    x, cat = torch.randn(3, n, 3, generator=gen), torch.tensor([0, 4, -1])
    perm = torch.randperm(n, generator=gen)
    with torch.no_grad():
        out = model(x, cat)
        assert out.shape == (3, n, NUM_PARTS) and torch.isfinite(out).all()
        torch.testing.assert_close(model(x[:, perm], cat), out[:, perm], atol=1e-5, rtol=1e-5)
        # the neighbourhoods matter: moving other points changes a point's output
        moved = x.clone()
        moved[:, 1:] += 0.3 * torch.randn(3, n - 1, 3, generator=gen)
        moved[:, 0] = x[:, 0]
        assert not torch.allclose(model(moved, cat)[:, 0], out[:, 0])
        # BatchNorm folded into the per-point layers (the EdgeConvs keep theirs): the same outputs
        torch.testing.assert_close(fuse_batchnorm(model)(x, cat), out, atol=1e-4, rtol=1e-4)
    # training mode runs and back-propagates into every EdgeConv (normals as extra input channels)
    model6 = PointNetPartSeg(width=8, arch="dgcnn", in_channels=6, knn_k=5, knn_ref_points=64, dgcnn_layers=2)
    model6(torch.randn(2, n, 6), cat[:2]).square().mean().backward()
    assert all(c.nbr.weight.grad.abs().sum() > 0 for c in model6.modules() if isinstance(c, EdgeConv))
    with pytest.raises(ValueError, match="dgcnn_layers"):
        PointNetPartSeg(arch="dgcnn", dgcnn_layers=0)


def test_dgcnn_checkpoint_roundtrip(tmp_path):
    model = _dgcnn(knn_k=7, dgcnn_layers=2, knn_ref_points=32, spatial_prior="quadratic")
    save_checkpoint(tmp_path / "d.pt", model, sigma=0.25, num_points=50, categories=["Knife"], train_config={},
                    metrics={})
    loaded, ckpt = load_checkpoint(tmp_path / "d.pt")
    assert ckpt["model"]["arch"] == "dgcnn"
    assert (loaded.knn_k, loaded.dgcnn_layers, loaded.knn_ref_points) == (7, 2, 32)
    x, cat = torch.randn(2, 50, 3), torch.tensor([7, 7])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, cat), model(x, cat))


def test_train_pc_arch_dgcnn_end_to_end(tmp_path):
    """``geocert train-pc --arch dgcnn`` trains, calibrates and writes a checkpoint certify-pc can load."""
    from geocert_pointcloud.scenes import make_dataset

    data = make_dataset(tmp_path / "data", shapes_per_category=3, num_points=200, seed=1, categories=("Mug",))
    out = tmp_path / "run"
    assert cli(["train-pc", str(data), "--output", str(out), "--arch", "dgcnn", "--epochs", "1", "--width", "8",
                "--num-points", "200", "--train-points", "64", "--calibration-draws", "4", "--knn-k", "8",
                "--dgcnn-layers", "3"]) == 0
    model, ckpt = load_checkpoint(out / "model.pt")
    assert model.arch == "dgcnn" and ckpt["train_config"]["arch"] == "dgcnn"
    assert (model.knn_k, model.dgcnn_layers) == (8, 3) and len(model.local.convs) == 2


@pytest.mark.parametrize("flag, value, message", [("--knn-k", "1", "--knn-k must be >= 2"),
                                                  ("--dgcnn-layers", "0", "dgcnn")])
def test_train_pc_rejects_bad_dgcnn_options_before_any_output(tmp_path, capsys, flag, value, message):
    out = tmp_path / "run"
    assert cli(["train-pc", "--output", str(out), "--arch", "dgcnn", flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not out.exists()
