"""A small PointNet part-segmentation network in plain PyTorch, and the base classifier f used for smoothing.

The network follows PointNet's segmentation branch without the input/feature T-Nets (ShapeNet-part shapes
are in a canonical pose): a shared per-point MLP, a max-pooled global feature, the one-hot category, and a
per-point head. The head's first layer is split into a per-point part and a per-cloud part, so the global
feature and the category are projected once per cloud instead of once per point. ``arch="voxel"`` (the
``train-pc`` default) adds a local neighbourhood stage, :class:`VoxelPool`, after the first layer;
``arch="dgcnn"`` replaces the first layer by an :class:`EdgeConv` on xyz neighbourhoods and follows it by
dynamic ones (DGCNN-style: neighbourhoods in feature space).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from geocert_pointcloud.data import CATEGORIES, CATEGORY_PARTS, NUM_CATEGORIES, NUM_PARTS

__all__ = ["PointNetPartSeg", "VoxelPool", "EdgeConv", "knn", "hashed_subset", "ARCHS", "smoke_model", "part_mask", "predict_parts", "build_model", "prior_features", "PRIOR_FEATURES", "rotate_about_up", "fuse_batchnorm",
           "model_input", "save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT"]


class _PointwiseBN(nn.Module):
    """BatchNorm over the channel (last) dim of ``[B, N, C]`` features."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=False):
        layers += [nn.Linear(a, b), _PointwiseBN(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class VoxelPool(nn.Module):
    """Local neighbourhood stage (point-voxel, PVCNN-style): per-point features are averaged into the cells of
    a fixed ``R³`` grid over ``[-extent, extent]³`` (each point into its cell), together with each cell's share
    of the cloud's points (a density channel), mixed by one 3×3×3 convolution, and read back at every point by
    trilinear interpolation. Cell means and shares do not depend on how many points the cloud has (in
    expectation), so a model trained on subsets of a cloud's points transfers to the whole cloud; points
    outside the grid are clamped onto its border cells.

    ``forward(xyz [B, N, 3], feats [B, N, C], query=None) -> [B, N, out_channels]``; with ``query [B, M, 3]``
    the grid of ``xyz`` and ``feats`` is read back at those points instead (``[B, M, out_channels]``).
    """

    def __init__(self, in_channels: int, out_channels: int, resolution: int = 8, extent: float = 1.5,
                 depth: int = 1):
        super().__init__()
        if resolution < 2 or depth < 1:
            raise ValueError(f"resolution must be >= 2 and depth >= 1, got {resolution}, {depth}")
        self.resolution, self.extent = resolution, extent
        self.conv = nn.Conv3d(in_channels + 1, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm3d(out_channels)
        # further 3×3×3 convolutions (each widens the neighbourhood by one cell)
        self.more = nn.ModuleList(nn.Conv3d(out_channels, out_channels, 3, padding=1) for _ in range(depth - 1))
        self.more_bn = nn.ModuleList(nn.BatchNorm3d(out_channels) for _ in range(depth - 1))

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor, query: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = feats.shape
        r, e = self.resolution, self.extent
        cell = ((xyz[..., :3].detach() + e) * (r / (2 * e))).floor().long().clamp(0, r - 1)  # [B, N, 3]
        flat = ((cell[..., 0] * r + cell[..., 1]) * r + cell[..., 2]
                + torch.arange(b, device=xyz.device)[:, None] * r ** 3).reshape(-1)
        sums = feats.new_zeros(b * r ** 3, c).index_add_(0, flat, feats.reshape(-1, c))
        count = feats.new_zeros(b * r ** 3).index_add_(0, flat, feats.new_ones(b * n))[:, None]
        grid = torch.cat([sums / count.clamp(min=1), count * (r ** 3 / n)], dim=-1)  # mean features, density
        grid = grid.reshape(b, r, r, r, c + 1).permute(0, 4, 1, 2, 3)  # [B, C+1, x, y, z]
        grid = torch.relu(self.bn(self.conv(grid)))  # [B, out, x, y, z]
        for conv, bn in zip(self.more, self.more_bn, strict=True):
            grid = torch.relu(bn(conv(grid)))
        # trilinear read-back at each point (grid_sample's last coordinate indexes the first grid axis)
        at = xyz if query is None else query
        m = at.shape[1]
        where = (at[..., :3].flip(-1) / e).reshape(b, m, 1, 1, 3)
        out = nn.functional.grid_sample(grid, where, mode="bilinear", padding_mode="border", align_corners=False)
        return out.reshape(b, -1, m).transpose(1, 2)  # [B, M, out]


def knn(x: torch.Tensor, k: int, candidates: torch.Tensor | None = None, budget: int = 1 << 24) -> torch.Tensor:
    """``[B, N, min(k, M + 1)]`` neighbour indices into ``x [B, N, C]`` (Euclidean over C): each point itself
    first, then its ``k − 1`` nearest other points among ``candidates [B, M]`` (indices; default all N
    points; their order among themselves unspecified). The ``[B, rows, M]`` distance blocks hold at most
    about ``budget`` entries (memory-aware for large N)."""
    b, n, c = x.shape
    x = x.detach()
    y = x if candidates is None else x.gather(1, candidates[..., None].expand(-1, -1, c))  # [B, M, C]
    m = y.shape[1]
    kk = min(k - 1, m - (candidates is None))
    own = torch.arange(n, device=x.device)
    if kk <= 0:
        return own.expand(b, n)[..., None]
    sq_y = (y * y).sum(-1)[:, None, :]  # |y|²; |x_i|² is the same for every candidate of x_i
    rows = max(1, budget // max(b * m, 1))
    nbrs = []
    for s in range(0, n, rows):
        q = x[:, s:s + rows]
        d = torch.baddbmm(sq_y, q, y.transpose(1, 2), alpha=-2)  # [B, rows, M]: |x_i − y_j|² − |x_i|²
        if candidates is None:
            d.diagonal(offset=s, dim1=1, dim2=2).fill_(math.inf)  # the point itself comes first anyway
        else:
            d.masked_fill_(candidates[:, None, :] == own[s:s + q.shape[1], None], math.inf)
        nbrs.append(d.topk(kk, dim=-1, largest=False, sorted=False).indices)
    idx = torch.cat(nbrs, dim=1)  # [B, N, kk] into the candidates
    if candidates is not None:
        idx = candidates.gather(1, idx.reshape(b, -1)).reshape(b, n, kk)
    return torch.cat([own.expand(b, n)[..., None], idx], dim=-1)


def hashed_subset(xyz: torch.Tensor, m: int) -> torch.Tensor | None:
    """``[B, m]`` indices of a pseudo-random subset of each cloud's points ``xyz [B, N, 3]``: the m with the
    smallest integer hash of the bits of their own float32 coordinates (exact integer arithmetic, so the
    subset moves with the points when they are permuted and is the same on every device); ``None`` (all
    points) when N ≤ m."""
    if xyz.shape[1] <= m:
        return None
    bits = xyz.detach().float().contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF  # [B, N, 3]
    h = (bits[..., 0] * 73856093) ^ (bits[..., 1] * 19349663) ^ (bits[..., 2] * 83492791)
    for _ in range(2):  # mix the high bits into the low ones (products stay below 2⁶³)
        h = ((h ^ (h >> 16)) & 0xFFFFFFFF) * 0x45D9F3B
    return (h & 0xFFFFFFFF).topk(m, dim=1, largest=False, sorted=False).indices


class EdgeConv(nn.Module):
    """DGCNN's edge convolution with a one-layer edge MLP: each point's feature is
    ``ReLU(BN(max_j θ·[x_i, x_j − x_i]))`` over its k neighbours j (itself and the k − 1 nearest), with θ
    parameterised as ``center(x_i) + nbr(x_j)`` (the same linear map, computed once per point instead of once
    per edge). The max is taken before the BatchNorm and the ReLU (both monotone per channel; a negative BN
    scale turns it into a min), so no ``[B, N, k, C]`` edge tensor goes through them.

    Neighbours are found among the first ``graph_channels`` input channels (3: xyz; ``None``: all of them, a
    dynamic graph in feature space) of the ``candidates [B, M]`` (indices; default all points).
    ``forward(x [B, N, C], candidates=None) -> [B, N, out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, k: int = 16, graph_channels: int | None = None):
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.graph_channels = k, graph_channels
        self.center = nn.Linear(in_channels, out_channels)
        self.nbr = nn.Linear(in_channels, out_channels, bias=False)
        self.bn: nn.Module = _PointwiseBN(out_channels)

    def forward(self, x: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        graph = x if self.graph_channels is None else x[..., :self.graph_channels]
        idx = knn(graph, self.k, candidates)  # [B, N, k]
        return torch.relu(self.bn(self.center(x) + _neighbour_max(self.nbr(x), idx)))


def _neighbour_max(v: torch.Tensor, idx: torch.Tensor, budget: int = 1 << 24) -> torch.Tensor:
    """Max of ``v [B, N, C]`` over each point's neighbours ``idx [B, N, k]`` (in blocks of rows). With
    gradients, the arg-max neighbour of each channel is found first and only ``[B, N, C]`` values are
    gathered again for the backward pass (not the ``[B, N, k, C]`` neighbour values)."""
    b, n, k = idx.shape
    c = v.shape[-1]
    flat = (idx + torch.arange(b, device=idx.device)[:, None, None] * v.shape[1]).reshape(b * n, k)  # rows of v
    table = v.reshape(-1, c)
    rows = max(1, budget // max(k * c, 1))
    track = torch.is_grad_enabled() and v.requires_grad
    out = []
    with torch.no_grad():
        for s in range(0, b * n, rows):
            i = flat[s:s + rows]
            g = table.index_select(0, i.reshape(-1)).reshape(len(i), k, c)
            out.append(i.gather(1, g.max(dim=1).indices) if track else g.amax(dim=1))  # arg-max row / max
    if not track:
        return torch.cat(out).reshape(b, n, c)
    return table.gather(0, torch.cat(out)).reshape(b, n, c)  # v at each channel's arg-max neighbour


class _DynamicEdgeConvs(nn.Module):
    """``--arch dgcnn``'s local stage: ``layers`` EdgeConvs on feature-space neighbourhoods, each on the
    previous one's output; ``forward(feats [B, N, C], candidates) -> [B, N, layers · out]`` (their outputs
    side by side)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, k: int):
        super().__init__()
        self.convs = nn.ModuleList(EdgeConv(in_channels if i == 0 else out_channels, out_channels, k=k)
                                   for i in range(layers))

    def forward(self, feats: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        outs = []
        for conv in self.convs:
            feats = conv(feats, candidates)
            outs.append(feats)
        return torch.cat(outs, dim=-1)


class PointNetPartSeg(nn.Module):
    """PointNet part segmentation: ``forward(points [B, N, 3], category [B]) -> logits [B, N, num_parts]``.

    Args:
        width: channels of the first per-point layer; the encoder is ``3 → w → w → 2w → 4w`` and the global
            feature has ``4w`` channels; the head is ``(w + 2w + 4w + categories) → 2w → w → num_parts``.
        num_parts: output classes (50 global ShapeNet-part ids).
        num_categories: size of the category one-hot (16).
        in_channels: 3 (xyz) or 6 (xyz + unit normals; ``points`` is then ``[B, N, 6]``).
        spatial_prior: add a per-part affine function of each point's own (noisy) xyz to its logits,
            ``prior(xyz) = W xyz + b`` with ``W [num_parts, 3]``, ``b [num_parts]`` (zero, not trained by
            gradient; set by the class-prior calibration of ``train-pc --calibrate linear``); ``"quadratic"``:
            of the 9 monomials x, y, z, x², y², z², xy, yz, zx instead (``--calibrate quadratic``).
        arch: ``pointnet`` (every point alone plus the global feature), or ``voxel``: PointNet with a local
            neighbourhood stage (:class:`VoxelPool` on the first layer's features, ``voxel_resolution³`` cells)
            whose ``w`` local channels feed the second encoder layer and the head; or ``dgcnn``: the first
            layer is an :class:`EdgeConv` over each point's ``knn_k`` nearest neighbours in xyz (``in → w``),
            followed by ``dgcnn_layers − 1`` dynamic EdgeConvs (neighbours in feature space, ``w → w``) whose
            outputs join the first's as the local features. Every layer draws the neighbours from the same
            pseudo-random subset of ``knn_ref_points`` points (:func:`hashed_subset`; all points when the cloud
            has no more), so a model trained on random subsets of that many points of a cloud sees
            neighbourhoods of the same extent on the whole cloud.
    """

    def __init__(self, width: int = 32, num_parts: int = NUM_PARTS, num_categories: int = NUM_CATEGORIES,
                 in_channels: int = 3, spatial_prior: bool | str = False, arch: str = "pointnet",
                 voxel_resolution: int = 8, voxel_depth: int = 1, global_pool: str = "max", knn_k: int = 16,
                 dgcnn_layers: int = 2, knn_ref_points: int = 256):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r} (one of {', '.join(ARCHS)})")
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"unknown global pool {global_pool!r} (one of {', '.join(GLOBAL_POOLS)})")
        self.global_pool = global_pool
        self.width, self.num_parts, self.num_categories = width, num_parts, num_categories
        self.in_channels, self.arch = in_channels, arch
        self.voxel_resolution, self.voxel_depth = voxel_resolution, voxel_depth
        self.knn_k, self.dgcnn_layers, self.knn_ref_points = knn_k, dgcnn_layers, knn_ref_points
        self.prior: nn.Linear | None = None
        self.prior_kind = ("linear" if spatial_prior is True else spatial_prior) or None
        if self.prior_kind not in PRIOR_FEATURES and self.prior_kind is not None:
            raise ValueError(f"unknown spatial prior {spatial_prior!r} (one of {', '.join(PRIOR_FEATURES)})")
        if self.prior_kind:
            self.prior = nn.Linear(PRIOR_FEATURES[self.prior_kind], num_parts)
            nn.init.zeros_(self.prior.weight)
            nn.init.zeros_(self.prior.bias)
            self.prior.requires_grad_(False)
        w = width
        loc = {"voxel": w, "dgcnn": (dgcnn_layers - 1) * w}.get(arch, 0)  # channels of the local stage
        self.local: nn.Module | None = None
        self.enc1: nn.Module = _mlp([in_channels, w, w])
        if arch == "voxel":
            self.local = VoxelPool(w, w, resolution=voxel_resolution, depth=voxel_depth)
        elif arch == "dgcnn":
            if dgcnn_layers < 1:
                raise ValueError(f"dgcnn_layers must be >= 1, got {dgcnn_layers}")
            self.enc1 = EdgeConv(in_channels, w, k=knn_k, graph_channels=3)
            if dgcnn_layers > 1:
                self.local = _DynamicEdgeConvs(w, w, dgcnn_layers - 1, knn_k)
        self.enc2 = _mlp([w + loc, 2 * w])
        self.enc3 = _mlp([2 * w, 4 * w])
        self.head_local = nn.Linear(w + loc + 2 * w, 2 * w)
        pooled = 8 * w if global_pool == "max+mean" else 4 * w
        self.head_global = nn.Linear(pooled + num_categories, 2 * w, bias=False)
        self.head_bn = _PointwiseBN(2 * w)
        self.head = nn.Sequential(_mlp([2 * w, w]), nn.Linear(w, num_parts))

    def forward(self, points: torch.Tensor, category: torch.Tensor, context: torch.Tensor | None = None,
                ) -> torch.Tensor:
        """Logits ``[B, N, num_parts]``. ``context [B, M, C]`` (optional, not ``dgcnn``): the cloud-level
        features — the global feature and the voxel stage's grid — come from this cloud instead of
        ``points``, which then only supply each point's own path (a diagnostic: how much a point's label
        depends on the rest of the cloud)."""
        if context is not None and self.arch == "dgcnn":
            raise ValueError("a separate context cloud is not supported by arch 'dgcnn'")
        if context is None:
            f1 = self._local_features(points)  # [B, N, w + local]
            f2 = self.enc2(f1)  # [B, N, 2w]
            f3 = self.enc3(f2)  # [B, N, 4w]
        else:
            f1, f1c = self.enc1(points), self.enc1(context)
            if self.local is not None:  # the neighbourhood features of both, read from the context's grid
                near = self.local(context, f1c, query=torch.cat([context, points], dim=1))
                f1c = torch.cat([f1c, near[:, :context.shape[1]]], dim=-1)
                f1 = torch.cat([f1, near[:, context.shape[1]:]], dim=-1)
            f2 = self.enc2(f1)
            f3 = self.enc3(self.enc2(f1c))
        glob = f3.amax(dim=1)  # [B, 4w]
        if self.global_pool == "max+mean":  # the mean over the noisy points averages the noise out
            glob = torch.cat([glob, f3.mean(dim=1)], dim=-1)  # [B, 8w]
        known = (category >= 0).to(glob.dtype)[:, None]  # unknown category (-1): all-zero one-hot
        onehot = nn.functional.one_hot(category.clamp(min=0), self.num_categories).to(glob.dtype) * known
        g = self.head_global(torch.cat([glob, onehot], dim=-1))  # [B, 2w]
        h = self.head_local(torch.cat([f1, f2], dim=-1)) + g[:, None, :]
        h = torch.relu(self.head_bn(h))
        logits = self.head(h)  # [B, N, num_parts]
        return logits if self.prior is None else logits + self.prior(prior_features(points, self.prior_kind))

    def _local_features(self, points: torch.Tensor) -> torch.Tensor:
        """The first layer's per-point features, with the local stage's next to them."""
        if self.arch == "dgcnn":  # neighbours among the same pseudo-random subset of points in every layer
            cand = hashed_subset(points[..., :3], self.knn_ref_points)
            f1 = self.enc1(points, cand)  # [B, N, w]
            if self.local is not None:
                f1 = torch.cat([f1, self.local(f1, cand)], dim=-1)  # [B, N, dgcnn_layers · w]
            return f1
        f1 = self.enc1(points)  # [B, N, w]
        if self.local is not None:
            f1 = torch.cat([f1, self.local(points, f1)], dim=-1)  # [B, N, 2w]: own + neighbourhood features
        return f1


ARCHS = ("pointnet", "voxel", "dgcnn")
GLOBAL_POOLS = ("max", "max+mean")
PRIOR_FEATURES = {"linear": 3, "quadratic": 9}  # spatial prior kind -> number of features


def prior_features(points: torch.Tensor, kind: str) -> torch.Tensor:
    """``[..., F]`` features of each point's xyz (``points [..., ≥3]``) the spatial prior is affine in:
    ``linear``: x, y, z; ``quadratic``: also x², y², z², xy, yz, zx."""
    xyz = points[..., :3]
    if kind == "linear":
        return xyz
    return torch.cat([xyz, xyz * xyz, xyz * xyz.roll(-1, dims=-1)], dim=-1)


class _CategoryFree(nn.Module):
    """A geocert network behind the user-model contract: ``forward(points [B, N, 3]) -> logits [B, N, 50]``
    (the category one-hot left at zero)."""

    def __init__(self, net: PointNetPartSeg):
        super().__init__()
        self.net = net

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.net(points, torch.full(points.shape[:1], -1, dtype=torch.long, device=points.device))


def smoke_model() -> nn.Module:
    """``certify-pc --model geocert_pointcloud.model:smoke_model``: an untrained, seeded width-8 voxel network
    behind the user-model contract — a model that costs no training, for smoke runs of the command."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        return _CategoryFree(PointNetPartSeg(width=8, arch="voxel")).eval()
    finally:
        torch.random.set_rng_state(gen_state)


@torch.no_grad()
def _fold(linear: nn.Linear | nn.Conv3d, bn: nn.BatchNorm1d | nn.BatchNorm3d, extra: nn.Linear | None = None,
          ) -> None:
    """Fold an eval-mode BatchNorm that follows ``linear`` (plus ``extra``, added before the BN) into them."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    linear.weight.mul_(scale.reshape(-1, *[1] * (linear.weight.ndim - 1)))
    linear.bias.copy_((linear.bias - bn.running_mean) * scale + bn.bias)
    if extra is not None:
        extra.weight.mul_(scale[:, None])


def fuse_batchnorm(model: PointNetPartSeg) -> PointNetPartSeg:
    """An eval-only copy of ``model`` with every BatchNorm folded into the preceding linear layer (same
    outputs up to float rounding, fewer passes over the ``[B, N, C]`` features)."""
    import copy

    fused = copy.deepcopy(model).eval()
    for seq in (fused.enc1, fused.enc2, fused.enc3, fused.head[0]):
        if not isinstance(seq, nn.Sequential):  # an EdgeConv keeps its BN (after a max over neighbours)
            continue
        for i, layer in enumerate(seq):
            if isinstance(layer, _PointwiseBN):
                _fold(seq[i - 1], layer.bn)
                seq[i] = nn.Identity()
    _fold(fused.head_local, fused.head_bn.bn, fused.head_global)
    fused.head_bn = nn.Identity()
    if isinstance(fused.local, VoxelPool):
        _fold(fused.local.conv, fused.local.bn)
        fused.local.bn = nn.Identity()
        for i, (conv, bn) in enumerate(zip(fused.local.more, fused.local.more_bn, strict=True)):
            _fold(conv, bn)
            fused.local.more_bn[i] = nn.Identity()
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


def build_model(spec: dict) -> PointNetPartSeg:
    """Rebuild a model from the ``model`` entry of a checkpoint."""
    return PointNetPartSeg(width=int(spec["width"]), num_parts=int(spec["num_parts"]),
                           num_categories=int(spec["num_categories"]), in_channels=int(spec.get("in_channels", 3)),
                           spatial_prior=_prior_spec(spec.get("spatial_prior", False)),
                           arch=str(spec.get("arch", "pointnet")),
                           voxel_resolution=int(spec.get("voxel_resolution", 8)),
                           voxel_depth=int(spec.get("voxel_depth", 1)),
                           global_pool=str(spec.get("global_pool", "max")), knn_k=int(spec.get("knn_k", 16)),
                           dgcnn_layers=int(spec.get("dgcnn_layers", 2)),
                           knn_ref_points=int(spec.get("knn_ref_points", 256)))


def _prior_spec(value) -> bool | str:
    return value if value in PRIOR_FEATURES else bool(value)


def part_mask(categories: torch.Tensor | Sequence[int], allowed_parts: Sequence[int] | None = None,
              num_parts: int = NUM_PARTS) -> torch.Tensor:
    """``[B, num_parts]`` bool: the parts each cloud's category owns (``categories`` are indices into
    :data:`CATEGORIES`; index -1 means unknown category → every part in ``allowed_parts``, default all)."""
    cats = torch.as_tensor(categories, dtype=torch.long).reshape(-1)
    table = torch.zeros(NUM_CATEGORIES + 1, num_parts, dtype=torch.bool)
    for i, c in enumerate(CATEGORIES):
        table[i, list(CATEGORY_PARTS[c])] = True
    table[-1, list(allowed_parts) if allowed_parts is not None else slice(None)] = True
    return table[cats]


def predict_parts(model: nn.Module, points: torch.Tensor, category: torch.Tensor, mask: torch.Tensor,
                  ) -> torch.Tensor:
    """Labels ``[B, N]`` (global part ids) restricted to ``mask [B, num_parts]`` (the category's parts).

    ``category [B]`` holds indices into :data:`CATEGORIES`; an unknown category (-1) feeds an all-zero one-hot.
    """
    logits = model(points, category)
    logits = logits.masked_fill(~mask[:, None, :], -math.inf)
    return logits.argmax(dim=-1)


def rotate_about_up(points: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate ``points [N, 3]`` (or ``[B, N, 3]``) about the +y (up) axis by ``angles [B]`` radians →
    ``[B, N, 3]``."""
    c, s = torch.cos(angles), torch.sin(angles)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    if points.ndim == 2:
        x, y, z = x[None], y[None], z[None]
    c, s = c[:, None], s[:, None]
    return torch.stack([c * x + s * z, y.expand_as(c * x), -s * x + c * z], dim=-1)


def model_input(points: torch.Tensor, normals: torch.Tensor | None) -> torch.Tensor:
    """The network input: noisy ``points [B, N, 3]``, with the (unperturbed) ``normals`` appended if given."""
    return points if normals is None else torch.cat([points, normals.expand_as(points)], dim=-1)


CHECKPOINT_FORMAT = "geocert-pointcloud-pointnet/1"


def save_checkpoint(path: Path, model: PointNetPartSeg, *, sigma: float, num_points: int, categories: list[str],
                    train_config: dict, metrics: dict, rotation_sigma_deg: float = 0.0) -> None:
    import io

    from geocert.io import atomic_write

    buf = io.BytesIO()
    torch.save({
        "format": CHECKPOINT_FORMAT,
        "model": {"arch": model.arch, "voxel_resolution": model.voxel_resolution,
                  "voxel_depth": model.voxel_depth, "knn_k": model.knn_k, "dgcnn_layers": model.dgcnn_layers,
                  "knn_ref_points": model.knn_ref_points, "global_pool": model.global_pool, "width": model.width, "num_parts": model.num_parts,
                  "num_categories": model.num_categories, "in_channels": model.in_channels,
                  "spatial_prior": model.prior_kind if model.prior_kind == "quadratic" else model.prior is not None},
        "normals": model.in_channels == 6,
        "state_dict": model.state_dict(),
        "sigma": sigma,
        "rotation_sigma_deg": rotation_sigma_deg,
        "num_points": num_points,
        "categories": categories,
        "train_config": train_config,
        "metrics": metrics,
    }, buf)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def load_checkpoint(path: Path) -> tuple[PointNetPartSeg, dict]:
    """Model (eval mode) and checkpoint dict; :class:`InputError` naming the file when missing/invalid."""
    from geocert.errors import InputError
    from geocert.io import read_checkpoint

    path = Path(path)
    ckpt = read_checkpoint(path, hint=" (train one with `geocert train-pc`)")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a geocert train-pc checkpoint")
    spec = ckpt.get("model")
    arch = spec.get("arch", "pointnet") if isinstance(spec, dict) else "pointnet"
    if arch not in ARCHS:
        raise InputError(f"{path}: unknown architecture {arch!r} (this geocert knows {', '.join(ARCHS)}); "
                         f"retrain it with `geocert train-pc` or update geocert")
    try:
        model = build_model(ckpt["model"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as exc:
        raise InputError(f"{path}: checkpoint does not match the {arch} model ({type(exc).__name__})") from None
    if model.num_parts != NUM_PARTS or model.num_categories != NUM_CATEGORIES:
        raise InputError(f"{path}: checkpoint has {model.num_parts} parts / {model.num_categories} categories, "
                         f"expected {NUM_PARTS} / {NUM_CATEGORIES}")
    model.eval()
    return model, ckpt
