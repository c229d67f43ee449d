"""Space carving of the occupancy grid from the training rays: the RS-SDF decided everywhere.

Training rays stop at the first surface, so the colour and opacity losses never reach the voxels behind it:
without help the occupancy there stays at its initial value, p̂ ≈ ½, the smoothed p hovers around ½ and its
zero level (the exported mesh) grows sheets inside the object. Space carving decides those voxels from what
the cameras saw, the classical visibility argument:

* a voxel some training ray crosses before its median depth (transmittance T > ½ there) was **seen free**;
  its occupancy stays what training made it;
* a voxel the training rays reach, but only behind their median depth — hidden behind a surface from every
  camera that looks at it — is **hidden**: it is fixed inside (p̂ = 1);
* a voxel no training ray reaches (outside every view frustum, or beyond the rays' near/far range) is
  **unseen**: nothing in the images supports matter there, so it is fixed outside (p̂ = 0).

Fixed voxels are kept in the field's ``fixed`` grid (saved in checkpoints) and stay fixed; training no longer
moves them. Only the base classifier changes (the occupancy p̂ before the blur); the SDF is still the certified
radius of the Gaussian-smoothed occupancy, σ·Φ⁻¹(p̂ ∗ N(0, σ²)), now of a classifier that answers "inside"
where the cameras could not see. That is the largest shape consistent with the views (the photo hull's
convention): a cavity no camera looks into is filled.

Carving runs at a few points of training, and the surface keeps moving after the last one; a pocket of empty
space can close up inside the object (on the bunny: two air bubbles, 0.75 % of the mesh area, 0.07 under the
surface). :func:`seal` fills such pockets at the end of training: an outside region of the SDF that neither
touches the box's faces nor holds a camera is enclosed by the surface, so no camera outside the object can
look into it — the same convention as a hidden voxel. It also removes specks: inside blobs of a few voxels
where the base occupancy hovers near ½ in seen-free space (on the cup: one, 5·10⁻⁵ of the area), and decides
the air: outside space more than a few voxels from the surface, where the SDF is already negative but
training left the base occupancy undecided, is fixed outside.

Where the views cannot tell two surfaces apart, the largest consistent shape is not the right one: over the
bundled cup's textureless floor, any surface in a cone renders every view alike (a proof in docs/rs_sdf.md),
and training leaves a hill there. :func:`least_area`, run after the last carving pass, completes such places
by the least surface area instead: it keeps what silhouettes and texture edges pin and removes the rest
wherever that lowers the area, an exact minimum cut on the voxels (:func:`min_area_cut`). It only removes
matter, and only where the result still explains the images: no opaque training ray sees through the object,
and the rays that now end deeper agree in colour where they end. So where no camera could
decide, the SDF is that of the least-area surface consistent with the silhouettes and texture edges, filled
inside.

The seen-free / reached marks come from the training rays themselves (every ``stride``-th pixel of each view
per axis), with the renderer's stratified samples at their stratum centres: a sample marks the voxel it lies
in. Voxels are 2·bound/X wide and the samples are closer than that along each ray.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["visibility", "carve", "seal", "least_area", "min_area_cut", "flat_pixels", "undecided_mask",
           "undecided_fraction", "UNDECIDED_BAND"]

SPECK_VOXELS = 8  # :func:`seal` removes inside components of fewer voxels (2³: the blur's footprint)
AIR_MARGIN = 3  # :func:`seal` fixes outside the open outside voxels farther than this from every inside voxel
UNDECIDED_BAND = (0.25, 0.75)  # a voxel whose base occupancy p̂ lies in this band is counted as undecided
# :func:`least_area`
FLAT_PIXEL_RANGE = 0.1  # a pixel whose 3×3 neighbourhood spans more colour (an edge, a blend) pins no texture
TEXTURE_STEP = 0.1  # neighbouring surface voxels whose mean pixel colours differ by more: a texture edge, pinned
TEXTURE_REACH = 1  # ...neighbouring: at most this many voxels apart along each axis
SILHOUETTE_VOXELS = 2  # inside voxels this close to space that background rays cross are pinned
REMOVAL_COST = -0.02  # cost of removing one voxel, in voxel faces (negative: a reward, so ties go to removing)
MOVED_SPREAD = 0.2  # a cut fails where rays now end on a voxel whose rays' pixel colours spread by more
CUT_ROUNDS = 4  # at most this many cuts; each pins where the rays the last one failed (see least_area) ended


def _march(o: torch.Tensor, d: torch.Tensor, bound: float, res: int, near: float, far: float, n_samples: int):
    """The renderer's stratified samples of rays ``o / d [R, 3]`` at their stratum centres: points ``[R, S, 3]``,
    segment lengths ``dt`` (``[R, S]`` or ``[R, 1]``, broadcasting), the flat index of the voxel of an ``res³`` grid over the box each lies in
    (clamped into the grid) and whether it lies in the grid (``ok``, also False for empty strata)."""
    from geocert_rs_sdf.render import _samples, voxel_cells

    t, dt = _samples(o, d, bound, near, far, n_samples, False, None)
    pts = o[:, None, :] + t[..., None] * d[:, None, :]
    cell = voxel_cells(pts, bound, res)
    ok = ((cell >= 0) & (cell < res)).all(-1) & (dt > 0)
    return pts, dt, _flat(cell.clamp(0, res - 1), res), ok


def _flat(cell: torch.Tensor, res: int) -> torch.Tensor:
    """Flat indices of voxel cells ``[..., 3]`` (in the grid) of an ``res³`` grid."""
    return (cell[..., 0] * res + cell[..., 1]) * res + cell[..., 2]


@torch.no_grad()
def visibility(field, state: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor, *, near: float,
               far: float, n_samples: int, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Visibility marks ``(reached, seen_free)``, bool ``[X, X, X]`` grids over the field's voxels, from rays
    ``origins / dirs [R, 3]`` (unit directions) through the geometry ``state`` (``field.geometry_state()``).

    reached: some sample of some ray lies in the voxel; seen_free: some sample with transmittance > ½ before
    it (in front of the ray's median depth) lies in the voxel."""
    from geocert_rs_sdf.render import transmittance

    res = field.logits.shape[0]
    bound = float(field.bound)
    device = state.device
    reached = torch.zeros(res**3, dtype=torch.bool, device=device)
    free = torch.zeros(res**3, dtype=torch.bool, device=device)
    for i in range(0, origins.shape[0], chunk):
        o, d = origins[i:i + chunk].to(device), dirs[i:i + chunk].to(device)
        pts, dt, flat, inside = _march(o, d, bound, res, near, far, n_samples)
        density = field.density(pts.reshape(-1, 3), state).reshape(pts.shape[:-1])
        trans = transmittance(density * dt)
        reached[flat[inside]] = True
        free[flat[inside & (trans > 0.5)]] = True
    return reached.reshape(res, res, res), free.reshape(res, res, res)


