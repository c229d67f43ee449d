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
where the base occupancy hovers near ½ in seen-free space (on the cup: one, 5·10⁻⁵ of the area).

The seen-free / reached marks come from the training rays themselves (every ``stride``-th pixel of each view
per axis), with the renderer's stratified samples at their stratum centres: a sample marks the voxel it lies
in. Voxels are 2·bound/X wide and the samples are closer than that along each ray.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["visibility", "carve", "seal", "undecided_mask", "undecided_fraction", "UNDECIDED_BAND"]

SPECK_VOXELS = 8  # :func:`seal` removes inside components of fewer voxels (2³: the blur's footprint)
UNDECIDED_BAND = (0.25, 0.75)  # a voxel whose base occupancy p̂ lies in this band is counted as undecided


@torch.no_grad()
def visibility(field, state: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor, *, near: float,
               far: float, n_samples: int, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Visibility marks ``(reached, seen_free)``, bool ``[X, X, X]`` grids over the field's voxels, from rays
    ``origins / dirs [R, 3]`` (unit directions) through the geometry ``state`` (``field.geometry_state()``).

    reached: some sample of some ray lies in the voxel; seen_free: some sample with transmittance > ½ before
    it (in front of the ray's median depth) lies in the voxel."""
    from geocert_rs_sdf.render import _samples, transmittance, voxel_cells

    res = field.logits.shape[0]
    bound = float(field.bound)
    device = state.device
    reached = torch.zeros(res**3, dtype=torch.bool, device=device)
    free = torch.zeros(res**3, dtype=torch.bool, device=device)
    for i in range(0, origins.shape[0], chunk):
        o, d = origins[i:i + chunk].to(device), dirs[i:i + chunk].to(device)
        t, dt = _samples(o, d, bound, near, far, n_samples, False, None)
        pts = o[:, None, :] + t[..., None] * d[:, None, :]
        density = field.density(pts.reshape(-1, 3), state).reshape(t.shape)
        trans = transmittance(density * dt)
        cell = voxel_cells(pts, bound, res)
        inside = ((cell >= 0) & (cell < res)).all(-1) & (dt > 0)
        flat = ((cell[..., 0] * res + cell[..., 1]) * res + cell[..., 2])
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
      resolves (on the cup: a p̂ ≈ ½ speck in seen-free space).

    Returns the number of pockets and specks and the share of the grid each changed."""
    if field.density_mode != "rs-sdf":
        return {"sealed": False}
    import numpy as np
    from scipy import ndimage

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
    labels, n = ndimage.label(~empty & ~enclosed, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    anchored = np.bincount(labels.ravel(), weights=(field.fixed > 0).cpu().numpy().ravel(), minlength=n + 1)
    specks = [k for k in range(1, n + 1) if sizes[k] < speck_voxels and anchored[k] == 0]
    speck = np.isin(labels, specks)
    speck |= ndimage.binary_dilation(speck, np.ones((3, 3, 3), bool)) & empty  # the base voxels that make it
    if enclosed.any():
        field.fixed[torch.from_numpy(enclosed).to(field.fixed.device)] = 1
    if speck.any():
        field.fixed[torch.from_numpy(speck).to(field.fixed.device)] = -1
    return {"sealed": True, "pockets": len(pockets), "pocket_fraction": round(float(enclosed.mean()), 6),
            "specks": len(specks), "speck_fraction": round(float(speck.mean()), 6)}


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
