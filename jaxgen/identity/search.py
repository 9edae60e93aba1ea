"""Identity embeddings for de-identification checks of synthetic faces.

What: an identity model maps a face image to a vector so that two photos of
the same person are close and photos of different people are far apart. The
de-identification check asks, for every synthetic (candidate) image, how far
its identity vector is from the nearest training (reference) identity; a
candidate closer than the model's same-person threshold looks like a copy of
a training patient and must be rejected.

Why: a generator can memorise training faces. Pixel or feature-net
(Inception) distances do not measure *who* a face is; a face-recognition
descriptor does. An image the model cannot embed (no face found) is never
counted as "anonymous": it is reported with its reason and fails the check.

Embedders (all take uint8 images [N, H, W, 3], RGB, and return
`(embeddings float32 [N, D], ok bool [N])`; rows with ok=False are zeros; the interface:
jaxgen.identity.embedder_interface):

  DlibEmbedder  dlib's ResNet face descriptor (D=128, threshold 0.6, dlib's
                same-person Euclidean distance). Face found with dlib's HOG
                frontal detector (or its CNN detector), 5-point landmarks,
                aligned 150x150 chip, descriptor. Needs the `dlib-bin` and
                `face-recognition-models` packages; the model files ship in
                the latter, nothing is downloaded. (jaxgen.identity.dlib_embedder)
  PixelEmbedder pure JAX: downsampled (antialiased), mean-centred, unit-norm
                pixels (jaxgen.identity.pixel_embedder). NOT an identity model - it only says
                "these pixels are nearly the same picture". For tests and CPU
                demos on drawn faces, where dlib is missing or cannot tell
                the cartoons apart (below).

On the procedural demo faces (jaxgen.data.demo_faces, 128 px) dlib's HOG
detector finds about 2 faces in 3 at 64-256 px (15-19 of 24; the rest need
`detect_fallback="whole"`);
near-copies are 0.0-0.27 from their original, but different drawn faces are
only 0.35-0.61 apart, mostly under 0.6: dlib flags copies of drawn faces, yet
calls most different cartoon faces "the same person". Judge real or
photo-realistic GAN faces with it, not the cartoons.

Here: `make_embedder(kind)` (what a --identity flag names),
`nearest_identity(query, reference) -> (distance [N], index [N])`,
`IdentityCheck(embedder, references, files).check(images)` (references embedded once;
the per-image records every export path writes; a pixel check is shift-tolerant and,
without a given threshold, calibrated on the references by
`calibrate_near_copy(embedder, references, ref_emb)` of jaxgen.identity.near_copy_calibration) and
`deidentification_report(candidates, references, embedder) -> dict`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.identity.dlib_embedder import DlibEmbedder
from jaxgen.identity.embedder_interface import EmbedResult, as_images, embed_with_status
from jaxgen.identity.near_copy_calibration import calibrate_near_copy
from jaxgen.identity.pixel_embedder import PixelEmbedder

__all__ = ["nearest_identity", "deidentification_report", "make_embedder", "IdentityCheck"]


@jax.jit
def _nearest_index(q, r, r2):
    """argmin_j |q_i - r_j|^2 [N] of q [N, D], r [M, D] with r2 = |r_j|^2 [M]; compiled once
    per shape (not per call)."""
    d2 = jnp.sum(q * q, axis=1)[:, None] + r2[None, :] - 2.0 * jnp.matmul(
        q, r.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.argmin(d2, axis=1)


def nearest_identity(query_emb, reference_emb, chunk: int = 1024
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Nearest reference for each query: (distance float32 [N], index int64 [N]).

    query_emb [N, D] and reference_emb [M, D] (numpy or JAX, M >= 1). The
    search runs in JAX on `chunk` queries at a time via |q|^2 + |r|^2 - 2 q.r;
    the returned distance is then recomputed exactly as |q - r[index]|, so
    near-zero distances (copies) are not lost to cancellation.
    """
    q = np.asarray(query_emb, np.float32)
    r = np.asarray(reference_emb, np.float32)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise ValueError(f"embeddings must be [N, D] and [M, D], got {q.shape} and {r.shape}")
    if r.shape[0] == 0:
        raise ValueError("no reference embeddings to compare with")
    rj = jnp.asarray(r)
    r2 = jnp.sum(rj * rj, axis=1)
    index = np.zeros(q.shape[0], np.int64)
    for s in range(0, q.shape[0], chunk):
        qc = q[s:s + chunk]
        if qc.shape[0] < chunk and q.shape[0] > chunk:  # pad: one compiled shape
            qc = np.concatenate([qc, np.zeros((chunk - qc.shape[0], q.shape[1]), np.float32)])
        index[s:s + chunk] = np.asarray(_nearest_index(jnp.asarray(qc), rj, r2))[
            :min(chunk, q.shape[0] - s)]
    dist = np.linalg.norm(q - r[index], axis=1).astype(np.float32)
    return dist, index