@torch.no_grad()
def carve(field, origins: torch.Tensor, dirs: torch.Tensor, *, near: float, far: float, n_samples: int,
          chunk: int = 8192) -> dict[str, Any]:
    """Space-carve ``field`` from the rays (see the module docstring): hidden voxels are fixed inside, unseen
    ones outside (``field.fixed``; a voxel once fixed stays fixed). A no-op for the plain density. Returns the
    share of each class and of the undecided voxels before and after."""
    if field.density_mode != "rs-sdf":
        return {"carved": False}
    before = undecided_fraction(field)
    reached, free = visibility(field, field.geometry_state(), origins, dirs, near=near, far=far,
                               n_samples=n_samples, chunk=chunk)
    open_ = field.fixed == 0
    hidden = reached & ~free & open_
    unseen = ~reached & open_
    field.fixed[hidden] = 1
    field.fixed[unseen] = -1
    total = field.fixed.numel()
    return {"carved": True, "rays": int(origins.shape[0]),
            "hidden_fraction": round(hidden.sum().item() / total, 5),
            "unseen_fraction": round(unseen.sum().item() / total, 5),
            "seen_free_fraction": round(free.sum().item() / total, 5),
            "fixed_fraction": round((field.fixed != 0).sum().item() / total, 5),
            "undecided_before": round(before, 5), "undecided_after": round(undecided_fraction(field), 5)}


