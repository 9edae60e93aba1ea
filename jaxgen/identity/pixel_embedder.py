"""The pixel embedder: downsampled, normalised pixels in pure JAX. NOT an identity model.

It says "these pixels are nearly the same picture", not "the same person": for tests and CPU
demos on drawn faces, where dlib is missing or cannot tell the cartoons apart. `PixelEmbedder`
embeds uint8 images on the host (and the shifted crops of its near-copy check);
`pixel_features` is the same vector in pure JAX, jit-able inside evolve's fitness.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.identity.embedder_interface import EmbedResult, as_images

__all__ = ["PixelEmbedder", "pixel_features", "FIXED_PIXEL_THRESHOLD"]

FIXED_PIXEL_THRESHOLD = 0.3   # the pixel check's fixed near-copy distance (set on 128 px demo faces)


class PixelEmbedder:
    """NOT an identity model: downsampled, normalised pixels, in pure JAX.

    Each image is resized to `size` x `size` x 3 (`jax.image.resize`,
    linear with antialiasing), mean-centred and scaled to unit L2 norm, so the
    distance (0..2) ignores global brightness/contrast changes and pixel
    noise. It recognises *the same picture*, not the same person: a new photo
    of a training patient would pass it. Use only where a face model cannot run
    (tests, CPU demos on the drawn demo faces).

    The near-copy check (`IdentityCheck`) is shift-tolerant: it compares centre crops
    (`max_shift` px cut from each side) and takes the least distance over the candidate's
    crops moved by up to `max_shift` px each way (`near_copy_shifts`), so a copy moved by a
    pixel or two matches. The plain vectors do not: a 32 px demo face moved by 1 px is 0.25-0.36
    from its original in median (up to 0.48), a 128 px one moved 1 px down and 2 right 0.15-0.17.

    `threshold`: a number, or None (`make_embedder('pixel')`): `IdentityCheck` then calibrates
    it on its training faces (`calibrate_near_copy`, at the `percentile`th percentile). Why: the
    fixed 0.3 was set on the 128 px demo faces (near-copies < 0.17, different faces 0.67-1.46);
    on a low-variation 32 px set 72% of held-out real images lie within 0.3 of a training image,
    so a fixed 0.3 refuses what fresh real samples look like.
    """

    name = "pixel_not_identity"
    is_identity_model = False

    def __init__(self, size: int = 16, threshold: Optional[float] = FIXED_PIXEL_THRESHOLD,
                 max_shift: int = 2, percentile: float = 1.0):
        if size < 1 or max_shift < 0:
            raise ValueError(f"size must be >= 1 and max_shift >= 0, got {size}, {max_shift}")
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        self.size, self.max_shift, self.percentile = int(size), int(max_shift), float(percentile)
        self.threshold = None if threshold is None else float(threshold)
        self.dim = self.size * self.size * 3

    def __repr__(self):
        return (f"PixelEmbedder(size={self.size}, threshold={self.threshold}, max_shift={self.max_shift}, "
                f"percentile={self.percentile})")

    def embed_detailed(self, images) -> EmbedResult:
        """float32 [N, size*size*3] unit vectors; ok=False only for flat (constant) images.

        Compiled once per image size and batch bucket (8, 16, 32 or 64 images; larger sets go
        64 at a time, the last batch padded): a few programs serve every batch of a run."""
        ims = as_images(images)
        emb = np.zeros((len(ims), self.dim), np.float32)
        ok = np.zeros(len(ims), bool)
        for shape in dict.fromkeys(im.shape for im in ims):  # one resize per image size
            idx = [i for i, im in enumerate(ims) if im.shape == shape]
            for s in range(0, len(idx), 64):
                part = idx[s:s + 64]
                x = np.stack([ims[i] for i in part] + [ims[part[0]]] * (_bucket(len(part)) - len(part)))
                e, k = _pixel_features_jit(x.astype(np.float32), self.size)
                emb[part], ok[part] = np.asarray(e)[:len(part)], np.asarray(k)[:len(part)]
        return EmbedResult(emb, ok, ["pixels" if k else "flat_image" for k in ok])

    def embed(self, images) -> Tuple[np.ndarray, np.ndarray]:
        """uint8 [N, H, W, 3] -> (float32 [N, size*size*3], ok bool [N])."""
        r = self.embed_detailed(images)
        return r.embeddings, r.ok

    def _crops(self, ims: List[np.ndarray], dy: int, dx: int) -> List[np.ndarray]:
        """Each image's centre crop (margin max_shift; less for images under 4 * max_shift + 1
        px) moved by (dy, dx) px: the same-size windows the near-copy check compares."""
        out = []
        for im in ims:
            h, w = im.shape[:2]
            m = min(self.max_shift, (min(h, w) - 1) // 4)
            y, x = m + max(-m, min(m, dy)), m + max(-m, min(m, dx))
            out.append(im[y:h - 2 * m + y, x:w - 2 * m + x])
        return out

    def near_copy_embed(self, images) -> EmbedResult:
        """The reference side of the near-copy check: vectors of the centre crops."""
        return self.embed_detailed(self._crops(as_images(images), 0, 0))

    def near_copy_shifts(self, images) -> Tuple[np.ndarray, np.ndarray]:
        """The candidate side: (float32 [S, N, size*size*3], the vectors of the crops moved by
        every (dy, dx) in [-max_shift, max_shift]^2, S = (2 max_shift + 1)^2; ok bool [N])."""
        ims = as_images(images)
        steps = range(-self.max_shift, self.max_shift + 1)
        embs = [self.embed_detailed(self._crops(ims, dy, dx)) for dy in steps for dx in steps]
        return np.stack([e.embeddings for e in embs]), embs[0].ok


def pixel_features(images, size: int = 16, scale: float = 1.0 / 255.0):
    """PixelEmbedder's vectors in pure JAX (jit-able, used inside evolve's fitness).

    images float [N, H, W, C], C = 1 (replicated to 3) or 3; `scale` maps them
    to a 0..1-wide range: 1/255 for pixel values, 0.5 for generator output in
    [-1, 1] (the offset is removed with the mean, so both give the same vectors).
    Returns (float32 [N, size*size*3] unit vectors, ok bool [N]); an image is
    not ok (zeros) when it is flat: centred norm <= 1e-3 after scaling.
    """
    x = jnp.asarray(images, jnp.float32) * scale
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    n = x.shape[0]
    small = jax.image.resize(x, (n, size, size, 3), "linear", antialias=True).reshape(n, -1)
    small = small - jnp.mean(small, axis=1, keepdims=True)
    norm = jnp.linalg.norm(small, axis=1, keepdims=True)
    ok = norm[:, 0] > 1e-3  # flat image: only rounding residue is left
    emb = jnp.where(ok[:, None], small / jnp.maximum(norm, 1e-12), 0.0)
    return emb, ok


_pixel_features_jit = jax.jit(pixel_features, static_argnums=1)


def _bucket(n: int) -> int:
    """The batch size n images are padded to: the next of 8, 16, 32, 64."""
    return next(b for b in (8, 16, 32, 64) if n <= b)