def make_embedder(kind: str, threshold: float = -1.0, detect: bool = True, fallback: str = "whole",
                  percentile: float = 1.0):
    """The embedder named by a --identity flag or config field: 'dlib' (threshold 0.6, dlib's
    same-person distance, unless `threshold` >= 0), 'pixel' (NOT an identity model; unless
    `threshold` >= 0, calibrated on the training faces at `percentile` by the IdentityCheck) or
    'none' (None). fallback='whole': a face dlib's detector misses is embedded whole."""
    if kind == "none":
        return None
    if kind == "pixel":
        return PixelEmbedder(16, None if threshold < 0 else float(threshold), percentile=float(percentile))
    if kind == "dlib":
        return DlibEmbedder(detect=bool(detect), detect_fallback=fallback or None,
                            threshold=0.6 if threshold < 0 else float(threshold))
    raise ValueError(f"identity model {kind!r}: use 'dlib', 'pixel' or 'none'")


def _rgb_uint8(images):
    """uint8 [N, H, W, C] with C = 1 or 3 -> [N, H, W, 3] (grey replicated); sequences of
    [H, W, 3] images (sizes may differ) pass unchanged."""
    if isinstance(images, (list, tuple)):
        return images
    images = np.asarray(images)
    return np.repeat(images, 3, -1) if images.ndim == 4 and images.shape[-1] == 1 else images


