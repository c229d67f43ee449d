"""Classical scribble segmenters, used as fixed teachers of the connected model and as benchmark baselines.

Each takes only the image ``[H, W, 3]`` (float in [0, 1]) and the scribbles ``[H, W]`` int8 (1 foreground,
0 background, -1 unlabelled) and returns a foreground probability map ``[H, W]`` float64 in [0, 1]
(GrabCut's is 0/1). None of them promises a connected foreground; the FICNN ∘ flow fitted to them does.

- :func:`grabcut_probs`: OpenCV's GrabCut (colour GMMs + graph cut), initialised from the scribbles:
  strokes are hard labels, the foreground strokes dilated by ``grow`` (a fraction of the image's smaller
  side) are *probable foreground*, everything else *probable background*.
- :func:`random_walker_probs`: scikit-image's random walker (Grady 2006) seeded by the strokes.
- :func:`teacher_probs`: the teachers by name. ``grabcut``; ``random-walker`` with β = :data:`TEACHER_BETA`
  (sharper edges than scikit-image's default 130); ``grabcut+rw`` (the default): a product of experts,
  logit p = logit p_rw + log(4)·(2·gc − 1), i.e. GrabCut's vote counts as a 4:1 likelihood ratio on top
  of the random walker's probability. β and the ratio were chosen on the sparse-scribble benchmark
  (tools/connected2d_scribbles.py, scribble seed 0) and checked on scribble seeds 1 and 2
  (docs/connected2d.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TEACHERS", "grabcut_probs", "random_walker_probs", "teacher_probs"]

TEACHERS = ("grabcut", "random-walker", "grabcut+rw")
TEACHER_BETA = 500.0
"""Random-walker β of the teachers (the baseline uses scikit-image's default, 130)."""
GRABCUT_VOTE = 4.0
"""Likelihood ratio given to GrabCut's label in ``grabcut+rw``."""
"""Names of the fixed (classical) teachers; ``mlp`` (the paper's jointly trained MLP) is handled in train."""


def _check(image: np.ndarray, scribbles: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[-1] != 3 or image.shape[:2] != scribbles.shape:
        raise ValueError(f"need image [H, W, 3] and scribbles [H, W], got {image.shape} and {scribbles.shape}")
    if not ((scribbles == 1).any() and (scribbles == 0).any()):
        raise ValueError("need at least one foreground and one background scribble")


def grabcut_probs(image: np.ndarray, scribbles: np.ndarray, *, grow: float = 0.1, iterations: int = 8,
                  seed: int = 0) -> np.ndarray:
    """GrabCut foreground ``[H, W]`` (0.0 / 1.0) from the scribbles (see the module docstring).

    ``grow``: radius of the *probable foreground* around the foreground strokes, as a fraction of
    min(H, W) (0: only the strokes start as foreground). ``seed`` fixes OpenCV's RNG (GMM k-means)."""
    import cv2
    from scipy import ndimage

    _check(image, scribbles)
    H, W = scribbles.shape
    fg, bg = scribbles == 1, scribbles == 0
    mask = np.full((H, W), cv2.GC_PR_BGD, dtype=np.uint8)
    r = grow * min(H, W)
    if r > 0:
        near = ndimage.distance_transform_edt(~fg) <= r
        mask[near & ~bg] = cv2.GC_PR_FGD
    mask[fg] = cv2.GC_FGD
    mask[bg] = cv2.GC_BGD
    img8 = np.ascontiguousarray((np.clip(image, 0, 1) * 255.0 + 0.5).astype(np.uint8)[..., ::-1])  # BGR
    cv2.setRNGSeed(seed)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(img8, mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    return ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float64)


def random_walker_probs(image: np.ndarray, scribbles: np.ndarray, *, beta: float = 130.0) -> np.ndarray:
    """Random-walker probability ``[H, W]`` that a walker from each pixel first reaches a foreground stroke.

    ``beta``: edge sensitivity (scikit-image's default 130; the image is in [0, 1])."""
    from skimage.segmentation import random_walker

    _check(image, scribbles)
    labels = np.zeros(scribbles.shape, dtype=np.int32)
    labels[scribbles == 1] = 1
    labels[scribbles == 0] = 2
    prob = random_walker(image, labels, beta=beta, mode="bf", channel_axis=-1, return_full_prob=True)
    return np.clip(prob[0], 0.0, 1.0).astype(np.float64)


def teacher_probs(name: str, image: np.ndarray, scribbles: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Foreground probabilities ``[H, W]`` of the fixed teacher ``name`` (one of :data:`TEACHERS`)."""
    if name == "grabcut":
        return grabcut_probs(image, scribbles, seed=seed)
    if name == "random-walker":
        return random_walker_probs(image, scribbles, beta=TEACHER_BETA)
    if name == "grabcut+rw":
        rw = np.clip(random_walker_probs(image, scribbles, beta=TEACHER_BETA), 1e-6, 1.0 - 1e-6)
        vote = np.log(GRABCUT_VOTE) * (2.0 * grabcut_probs(image, scribbles, seed=seed) - 1.0)
        return 1.0 / (1.0 + np.exp(-(np.log(rw / (1.0 - rw)) + vote)))
    raise ValueError(f"unknown teacher {name!r}; choose from {', '.join(TEACHERS)}")
