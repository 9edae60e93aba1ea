"""What every identity embedder offers (`jaxgen.identity.search` runs the check with one).

`IdentityEmbedder`: `embed(uint8 [N, H, W, 3]) -> (float32 [N, D], ok bool [N])`, rows with
ok=False are zeros; `EmbedResult` adds one status string per image (`embed_with_status`
asks an embedder for it). `as_images` checks and splits the images every embedder takes.
"""
from __future__ import annotations

from typing import List, NamedTuple, Protocol, Tuple, runtime_checkable

import numpy as np

__all__ = ["IdentityEmbedder", "EmbedResult", "embed_with_status"]


@runtime_checkable
class IdentityEmbedder(Protocol):
    """Any identity model: `embed(uint8 [N, H, W, 3]) -> (float32 [N, dim], bool [N])`.

    `threshold` is the distance (Euclidean, in embedding space) below which two
    images count as the same identity; `name` labels reports.
    """
    name: str
    dim: int
    threshold: float

    def embed(self, images) -> Tuple[np.ndarray, np.ndarray]:
        ...


class EmbedResult(NamedTuple):
    """Embeddings float32 [N, D], ok bool [N], and one status string per image."""
    embeddings: np.ndarray
    ok: np.ndarray
    status: List[str]


def as_images(images) -> List[np.ndarray]:
    """uint8 [N, H, W, 3] array or a sequence of uint8 [H, W, 3] -> list of arrays."""
    if not isinstance(images, (list, tuple)):  # numpy / JAX array
        arr = np.asarray(images)
        if arr.ndim != 4:
            raise ValueError(f"images must be [N, H, W, 3], got shape {arr.shape}")
        images = list(arr)
    out = []
    for i, im in enumerate(images):
        im = np.asarray(im)
        if im.dtype != np.uint8:
            raise ValueError(f"image {i}: dtype must be uint8 (0..255), got {im.dtype}")
        if im.ndim != 3 or im.shape[-1] != 3 or min(im.shape[:2]) < 1:
            raise ValueError(f"image {i}: shape must be [H, W, 3], got {im.shape}")
        out.append(np.ascontiguousarray(im))
    return out


def embed_with_status(embedder, images) -> EmbedResult:
    """`embedder.embed_detailed(images)` if it has one, else `embed` with generic statuses."""
    if hasattr(embedder, "embed_detailed"):
        return embedder.embed_detailed(images)
    emb, ok = embedder.embed(images)
    ok = np.asarray(ok, bool)
    return EmbedResult(np.asarray(emb, np.float32), ok,
                       ["embedded" if k else "not_embedded" for k in ok])
