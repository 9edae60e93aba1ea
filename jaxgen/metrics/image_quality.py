"""Full-reference image quality: SSIM and PSNR on NHWC batches, jit-compiled.

These compare an image with a reference of the same size (for example a
reconstruction or a projected/inverted face with its source), per image, on
whole batches at once. Inputs are ``[N, H, W, C]`` (or ``[N, H, W]`` for
grayscale) arrays of any real dtype; integer images are converted to float
before any arithmetic, so uint8 differences do not wrap around. Both functions
return ``(per_image [N] float64 numpy, mean float)``; the jitted ``*_batch``
variants return the ``[N]`` jax array and can be used inside other jitted code.

Definitions (chosen to equal ``skimage.metrics`` 0.26):

* ``psnr = 10 log10(data_range^2 / mse)`` with the mse over all pixels and
  channels of one image (``inf`` for identical images), as
  ``peak_signal_noise_ratio``.
* ``ssim``: local means, variances and covariance from a sliding window; with
  ``C1 = (K1 R)^2``, ``C2 = (K2 R)^2`` the SSIM map is
  ``(2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2))`` and the score
  is its mean over the pixels whose window lies fully inside the image (a border
  of ``(win_size - 1) // 2`` is dropped), averaged over channels. This is
  ``structural_similarity(..., channel_axis=-1)``:

  - default: 7x7 uniform window and sample (co)variances, i.e. multiplied by
    ``NP / (NP - 1)`` with ``NP = 49`` (``use_sample_covariance=True``);
  - ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``: the
    setting of Wang et al. (2004), an 11-tap Gaussian (radius
    ``int(3.5 sigma + 0.5)``) and population (co)variances.

  Because only window positions fully inside the image are averaged, the
  filters are computed as separable "valid" correlations and the boundary mode
  of scipy.ndimage never matters.

Precision: everything runs in float32 (fast on accelerators). Two steps keep the
result within ~1e-6 of scikit-image's float64 computation: images are divided
by ``data_range`` first (SSIM is invariant to scaling images, ``R``, ``C1`` and
``C2`` together), and the second moments are taken of images centred on their
per-channel mean, which avoids the ``E[x^2] - E[x]^2`` cancellation (local
(co)variances do not depend on a constant shift; the means are shifted back).
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ssim", "ssim_batch", "psnr", "psnr_batch", "window_taps"]


def window_taps(gaussian_weights: bool = False, sigma: float = 1.5,
                win_size: Optional[int] = None, truncate: float = 3.5) -> np.ndarray:
    """1-D normalised filter taps (float64) of the SSIM window; the 2-D window is their outer product."""
    if gaussian_weights:
        if sigma <= 0:
            raise ValueError("sigma must be positive")
        radius = int(truncate * sigma + 0.5)
        if win_size is not None and win_size != 2 * radius + 1:
            raise ValueError(f"with gaussian_weights the window is {2 * radius + 1} taps "
                             f"(sigma={sigma}, truncate={truncate}); got win_size={win_size}")
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        taps = np.exp(-0.5 * (x / sigma) ** 2)
        return taps / taps.sum()
    win_size = 7 if win_size is None else int(win_size)
    if win_size < 1 or win_size % 2 != 1:
        raise ValueError(f"win_size must be odd and positive, got {win_size}")
    return np.full(win_size, 1.0 / win_size)


def _to_nhwc_float(x) -> jnp.ndarray:
    x = jnp.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected [N, H, W, C] or [N, H, W], got shape {x.shape}")
    return x.astype(jnp.float32)


def _valid_filter(x, taps: Tuple[float, ...]):
    """Separable 'valid' correlation over axes 1 (H) and 2 (W) of [..., H, W, C]."""
    k = len(taps)
    h, w = x.shape[-3], x.shape[-2]
    y = sum(t * x[..., i:h - k + 1 + i, :, :] for i, t in enumerate(taps))
    return sum(t * y[..., :, i:w - k + 1 + i, :] for i, t in enumerate(taps))


@partial(jax.jit, static_argnames=("taps", "k1", "k2", "use_sample_covariance"))
def _ssim_kernel(a, b, data_range, taps, k1, k2, use_sample_covariance):
    a = _to_nhwc_float(a) / data_range
    b = _to_nhwc_float(b) / data_range
    ma = jnp.mean(a, axis=(1, 2), keepdims=True)
    mb = jnp.mean(b, axis=(1, 2), keepdims=True)
    a, b = a - ma, b - mb
    moments = _valid_filter(jnp.stack([a, b, a * a, b * b, a * b]), taps)
    ua, ub, uaa, ubb, uab = moments
    n_window = len(taps) ** 2
    cov_norm = n_window / (n_window - 1) if use_sample_covariance else 1.0
    va = cov_norm * (uaa - ua * ua)
    vb = cov_norm * (ubb - ub * ub)
    vab = cov_norm * (uab - ua * ub)
    ua, ub = ua + ma, ub + mb
    c1, c2 = k1 ** 2, k2 ** 2
    num = (2.0 * ua * ub + c1) * (2.0 * vab + c2)
    den = (ua * ua + ub * ub + c1) * (va + vb + c2)
    return jnp.mean(num / den, axis=(1, 2, 3))


def _check_pair(a, b):
    if np.shape(a) != np.shape(b):
        raise ValueError(f"images must have the same shape, got {np.shape(a)} and {np.shape(b)}")


def _resolve_range(a, data_range) -> float:
    if data_range is not None:
        return float(data_range)
    dtype = np.dtype(getattr(a, "dtype", np.asarray(a).dtype))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.max - info.min)
    raise ValueError("data_range is required for floating-point images")


def ssim_batch(a, b, data_range=None, win_size: Optional[int] = None,
               gaussian_weights: bool = False, sigma: float = 1.5,
               use_sample_covariance: bool = True, k1: float = 0.01,
               k2: float = 0.03) -> jnp.ndarray:
    """Per-image SSIM ``[N]`` (float32 jax array) of two NHWC (or NHW) batches."""
    _check_pair(a, b)
    taps = window_taps(gaussian_weights, sigma, win_size)
    h, w = np.shape(a)[1:3]
    if min(h, w) < len(taps):
        raise ValueError(f"images {h}x{w} are smaller than the {len(taps)}x{len(taps)} window")
    return _ssim_kernel(a, b, jnp.float32(_resolve_range(a, data_range)),
                        tuple(float(t) for t in taps), float(k1), float(k2),
                        bool(use_sample_covariance))


def ssim(a, b, data_range=None, win_size: Optional[int] = None,
         gaussian_weights: bool = False, sigma: float = 1.5,
         use_sample_covariance: bool = True, k1: float = 0.01,
         k2: float = 0.03) -> Tuple[np.ndarray, float]:
    """SSIM of each image pair: ``(values [N] float64, mean)``.

    ``data_range`` (max - min possible value, e.g. 255 or 1.0) is required for
    float images; for integer images it defaults to the dtype's range.
    """
    vals = np.asarray(ssim_batch(a, b, data_range, win_size, gaussian_weights, sigma,
                                 use_sample_covariance, k1, k2), np.float64)
    return vals, float(vals.mean())


@jax.jit
def _psnr_kernel(a, b, data_range):
    diff = (_to_nhwc_float(a) - _to_nhwc_float(b)) / data_range
    mse = jnp.mean(diff * diff, axis=(1, 2, 3))
    return -10.0 * jnp.log10(mse)


def psnr_batch(a, b, data_range=None) -> jnp.ndarray:
    """Per-image PSNR in dB ``[N]`` (float32 jax array; ``inf`` where the images are equal)."""
    _check_pair(a, b)
    return _psnr_kernel(a, b, jnp.float32(_resolve_range(a, data_range)))


def psnr(a, b, data_range=None) -> Tuple[np.ndarray, float]:
    """PSNR of each image pair in dB: ``(values [N] float64, mean)``."""
    vals = np.asarray(psnr_batch(a, b, data_range), np.float64)
    return vals, float(vals.mean())