@torch.no_grad()
def seal(field, cameras: torch.Tensor | None = None, speck_voxels: int = SPECK_VOXELS) -> dict[str, Any]:
    """Close the field's topology after training (rs-sdf; a no-op for the plain density), on the signs of the
    SDF at the voxel centres (``field.sdf_grid()``):

    * **pockets**: every voxel of a 6-connected outside component (SDF ≤ 0) that touches no face of the box
      and holds none of the ``cameras`` (``[C, 3]`` centres) is fixed inside;
    * **specks**: every voxel of a 26-connected inside component (SDF > 0) of fewer than ``speck_voxels``
      voxels that holds no voxel carving fixed inside is fixed outside, with the outside voxels around it (whose
      p̂ made it) — a blob smaller than the blur's 2×2×2-voxel footprint is below what the smoothed grid
      resolves (on the cup: a p̂ ≈ ½ speck in seen-free space);
    * **air**: every voxel of the outside (after the two steps above) farther than ``AIR_MARGIN`` voxels
      (along each axis) from every inside voxel, and not fixed yet, is fixed outside. Training rays cross
      such space and stop at the surface, so nothing pushes its base occupancy below ½ once the smoothed p
      is: it stays undecided (p̂ ≈ 0.3–0.7, on the cup's hollow) although the SDF already says outside.
      Fixing it decides the base classifier where its smoothing already did, and the zero level stays
      where it was (a ball in p̂ = 0.4 air: the SDF within two voxels of its surface moves by < 0.007 voxel).

    Returns the number of pockets and specks and the share of the grid each step changed."""
    if field.density_mode != "rs-sdf":
        return {"sealed": False}
    import numpy as np
    from scipy import ndimage

    cube = np.ones((3, 3, 3), bool)
    empty = (field.sdf_grid() <= 0).cpu().numpy()
    labels, n = ndimage.label(empty)
    open_labels = set(np.unique(np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(),
                                                labels[:, :, [0, -1]].ravel()])).tolist())
    if cameras is not None and len(cameras):
        from geocert_rs_sdf.render import voxel_cells

        res = empty.shape[0]
        cells = voxel_cells(cameras.detach().float().cpu(), float(field.bound), res).numpy()
        inside = ((cells >= 0) & (cells < res)).all(-1)
        open_labels |= set(labels[tuple(cells[inside].T)].tolist())
    pockets = [k for k in range(1, n + 1) if k not in open_labels]
    enclosed = np.isin(labels, pockets)
    labels, n = ndimage.label(~empty & ~enclosed, structure=cube)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    anchored = np.bincount(labels.ravel(), weights=(field.fixed > 0).cpu().numpy().ravel(), minlength=n + 1)
    specks = [k for k in range(1, n + 1) if sizes[k] < speck_voxels and anchored[k] == 0]
    speck = np.isin(labels, specks)
    speck |= ndimage.binary_dilation(speck, cube) & empty  # the base voxels that make it
    matter = (~empty | enclosed) & ~speck
    air = ~ndimage.binary_dilation(matter, cube, iterations=AIR_MARGIN) & (field.fixed == 0).cpu().numpy()
    if enclosed.any():
        field.fixed[torch.from_numpy(enclosed).to(field.fixed.device)] = 1
    if speck.any():
        field.fixed[torch.from_numpy(speck).to(field.fixed.device)] = -1
    if air.any():
        field.fixed[torch.from_numpy(air).to(field.fixed.device)] = -1
    return {"sealed": True, "pockets": len(pockets), "pocket_fraction": round(float(enclosed.mean()), 6),
            "specks": len(specks), "speck_fraction": round(float(speck.mean()), 6),
            "air_fraction": round(float(air.mean()), 6)}


@torch.no_grad()
def undecided_mask(field) -> torch.Tensor:
    """Voxels whose base occupancy p̂ (``field.base_occupancy()``) lies in ``UNDECIDED_BAND`` (bool
    ``[X, X, X]``)."""
    p = field.base_occupancy()
    return (p > UNDECIDED_BAND[0]) & (p < UNDECIDED_BAND[1])


def undecided_fraction(field, off_surface: bool = False) -> float:
    """Share of voxels whose base occupancy p̂ lies in ``UNDECIDED_BAND``; with ``off_surface``, only those
    that are not part of a surface's transition (no decided-inside and decided-outside voxel both among
    their 26 neighbours): undecided *regions* rather than the one-voxel layer a surface passes through."""
    und = undecided_mask(field)
    if off_surface:
        import torch.nn.functional as F

        p = field.base_occupancy().detach()[None, None]
        near_in = F.max_pool3d((p > UNDECIDED_BAND[1]).float(), 3, stride=1, padding=1)[0, 0] > 0
        near_out = F.max_pool3d((p < UNDECIDED_BAND[0]).float(), 3, stride=1, padding=1)[0, 0] > 0
        und = und & ~(near_in & near_out)
    return und.float().mean().item()


