"""Per-class Gaussian-mixture and kernel-density baselines on PCA of the pixels.

Why: before crediting a GAN (or VAE) with realistic synthetic faces, compare it
with the simplest generators that still know the class: fit, for each class,
a density on a low-dimensional linear projection of the pixels and sample from
it. These models mostly reproduce the class mean and its main modes of
variation (blurry faces), which is the bar a learned generator must clear.

Per class c with n_c images (flattened to D = H*W*C values in [-1, 1]):

1. PCA with ``min(pca_dim, n_c - 1, D)`` whitened components (an n_c-image
   set spans at most n_c - 1 directions around its mean); components with
   (near) zero variance are dropped, so identical images give the mean image.
2. ``kind='gmm'``: a Gaussian mixture (``sklearn.mixture.GaussianMixture``)
   with ``min(n_components, n_c)`` components on the whitened coordinates.
   ``kind='kde'``: a Gaussian kernel density (``sklearn.neighbors.KernelDensity``)
   with one isotropic bandwidth h in whitened units (each coordinate has unit
   variance), chosen by ``bandwidth``:
   * ``'scott'`` (default): h = n^(-1/(d+4)) (Scott's rule for unit variance);
   * ``'silverman'``: h = (n (d + 2) / 4)^(-1/(d+4));
   * ``'cv'``: the h of 12 log-spaced values in [0.05, 2] x Scott's h with the
     best held-out log-likelihood (k-fold, k = min(5, n_c));
   * a float: used as is.
3. Sampling (seeded numpy, not sklearn's sampler, so each call with a new seed
   differs): GMM -- a component by weight, then its Gaussian; KDE -- a random
   training point plus N(0, h^2 I); then inverse PCA, clip, round to uint8.

Classes need at least 2 images (``fit_density`` raises ``ValueError`` naming
the classes with fewer).

API: ``fit_density(images_uint8 [N,H,W,C], labels [N], kind, n_components,
pca_dim, seed, ...) -> DensityModel``; ``sample_density(model, labels [M], seed)
-> uint8 [M, H, W, C]``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KernelDensity

from jaxgen.data.folder import to_float, to_uint8

MIN_IMAGES_PER_CLASS = 2


@dataclasses.dataclass
class ClassDensity:
    """One class: PCA (None if the class has no variance), the fitted density
    (GaussianMixture or KernelDensity, or None), its training-set size, the
    effective dimensions and (KDE) the bandwidth in whitened units."""
    pca: Any
    density: Any
    num_images: int
    pca_dim: int
    n_components: int = 0
    bandwidth: Optional[float] = None
    mean: Optional[np.ndarray] = None     # flattened class mean in [-1, 1]
    points: Optional[np.ndarray] = None   # KDE: whitened training coordinates [n, d]


@dataclasses.dataclass
class DensityModel:
    """Per-class densities (dict class index -> ClassDensity) for images of
    ``image_shape`` (H, W, C); ``kind`` is 'gmm' or 'kde'."""
    kind: str
    image_shape: Tuple[int, int, int]
    classes: Dict[int, ClassDensity]
    settings: Dict[str, Any]


def _scott(n: int, d: int) -> float:
    return float(n ** (-1.0 / (d + 4)))


def _bandwidth(z: np.ndarray, rule: Union[str, float], seed: int) -> float:
    n, d = z.shape
    if not isinstance(rule, str):
        if not float(rule) > 0:
            raise ValueError(f"bandwidth must be > 0, got {rule}")
        return float(rule)
    if rule == "scott":
        return _scott(n, d)
    if rule == "silverman":
        return float((n * (d + 2) / 4.0) ** (-1.0 / (d + 4)))
    if rule == "cv":
        grid = _scott(n, d) * np.geomspace(0.05, 2.0, 12)
        cv = KFold(min(5, n), shuffle=True, random_state=seed)
        search = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": grid}, cv=cv)
        search.fit(z)
        return float(search.best_params_["bandwidth"])
    raise ValueError(f"bandwidth must be 'scott', 'silverman', 'cv' or a number, got {rule!r}")


def _fit_class(x: np.ndarray, kind: str, n_components: int, pca_dim: int, seed: int,
               bandwidth, covariance_type: str, reg_covar: float) -> ClassDensity:
    n, dim = x.shape
    mean = x.mean(axis=0)
    k = max(0, min(int(pca_dim), n - 1, dim)) if np.any(x != x[:1]) else 0
    pca = PCA(n_components=k, whiten=True, random_state=seed).fit(x) if k else None
    if pca is not None:   # drop directions without variance (duplicates, constant pixels)
        ev = pca.explained_variance_
        keep = int(np.sum(ev > 1e-6 * ev[0])) if ev[0] > 1e-12 else 0
        if keep < k:
            k = keep
            pca = PCA(n_components=k, whiten=True, random_state=seed).fit(x) if k else None
    if pca is None:
        return ClassDensity(None, None, n, 0, mean=mean)
    z = pca.transform(x)
    if kind == "gmm":
        m = min(int(n_components), n)
        gmm = GaussianMixture(m, covariance_type=covariance_type, reg_covar=reg_covar,
                              random_state=seed, n_init=1).fit(z)
        return ClassDensity(pca, gmm, n, k, n_components=m, mean=mean)
    h = _bandwidth(z, bandwidth, seed)
    kde = KernelDensity(kernel="gaussian", bandwidth=h).fit(z)
    return ClassDensity(pca, kde, n, k, bandwidth=h, mean=mean, points=z)


def fit_density(images_uint8, labels, kind: str = "gmm", n_components: int = 4,
                pca_dim: int = 32, seed: int = 0, bandwidth: Union[str, float] = "scott",
                covariance_type: str = "full", reg_covar: float = 1e-3) -> DensityModel:
    """Fit one PCA + density per class present in ``labels``.

    images_uint8: [N, H, W, C] uint8; labels: int [N]. kind: 'gmm' or 'kde'.
    n_components: GMM components (clipped to the class size). pca_dim: PCA
    dimensions (clipped to n_c - 1). bandwidth: KDE rule or value (module doc).
    covariance_type / reg_covar: passed to GaussianMixture (whitened units).
    """
    images = np.asarray(images_uint8)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({len(images)},), got "
                         f"{labels.dtype} {labels.shape}")
    if kind not in ("gmm", "kde"):
        raise ValueError(f"kind must be 'gmm' or 'kde', got {kind!r}")
    if int(n_components) < 1 or int(pca_dim) < 1:
        raise ValueError(f"n_components and pca_dim must be >= 1, got {n_components}, {pca_dim}")
    classes, counts = np.unique(labels, return_counts=True)
    few = {int(c): int(k) for c, k in zip(classes, counts) if k < MIN_IMAGES_PER_CLASS}
    if len(images) == 0 or few:
        raise ValueError(f"each class needs at least {MIN_IMAGES_PER_CLASS} images to fit a "
                         f"density; too few in class(es) {few or 'all (no images)'} "
                         "(label: count). Add images or drop those classes.")
    x = to_float(images).reshape(len(images), -1)       # float32 [N, D] in [-1, 1]
    fitted = {int(c): _fit_class(x[labels == c], kind, n_components, pca_dim, seed + int(c),
                                 bandwidth, covariance_type, reg_covar) for c in classes}
    settings = dict(n_components=int(n_components), pca_dim=int(pca_dim), seed=int(seed),
                    bandwidth=bandwidth, covariance_type=covariance_type, reg_covar=reg_covar)
    return DensityModel(kind, tuple(int(s) for s in images.shape[1:]), fitted, settings)


def _gmm_sample(gmm, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws [n, d] from a fitted GaussianMixture, in random component order."""
    comp = rng.choice(len(gmm.weights_), size=n, p=gmm.weights_ / gmm.weights_.sum())
    d = gmm.means_.shape[1]
    eps = rng.standard_normal((n, d))
    cov, ct = gmm.covariances_, gmm.covariance_type
    if ct == "full":
        chol = np.linalg.cholesky(cov)                   # [K, d, d]
        return gmm.means_[comp] + np.einsum("nij,nj->ni", chol[comp], eps)
    if ct == "tied":
        return gmm.means_[comp] + eps @ np.linalg.cholesky(cov).T
    if ct == "diag":
        return gmm.means_[comp] + eps * np.sqrt(cov[comp])
    return gmm.means_[comp] + eps * np.sqrt(cov[comp])[:, None]   # spherical


def sample_density(model: DensityModel, labels, seed: int = 0) -> np.ndarray:
    """uint8 images [M, H, W, C], image i drawn from the density of ``labels[i]``.

    Deterministic in ``seed``; each class uses its own stream
    ``default_rng([seed, class])``, so a class's samples do not depend on the
    other labels requested.
    """
    labels = np.asarray(labels).reshape(-1)
    missing = sorted(set(labels.tolist()) - set(model.classes))
    if missing:
        raise ValueError(f"no density was fitted for label(s) {missing}; fitted classes: "
                         f"{sorted(model.classes)}")
    out = np.empty((len(labels), int(np.prod(model.image_shape))), np.float64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        cd, rng = model.classes[int(c)], np.random.default_rng([int(seed), int(c)])
        if cd.pca is None:
            out[idx] = cd.mean
            continue
        if model.kind == "gmm":
            z = _gmm_sample(cd.density, len(idx), rng)
        else:
            z = cd.points[rng.integers(0, len(cd.points), len(idx))]
            z = z + cd.bandwidth * rng.standard_normal(z.shape)
        out[idx] = cd.pca.inverse_transform(z)
    return to_uint8(out.reshape((len(labels),) + model.image_shape))
