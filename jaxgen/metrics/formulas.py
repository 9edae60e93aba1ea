"""Metric formulas on feature vectors: FID, KID, Inception Score, precision/recall.

Everything here takes *features* (or classifier outputs) and returns numbers; the
networks that produce the features live elsewhere. Shapes:

* features: ``[N, D]`` float arrays (e.g. Inception pool3, D=2048, or VGG16, D=4096);
* Inception Score input: ``[N, C]`` logits or probabilities (C=1008 for Inception);
* statistics: ``mu [D]`` and ``sigma [D, D]``, float64 numpy.

Why each formula is computed the way it is:

* **Statistics** are float64 numpy with ``np.cov`` semantics (unbiased,
  ``rowvar=False``), as pytorch-fid does.
* **FID** ``|mu1-mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)``, in float64 numpy.
  ``S1 S2`` is not symmetric, but it is similar to the PSD matrix
  ``M = sqrt(S1) S2 sqrt(S1)``, so ``tr sqrt(S1 S2) = sum_i sqrt(lambda_i(M))``.
  The default ``method="eigh"`` computes ``sqrt(S1)`` from a symmetric
  eigendecomposition (negative round-off eigenvalues clipped to 0), then the
  eigenvalues of ``M`` with ``eigvalsh`` (again clipped). It never produces complex
  numbers, needs no ``eps`` fallback for singular products, and is about 10x
  faster than a general Schur ``sqrtm`` at D=2048. When N < D the covariances are
  rank deficient and every method only differs in how it sums round-off-level
  eigenvalues: on the pytorch-fid fixture (N=300/250, D=2048) the result differs
  from the official ``scipy.linalg.sqrtm`` value by 8.2e-6 absolute (2.8e-8
  relative); with full-rank covariances (D=64) by about 1e-14.
  ``method="sqrtm"`` follows pytorch-fid's procedure (Schur square root of
  ``S1 S2``, ``eps*I`` offset if it is not finite, real part) for bit-level
  comparisons.
* **KID** is the unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / D + 1)^3``, averaged over random subsets of size
  ``m = min(N1, N2, max_subset_size)`` drawn without replacement, as in
  Binkowski et al. and StyleGAN2-ADA. The Gram matrices are computed by one
  jit-compiled ``lax.map`` over subsets; products are float32 by default (with
  HIGHEST matmul precision) and the kernel values and their sums are float64,
  because the estimator is a small difference of large sums.
* **Inception Score** ``exp(E_x KL(p(y|x) || p(y)))`` per split. Logits are
  turned into probabilities with a softmax over *all* given classes: the 1008
  Inception outputs are used as-is, as StyleGAN2-ADA's ``inception_score.py``
  does (its detector also drops the output bias, ``no_output_bias=True``; pass
  logits computed the same way to reproduce its numbers). Splits are
  ``[i*N//S, (i+1)*N//S)`` and the std is the population std (ddof=0).
* **Precision/recall** (Kynkaanniemi et al. 2019): the radius of a sample is the
  distance to its k-th nearest neighbour in its own set, excluding itself (the
  (k+1)-th smallest distance with self included, as ``kthvalue(k+1)`` in
  StyleGAN2-ADA); a probe is "in" a manifold if it is within the radius of at
  least one of its samples. Squared distances are computed in float32 blocks of
  ``row_batch x col_batch`` with a running top-(k+1) over column blocks, so
  memory is O(row_batch * col_batch) and N=10k..100k fits. (NVIDIA casts the
  features to float16; float32 here can flip samples lying on a radius.)
"""
from __future__ import annotations

from functools import partial
from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax import lax

_HIGHEST = lax.Precision.HIGHEST

# --------------------------------------------------------------------------- statistics


