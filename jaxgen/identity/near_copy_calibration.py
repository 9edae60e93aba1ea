"""The pixel near-copy check's threshold, calibrated on the training faces it protects.

Why: the fixed 0.3 was set on the 128 px demo faces; on a low-variation set most fresh real
images lie within 0.3 of a training image. `calibrate_near_copy` measures how far real faces
lie from their nearest *other* training face and refuses candidates closer than a low
percentile of that (kept within [CALIBRATION_FLOOR, FIXED_PIXEL_THRESHOLD]).
"""
from __future__ import annotations

from typing import List

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.identity.embedder_interface import as_images
from jaxgen.identity.pixel_embedder import FIXED_PIXEL_THRESHOLD, PixelEmbedder

__all__ = ["calibrate_near_copy", "CALIBRATION_FLOOR", "CALIBRATION_SAMPLE"]

CALIBRATION_FLOOR = 0.05      # a calibrated pixel threshold never falls below (noise copies: < 0.03)
CALIBRATION_SAMPLE = 512      # training faces measured for the calibration (all, in a smaller set)


def calibrate_near_copy(embedder: PixelEmbedder, images, ref_emb: np.ndarray, percentile: float = 1.0,
                        sample: int = CALIBRATION_SAMPLE, seed: int = 0) -> dict:
    """The near-copy threshold of a training set: what fresh real images look like to the check.

    A random sample of up to `sample` training faces (all of them in a smaller set), each
    one's shift-tolerant distance to its nearest *other* training face: how far a real face
    the generator never saw lies from the training set. Candidates closer than the
    `percentile`th percentile of those distances are refused; kept within [CALIBRATION_FLOOR
    (noise-level copies are always refused), FIXED_PIXEL_THRESHOLD (never stricter than the
    fixed near-copy check)]. images uint8 [M, H, W, 3], ref_emb [M, D] their near_copy_embed
    vectors. Returns the record: method, percentile, threshold, the measured percentile, floor,
    cap, sample (n held out), references, max_shift, seed, distance quantiles and the share
    within the fixed threshold.
    """
    ims, ref = as_images(images), np.asarray(ref_emb, np.float32)
    base = dict(percentile=float(percentile), floor=CALIBRATION_FLOOR, cap=FIXED_PIXEL_THRESHOLD,
                references=len(ims), max_shift=embedder.max_shift, seed=int(seed))
    if len(ims) < 2:   # no other training face to compare with
        return dict(base, method="fixed (fewer than 2 training faces to calibrate on)",
                    threshold=FIXED_PIXEL_THRESHOLD, sample=0)
    pick = np.sort(np.random.default_rng(seed).permutation(len(ims))[:min(sample, len(ims))])
    d = np.concatenate([_nearest_other(embedder, [ims[i] for i in pick[s:s + 64]], ref, pick[s:s + 64])
                        for s in range(0, len(pick), 64)])
    measured = float(np.percentile(d, percentile))
    q = np.percentile(d, [1, 5, 25, 50])
    return dict(base, method="calibrated", threshold=float(np.clip(measured, CALIBRATION_FLOOR,
                                                                   FIXED_PIXEL_THRESHOLD)),
                measured=measured, sample=int(len(pick)),
                quantiles=dict(min=float(d.min()), p1=float(q[0]), p5=float(q[1]), p25=float(q[2]),
                               p50=float(q[3])),
                share_within_fixed=float(np.mean(d <= FIXED_PIXEL_THRESHOLD)))


def _nearest_other(embedder: PixelEmbedder, ims: List[np.ndarray], ref: np.ndarray,
                   own: np.ndarray) -> np.ndarray:
    """Shift-tolerant distance [n] of each image (n <= 64) to its nearest reference other than
    itself (row own[i] of ref [M, D])."""
    n = len(ims)
    shifted, _ = embedder.near_copy_shifts(ims + ims[:1] * (64 - n))  # [S, 64, D]: one compiled shape
    d2 = np.array(_least_sq_distance(jnp.asarray(shifted), jnp.asarray(ref)))[:n]   # [n, M]
    d2[np.arange(n), own] = np.inf
    return np.sqrt(np.maximum(d2.min(1), 0.0))


@jax.jit
def _least_sq_distance(q, r):
    """[n, M] least over the shifts of |q_s,i - r_j|^2 for q [S, n, D], r [M, D] (one [n, M] at a time)."""
    r2 = jnp.sum(r * r, axis=1)[None, :]

    def step(best, qs):
        d2 = jnp.sum(qs * qs, axis=1)[:, None] + r2 - 2.0 * jnp.matmul(qs, r.T, precision=jax.lax.Precision.HIGHEST)
        return jnp.minimum(best, d2), None
    return jax.lax.scan(step, jnp.full((q.shape[1], r.shape[0]), jnp.inf, jnp.float32), q)[0]