class IdentityCheck:
    """An export's de-identification check: the training faces embedded once, then every batch
    of candidates -> nearest training face, distance and pass (farther than the threshold).

    references uint8 [M, H, W, C] (C = 1 or 3) with their `files` [M] (for the records).
    `require()` raises ValueError when no reference could be embedded (nothing to compare
    with); without references every candidate gets distance NaN and fails.

    A PixelEmbedder's check is its shift-tolerant near-copy distance (`near_copy_shifts`), and
    its threshold None is calibrated here on the references (`calibrate_near_copy`); the
    record is `calibration` (None: the threshold was given or is the model's own).
    """

    def __init__(self, embedder, references, files: Sequence[str]):
        self.embedder, self.files = embedder, list(files)
        self.name = getattr(embedder, "name", type(embedder).__name__)
        self.is_identity_model = bool(getattr(embedder, "is_identity_model", not self.name.startswith("pixel")))
        self.near_copy = hasattr(embedder, "near_copy_shifts")
        refs = _rgb_uint8(references)
        ref = embedder.near_copy_embed(refs) if self.near_copy else embed_with_status(embedder, refs)
        self.ref_index = np.flatnonzero(ref.ok)
        self.ref_emb = ref.embeddings[self.ref_index]
        self.ref_status = list(ref.status)
        self.not_embedded = [{"index": int(i), "reason": ref.status[i]} for i in np.flatnonzero(~ref.ok)]
        self.calibration = None
        if embedder.threshold is None:
            self.calibration = calibrate_near_copy(embedder, [refs[i] for i in self.ref_index], self.ref_emb,
                                                   embedder.percentile)
        self.threshold = float(self.calibration["threshold"] if self.calibration else embedder.threshold)

    def _nearest(self, images) -> Tuple[np.ndarray, np.ndarray, EmbedResult]:
        """(distance [n], reference row [n], candidate embedding) of the embeddable candidates:
        the least over the shifted crops for a near-copy check."""
        if not self.near_copy:
            cand = embed_with_status(self.embedder, images)
            if not cand.ok.any():
                return np.zeros(0, np.float32), np.zeros(0, np.int64), cand
            d, j = nearest_identity(cand.embeddings[cand.ok], self.ref_emb)
            return d, j, cand
        shifted, ok = self.embedder.near_copy_shifts(images)
        cand = EmbedResult(shifted[0], ok, ["pixels" if k else "flat_image" for k in ok])
        n = int(ok.sum())
        if not n:
            return np.zeros(0, np.float32), np.zeros(0, np.int64), cand
        d, j = nearest_identity(shifted[:, ok].reshape(-1, shifted.shape[-1]), self.ref_emb)
        best = np.argmin(d.reshape(-1, n), axis=0)
        return d.reshape(-1, n)[best, np.arange(n)], j.reshape(-1, n)[best, np.arange(n)], cand

    def require(self) -> "IdentityCheck":
        """self, or ValueError when none of the references could be embedded."""
        if self.ref_index.size == 0:
            raise ValueError(f"none of the {len(self.ref_status)} reference images could be embedded by "
                             f"{self.name} (statuses: {sorted(set(self.ref_status))})")
        return self

    def check(self, images) -> dict:
        """uint8 [N, H, W, C] -> dict distance float32 [N] (NaN: not embedded), index int64 [N]
        (into the references, -1: none), passed bool [N], status [N]."""
        images = _rgb_uint8(images)
        if not self.ref_index.size:
            cand = embed_with_status(self.embedder, images)
            d, j = np.zeros(0, np.float32), np.zeros(0, np.int64)
        else:
            d, j, cand = self._nearest(images)
        n = len(cand.ok)
        distance, index = np.full(n, np.nan, np.float32), np.full(n, -1, np.int64)
        ok_idx = np.flatnonzero(cand.ok)
        if ok_idx.size and self.ref_index.size:
            distance[ok_idx], index[ok_idx] = d, self.ref_index[j]
        passed = np.asarray(cand.ok) & (np.nan_to_num(distance, nan=-np.inf) > self.threshold)
        return dict(distance=distance, index=index, passed=passed, status=list(cand.status))

    def record(self, result: dict, i: int) -> dict:
        """Candidate i's metadata record: nearest real file and distance, threshold, model."""
        j, d = int(result["index"][i]), float(result["distance"][i])
        rec = dict(nearest_real_file=self.files[j] if j >= 0 else None,
                   nearest_real_distance=None if np.isnan(d) else d, threshold=self.threshold,
                   embedder=self.name, is_identity_model=self.is_identity_model,
                   passed=bool(result["passed"][i]), status=result["status"][i])
        return rec if self.calibration is None else dict(rec, calibration=self.calibration_summary())

    def calibration_summary(self) -> Optional[dict]:
        """The calibration in a metadata row: method, percentile, threshold, n measured (held out
        of the nearest-other search), the distance quantiles (None: not calibrated)."""
        c = self.calibration
        if c is None:
            return None
        return {k: c[k] for k in ("method", "percentile", "threshold", "sample", "max_shift", "quantiles",
                                  "share_within_fixed") if k in c}


def deidentification_report(candidates, references, embedder) -> dict:
    """Does any candidate (synthetic) image look like a reference (training) person?

    candidates, references: uint8 [N, H, W, 3] / [M, H, W, 3] (or sequences of
    [H, W, 3]). Returns a dict:
      embedder, threshold      the model used and its same-person distance
      distance   float32 [N]   distance to the nearest embeddable reference
                               (NaN where the candidate could not be embedded)
      index      int64 [N]     that reference's index into `references` (-1: none)
      passed     bool [N]      distance > threshold; False for non-embedded images
      status     list [N]      the embedder's per-candidate status
      not_embedded             [{"index": i, "reason": status}] of candidates
      references_not_embedded  the same for references (left out of the search)
      num_passed, num_rejected, num_not_embedded, all_passed
    Raises ValueError if no reference can be embedded (nothing to compare with).
    """
    refs = as_images(references)
    chk = IdentityCheck(embedder, refs, [str(i) for i in range(len(refs))]).require()
    r = chk.check(as_images(candidates))
    passed, n = r["passed"], len(r["passed"])
    not_emb = [{"index": int(i), "reason": r["status"][i]} for i in range(n) if np.isnan(r["distance"][i])]
    return {
        "embedder": chk.name,
        "threshold": chk.threshold,
        "distance": r["distance"],
        "index": r["index"],
        "passed": passed,
        "status": r["status"],
        "not_embedded": not_emb,
        "references_not_embedded": chk.not_embedded,
        "num_passed": int(passed.sum()),
        "num_rejected": int(n - passed.sum() - len(not_emb)),
        "num_not_embedded": len(not_emb),
        "all_passed": bool(passed.all()) if n else True,
    }