def _as_2d_float64(feats, name: str = "feats") -> np.ndarray:
    a = np.asarray(feats, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be [N, D], got shape {a.shape}")
    return a


def feature_stats(feats) -> Tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of ``[N, D]`` features."""
    a = _as_2d_float64(feats)
    if a.shape[0] < 2:
        raise ValueError("need at least 2 samples for a covariance")
    return a.mean(axis=0), np.atleast_2d(np.cov(a, rowvar=False))


# --------------------------------------------------------------------------- FID


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    lam, u = np.linalg.eigh(s1)
    root1 = (u * np.sqrt(np.clip(lam, 0.0, None))) @ u.T
    ev = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def _trace_sqrt_product_sqrtm(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:

    root = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(root).all():
        offset = np.eye(s1.shape[0]) * eps
        root = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(root.imag))} in sqrt(S1 S2)")
        root = root.real
    return float(np.trace(root))


def frechet_distance_terms(mu1, sigma1, mu2, sigma2, method: str = "eigh",
                           eps: float = 1e-6) -> Dict[str, float]:
    """The FID and its parts: ``mu_diff_sq``, ``trace_sigma1``, ``trace_sigma2``,
    ``trace_sqrt_s1s2`` and ``fid`` (see the module docstring for ``method``)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shape mismatch: {mu1.shape} {s1.shape} {mu2.shape} {s2.shape}")
    if method == "eigh":
        tr_sqrt = _trace_sqrt_product_eigh(s1, s2)
    elif method == "sqrtm":
        tr_sqrt = _trace_sqrt_product_sqrtm(s1, s2, eps)
    else:
        raise ValueError(f"unknown method {method!r} (use 'eigh' or 'sqrtm')")
    diff = mu1 - mu2
    terms = dict(mu_diff_sq=float(diff.dot(diff)), trace_sigma1=float(np.trace(s1)),
                 trace_sigma2=float(np.trace(s2)), trace_sqrt_s1s2=tr_sqrt)
    terms["fid"] = float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return terms


def frechet_distance(mu1, sigma1, mu2, sigma2, method: str = "eigh", eps: float = 1e-6) -> float:
    """Frechet (Inception) Distance between two Gaussians, float64."""
    return frechet_distance_terms(mu1, sigma1, mu2, sigma2, method=method, eps=eps)["fid"]


# --------------------------------------------------------------------------- KID


def kid_subset_indices(n1: int, n2: int, num_subsets: int = 100, max_subset_size: int = 1000,
                       seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Row indices ``[num_subsets, m]`` into each set, drawn without replacement per subset."""
    m = min(n1, n2, max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.default_rng(seed)
    idx1 = np.empty((num_subsets, m), np.int32)
    idx2 = np.empty((num_subsets, m), np.int32)
    for s in range(num_subsets):
        idx1[s] = rng.choice(n1, m, replace=False)
        idx2[s] = rng.choice(n2, m, replace=False)
    return idx1, idx2


@jax.jit
def _kid_per_subset(f1, f2, idx1, idx2):
    """Unbiased MMD^2 for each subset; call under ``jax.enable_x64(True)``."""
    dim = f1.shape[1]
    m = idx1.shape[1]

    def kernel(a, b):
        gram = jnp.matmul(a, b.T, precision=_HIGHEST).astype(jnp.float64)
        return (gram / dim + 1.0) ** 3

    def one(ix):
        x, y = f1[ix[0]], f2[ix[1]]
        kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
        within = kxx.sum() - jnp.trace(kxx) + kyy.sum() - jnp.trace(kyy)
        return (within / (m - 1) - 2.0 * kxy.sum() / m) / m

    return lax.map(one, (idx1, idx2))


def kernel_inception_distance(f1, f2, num_subsets: int = 100, max_subset_size: int = 1000,
                              seed: int = 0, gram_dtype=jnp.float32) -> Tuple[float, float]:
    """KID between ``[N1, D]`` and ``[N2, D]`` features: (mean, std) over subsets.

    ``gram_dtype=jnp.float64`` computes the dot products in double as well.
    """
    f1, f2 = np.asarray(f1), np.asarray(f2)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D, got {f1.shape} and {f2.shape}")
    idx1, idx2 = kid_subset_indices(f1.shape[0], f2.shape[0], num_subsets, max_subset_size, seed)
    with jax.enable_x64(True):
        vals = _kid_per_subset(jnp.asarray(f1, gram_dtype), jnp.asarray(f2, gram_dtype),
                               jnp.asarray(idx1), jnp.asarray(idx2))
        vals = np.asarray(vals, dtype=np.float64)
    return float(vals.mean()), float(vals.std())


# --------------------------------------------------------------------------- Inception Score


def _looks_like_probs(x: np.ndarray) -> bool:
    return bool(x.min() >= 0 and x.max() <= 1 and np.allclose(x.sum(axis=1), 1.0, atol=1e-3))


@partial(jax.jit, static_argnames=("num_splits", "from_logits"))
def _split_scores(x, num_splits: int, from_logits: bool):
    n = x.shape[0]
    bounds = [i * n // num_splits for i in range(num_splits + 1)]
    seg = jnp.asarray(np.repeat(np.arange(num_splits), np.diff(bounds)))
    counts = jnp.asarray(np.diff(bounds), jnp.float32)
    if from_logits:
        logp = jax.nn.log_softmax(x, axis=1)
        p = jnp.exp(logp)
    else:
        p = x
    marginal = jax.ops.segment_sum(p, seg, num_segments=num_splits) / counts[:, None]
    if from_logits:
        kl = jnp.sum(p * (logp - jnp.log(marginal[seg])), axis=1)
    else:  # 0 log 0 = 0 for exactly-zero probabilities
        kl = jnp.sum(jax.scipy.special.xlogy(p, p) - jax.scipy.special.xlogy(p, marginal[seg]), axis=1)
    mean_kl = jax.ops.segment_sum(kl, seg, num_segments=num_splits) / counts
    return jnp.exp(mean_kl)


def inception_score(logits_or_probs, num_splits: int = 10,
                    from_logits: Optional[bool] = None) -> Tuple[float, float]:
    """Inception Score (mean, std over splits) from ``[N, C]`` logits or probabilities.

    ``from_logits=None`` treats the input as probabilities if every row lies in
    [0, 1] and sums to 1 (within 1e-3), else as logits (softmax over all C).
    """
    x = np.asarray(logits_or_probs, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected [N, C], got {x.shape}")
    if not 1 <= num_splits <= x.shape[0]:
        raise ValueError(f"num_splits={num_splits} must be in [1, N={x.shape[0]}]")
    if from_logits is None:
        from_logits = not _looks_like_probs(x)
    scores = np.asarray(_split_scores(jnp.asarray(x), num_splits, bool(from_logits)), np.float64)
    return float(scores.mean()), float(scores.std())


# --------------------------------------------------------------------------- precision/recall


def _sq_dists(a, b):
    aa = jnp.sum(a * a, axis=1)
    bb = jnp.sum(b * b, axis=1)
    ab = jnp.matmul(a, b.T, precision=_HIGHEST)
    return jnp.maximum(aa[:, None] + bb[None, :] - 2.0 * ab, 0.0)


@partial(jax.jit, static_argnames=("k",))
def _kth_sq_dist(rows, col_blocks, col_valid, k: int):
    """(k+1)-th smallest squared distance from each row to the valid columns."""
    def body(best, inp):
        cols, valid = inp
        d = jnp.where(valid[None, :], _sq_dists(rows, cols), jnp.inf)
        best = lax.top_k(jnp.concatenate([best, -d], axis=1), k + 1)[0]
        return best, None

    init = jnp.full((rows.shape[0], k + 1), -jnp.inf, rows.dtype)
    best, _ = lax.scan(body, init, (col_blocks, col_valid))
    return -best[:, k]


@jax.jit
def _within_any(probes, col_blocks, radius_blocks):
    """Whether each probe is within the (squared) radius of some column sample."""
    def body(hit, inp):
        cols, r2 = inp
        return hit | jnp.any(_sq_dists(probes, cols) <= r2[None, :], axis=1), None

    hit, _ = lax.scan(body, jnp.zeros(probes.shape[0], bool), (col_blocks, radius_blocks))
    return hit


def _blocks(x: np.ndarray, size: int, fill=0.0) -> np.ndarray:
    pad = -x.shape[0] % size
    x = np.concatenate([x, np.full((pad,) + x.shape[1:], fill, x.dtype)]) if pad else x
    return x.reshape((-1, size) + x.shape[1:])


def _manifold_coverage(manifold: np.ndarray, probes: np.ndarray, k: int, row_batch: int,
                       col_batch: int) -> float:
    n = manifold.shape[0]
    if n < k + 1:
        raise ValueError(f"need more than k={k} samples per set, got {n}")
    col_batch = min(col_batch, n)
    cols = jnp.asarray(_blocks(manifold, col_batch))
    valid = jnp.asarray(_blocks(np.ones(n, bool), col_batch, False))
    radii = []
    for rows in _blocks(manifold, row_batch):
        radii.append(np.asarray(_kth_sq_dist(jnp.asarray(rows), cols, valid, k)))
    radii = np.concatenate(radii)[:n]
    radius_blocks = jnp.asarray(_blocks(radii, col_batch, -np.inf))
    hits = [np.asarray(_within_any(jnp.asarray(p), cols, radius_blocks))
            for p in _blocks(probes, row_batch)]
    return float(np.concatenate(hits)[:probes.shape[0]].mean())


def precision_recall(real_feats, fake_feats, k: int = 3, row_batch: int = 1024,
                     col_batch: int = 4096) -> Tuple[float, float]:
    """Improved precision (fakes inside the real manifold) and recall (reals inside the fake one)."""
    real = np.asarray(real_feats, np.float32)
    fake = np.asarray(fake_feats, np.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D, got {real.shape} and {fake.shape}")
    row_batch = min(row_batch, max(real.shape[0], fake.shape[0]))
    precision = _manifold_coverage(real, fake, k, row_batch, col_batch)
    recall = _manifold_coverage(fake, real, k, row_batch, col_batch)
    return precision, recall