def flat_pixels(images: torch.Tensor, max_range: float = FLAT_PIXEL_RANGE) -> torch.Tensor:
    """``[V·H·W]`` bool: the pixels of ``images [V, H, W, 3]`` whose 3×3 neighbourhood spans at most
    ``max_range`` in every channel (no edge, no blend of two surfaces), in the order ``fit`` flattens rays."""
    import torch.nn.functional as F

    out = []
    for view in images:  # one view at a time: the pooled copies of a whole capture need not fit in memory
        im = view.permute(2, 0, 1)[None].float()
        span = (F.max_pool2d(im, 3, 1, 1) + F.max_pool2d(-im, 3, 1, 1)).amax(1)
        out.append((span <= max_range).reshape(-1))
    return torch.cat(out)


def min_area_cut(free, keep, removal_cost: float = REMOVAL_COST, scale: int = 100):
    """Which ``free`` voxels (bool ``[X, Y, Z]`` numpy) stay inside so that the number of voxel faces between
    inside and outside inside the grid, plus ``removal_cost`` per free voxel made outside, is least. ``keep``
    voxels are inside and every other voxel outside; the grid's own border costs nothing (the scene box cuts
    the scene, for example a ground plane, and is no surface of it). Exact: a minimum s–t cut (max-flow,
    ``scipy.sparse.csgraph.maximum_flow``) on the free voxels, with costs in units of 1/``scale`` face.

    A negative ``removal_cost`` is a reward: among labellings of equal area, the one with the least matter
    wins. Counted in voxel faces, area has many ties (a staircase fillet in a corner has the area of the
    corner it fills; so has any cross-section of a hollow that keeps its bounding box and stays convex along
    the axes), and a small reward settles them toward the empty one.

    Returns ``(inside, cost)``: bool ``[X, Y, Z]`` (``keep`` or a free voxel kept) and the least cost in
    faces (the faces between fixed voxels not counted)."""
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    free = np.asarray(free, bool)
    keep = np.asarray(keep, bool) & ~free
    fv = np.argwhere(free)
    n = len(fv)
    inside = keep.copy()
    if n == 0:
        return inside, 0.0
    node = -np.ones(free.shape, np.int64)
    node[tuple(fv.T)] = np.arange(n) + 2  # 0 = source (inside), 1 = sink (outside)
    me = np.arange(n) + 2
    if removal_cost >= 0:  # an arc from the source, cut when the voxel goes outside
        rows, cols = [np.zeros(n, np.int64)], [me]
    else:  # a reward for removal: an arc to the sink, cut when the voxel stays inside
        rows, cols = [me], [np.ones(n, np.int64)]
    unit = max(1, round(abs(removal_cost) * scale))  # the removal cost (or reward), in 1/scale faces
    caps = [np.full(n, unit)]
    for axis in range(3):
        for step in (-1, 1):
            nb = fv.copy()
            nb[:, axis] += step
            in_grid = (nb[:, axis] >= 0) & (nb[:, axis] < free.shape[axis])
            nb_node = np.full(n, -1)
            nb_keep = np.zeros(n, bool)
            nb_node[in_grid] = node[tuple(nb[in_grid].T)]
            nb_keep[in_grid] = keep[tuple(nb[in_grid].T)]
            both = nb_node >= 0  # a face between two free voxels (its other direction comes from the neighbour)
            to_keep = ~both & nb_keep
            to_out = ~both & ~nb_keep & in_grid  # the box's faces cost nothing: it cuts the scene, not a surface
            rows += [me[both], np.zeros(int(to_keep.sum()), np.int64), me[to_out]]
            cols += [nb_node[both], me[to_keep], np.ones(int(to_out.sum()), np.int64)]
            caps += [np.full(int(both.sum()), scale), np.full(int(to_keep.sum()), scale),
                     np.full(int(to_out.sum()), scale)]
    r, c, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(caps)
    # each arc with its reverse (capacity 0 unless given), so that the residual graph has both directions
    cap = sp.csr_matrix((np.concatenate([w, np.zeros_like(w)]).astype(np.int32),
                         (np.concatenate([r, c]), np.concatenate([c, r]))), shape=(n + 2, n + 2))
    cap.sum_duplicates()
    result = maximum_flow(cap, 0, 1, method="dinic")
    residual = (cap - result.flow).tocsr()
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, 0, directed=True, return_predecessors=False)
    side = np.zeros(n + 2, bool)
    side[reached] = True
    inside[tuple(fv.T)] = side[2:]
    # a removal reward was paid as a cut arc for every free voxel kept: the flow is the cost plus |cost|·n
    offset = -unit * n if removal_cost < 0 else 0
    return inside, (result.flow_value + offset) / scale


@torch.no_grad()
def least_area(field, origins: torch.Tensor, dirs: torch.Tensor, colors: torch.Tensor, flat: torch.Tensor, *,
               near: float, far: float, n_samples: int, chunk: int = 8192,
               removal_cost: float = REMOVAL_COST) -> dict[str, Any]:
    """Remove the matter the images leave free where removing it lowers the surface's area (rs-sdf; a no-op
    for the plain density): the least-area completion of what the cameras could not decide.

    Carving keeps the largest shape consistent with the views, and where the views cannot tell two surfaces
    apart, that is the wrong one: the hollow of the bundled cup has a textureless floor, and any surface in
    a cone over it renders every view alike (docs/rs_sdf.md), so training leaves a hill there. This pass
    keeps every voxel inside the SDF that the images pin:

    * **silhouettes**: voxels within ``SILHOUETTE_VOXELS`` of space crossed by rays that see the background
      (rays ``[R]`` with opacity below ½), i.e. the visual hull's shell;
    * **texture edges**: surface voxels (where an opaque ray's expected depth falls) whose mean pixel colour,
      over the ``flat`` rays (no edge or blend in their pixel's 3×3 neighbourhood), differs by more than
      ``TEXTURE_STEP`` from that of a surface voxel at most ``TEXTURE_REACH`` voxels away along each axis, and
      the voxels next to them (an edge pins where the pixels beside it, a pixel or so wide, land in
      neighbouring voxels: where a pixel covers more than a voxel, it may not pin);
    * **the box's faces**: inside voxels on the grid's border, where the scene box cuts through matter such
      as a ground plane, whose area beyond the box is unknown;

    and then labels the others inside or outside by :func:`min_area_cut` (least boundary area, ties going to
    removal; voxels are only removed, never added). The result must still explain the images: an opaque ray
    the cut lets through the object, or one that now ends deeper, on a voxel whose rays' (flat) pixel colours
    spread by more than ``MOVED_SPREAD`` (a surface the images show shaded or textured, such as a bump on a
    table that no silhouette outlines), pins the voxel where it ended before, and the cut runs again (at most
    ``CUT_ROUNDS`` times; if the last one still fails, nothing is removed). Removed voxels are fixed outside
    (``field.fixed``). ``origins / dirs / colors / flat``: the training rays, their pixels' colours and
    :func:`flat_pixels`. Returns the share of the grid removed and pinned and the cuts run."""
    if field.density_mode != "rs-sdf":
        return {"least_area": False}
    import numpy as np
    from scipy import ndimage

    from geocert_rs_sdf.render import render_rays, voxel_cells

    res = field.logits.shape[0]
    bound = float(field.bound)
    device = field.logits.device
    state = field.geometry_state()
    depth = torch.empty(len(origins), device=device)
    opacity = torch.empty(len(origins), device=device)
    for i in range(0, len(origins), chunk):
        out = render_rays(field, state, origins[i:i + chunk].to(device), dirs[i:i + chunk].to(device), near=near,
                          far=far, n_samples=n_samples, color_samples=1)
        depth[i:i + chunk], opacity[i:i + chunk] = out["depth"], out["opacity"]
    inside = (field.sdf_grid() > 0).cpu().numpy()
    cube = np.ones((3, 3, 3), bool)
    background = opacity < 0.5
    if bool(background.any()):
        _, crossed = visibility(field, state, origins[background].to(device), dirs[background].to(device),
                                near=near, far=far, n_samples=n_samples, chunk=chunk)
        shell = ndimage.binary_dilation(crossed.cpu().numpy(), cube, iterations=SILHOUETTE_VOXELS) & inside
    else:
        shell = np.zeros_like(inside)

    def voxel_of_depth(rays: torch.Tensor) -> torch.Tensor:
        pts = origins[rays].to(device) + depth[rays, None] * dirs[rays].to(device)
        return _flat(voxel_cells(pts, bound, res).clamp(0, res - 1), res)

    solid = (opacity > 0.99) & flat.to(device)
    flat_idx = voxel_of_depth(solid.nonzero().squeeze(1))
    count = torch.zeros(res**3, device=device).index_add_(0, flat_idx, torch.ones(len(flat_idx), device=device))
    total = torch.zeros(res**3, 3, device=device).index_add_(0, flat_idx, colors[solid].to(device).float())
    mean = (total / count.clamp(min=1)[:, None]).reshape(res, res, res, 3).cpu().numpy()
    surface = (count > 0).reshape(res, res, res).cpu().numpy()
    step_ = np.zeros(inside.shape)
    w = TEXTURE_REACH
    pad_m = np.pad(mean, ((w, w), (w, w), (w, w), (0, 0)))
    pad_s = np.pad(surface, w)
    for dx in range(2 * w + 1):
        for dy in range(2 * w + 1):
            for dz in range(2 * w + 1):
                nb_m = pad_m[dx:dx + res, dy:dy + res, dz:dz + res]
                nb_s = pad_s[dx:dx + res, dy:dy + res, dz:dz + res]
                step_ = np.maximum(step_, np.abs(nb_m - mean).max(-1) * nb_s)
    texture = ndimage.binary_dilation(surface & (step_ > TEXTURE_STEP), cube) & inside
    border = np.zeros_like(inside)
    border[[0, -1]] = border[:, [0, -1]] = border[:, :, [0, -1]] = True
    pinned = shell | texture | (border & inside)  # matter the box cuts (a ground plane) is held where it is cut
    opaque = (opacity > 0.5).nonzero().squeeze(1)

    def first_hit(grid) -> torch.Tensor:
        """Per opaque ray, the flat index of the first voxel of ``grid`` (bool ``[X, Y, Z]`` numpy) its samples
        meet, or -1."""
        grid_t = torch.from_numpy(grid).to(device).reshape(-1)
        hit = torch.full((len(opaque),), -1, dtype=torch.long, device=device)
        for i in range(0, len(opaque), chunk):
            rays = opaque[i:i + chunk]
            _, _, flat_cell, ok = _march(origins[rays].to(device), dirs[rays].to(device), bound, res, near, far,
                                         n_samples)
            met = grid_t[flat_cell] & ok
            first = met.float().argmax(-1)
            hit[i:i + chunk] = torch.where(met.any(-1), flat_cell.gather(1, first[:, None])[:, 0], -1)
        return hit

    hit_before = first_hit(inside)
    flat_opaque = (flat.to(device)[opaque] & (opacity[opaque] > 0.99))
    rgb = colors[opaque].to(device).float()
    rounds, removed = 0, np.zeros_like(inside)
    while rounds < CUT_ROUNDS:
        rounds += 1
        kept, _ = min_area_cut(inside & ~pinned, pinned, removal_cost)
        if not (inside & ~kept).any():
            break
        hit = first_hit(kept)
        leaks = (hit_before >= 0) & (hit < 0)  # rays the cut lets through the object
        moved = (hit_before >= 0) & (hit >= 0) & (hit != hit_before)  # rays that now end deeper
        # a voxel the moved rays now reach must take one colour: the spread of the (flat) pixel colours of all
        # the rays that end there, moved or not, stays within MOVED_SPREAD
        use = flat_opaque & (hit >= 0)
        at = hit[use][:, None].expand(-1, 3)
        hi = torch.full((res**3, 3), -1.0, device=device).scatter_reduce_(0, at, rgb[use], "amax")
        lo = torch.full((res**3, 3), 2.0, device=device).scatter_reduce_(0, at, rgb[use], "amin")
        spread = torch.where(hi[:, 0] >= 0, (hi - lo).amax(-1), torch.zeros((), device=device))
        bad = leaks | (moved & (spread[hit.clamp(min=0)] > MOVED_SPREAD))
        if not bool(bad.any()):
            removed = inside & ~kept
            break
        # pin where those rays ended before the cut, and cut again
        was = torch.zeros(res**3, dtype=torch.bool, device=device)
        was[hit_before[bad]] = True
        pinned |= ndimage.binary_dilation(was.reshape(res, res, res).cpu().numpy(), cube) & inside
    if removed.any():
        field.fixed[torch.from_numpy(removed).to(field.fixed.device)] = -1
    total_v = inside.size
    return {"least_area": True, "cuts": rounds, "removed_fraction": round(float(removed.sum()) / total_v, 6),
            "pinned_fraction": round(float(pinned.sum()) / total_v, 6),
            "free_fraction": round(float((inside & ~pinned).sum()) / total_v, 6)}
