"""ADA's differentiable augmentation pipeline ('bgc' and its parts) in JAX.

What: the augmentations of "Training Generative Adversarial Networks with
Limited Data" (Karras et al. 2020), computed as in NVIDIA's reference
`AugmentPipe`: pixel blitting (x-flip, 90-degree rotations, integer
translation), general geometry (isotropic scale, rotation, anisotropic scale,
fractional translation) and colour (brightness, contrast, luma flip, hue,
saturation). Every transform of every sample is switched on independently with
probability `p * multiplier`; `p` is a traced scalar, so one compiled function
serves the whole run while ADA moves `p` (see `ada_adjust`).

Why differentiable: D sees augmented fakes (G's gradient flows back through
the augmentation) and augmented reals in R1 (the gradient of D w.r.t. the
*un-augmented* reals, differentiated again w.r.t. D's parameters). All ops are
linear in the images (gathers, FIR convolutions, matrix products), so JAX's
derivatives of every order exist and are NaN-free.

Shapes: images are NHWC float32 [N, H, W, C] with C in {1, 3} and values about
[-1, 1]; the result has the same shape and dtype.

How:
  * Geometry: each sample gets an inverse homogeneous matrix
    `G_inv = G_blit @ G_general` mapping output pixel coordinates (origin at the
    image centre, x right, y down) to input ones. Samples whose `G_general` is
    the identity (only blits or nothing drawn) are moved exactly, by an integer
    gather with reflected indices: this makes x-flip and 90-degree rotation
    lossless. NVIDIA resamples those too, and because the sym6 filter is
    asymmetric its flips are slightly filtered; ours are exact. Every other
    sample goes through NVIDIA's resampler with `G_inv`: reflect-pad, 2x
    upsample with the sym6 low-pass filter, bilinear sampling on a grid with a
    3-pixel border, sym6 low-pass, 2x downsample and crop.
    NVIDIA's padding depends on the data: it is the batch-wide footprint of
    the transformed corners plus the filter support, clamped to (W-1, H-1)
    (the most a single reflection allows). Shapes must be static under jit, so
    we always pad by that clamp, (W-1, H-1) on every side. Wherever NVIDIA's
    margin covers the footprint, the extra padding is never sampled and the
    result is the same. Where NVIDIA clamps, ours clamps the same way (zeros
    beyond). For zoom-outs NVIDIA's 6-pixel filter allowance is a little short
    and its outermost output pixels pick up some zero padding; ours do not.
    The cost is the 2x-upsampled padded image, about (6H) x (6W) pixels per
    image. FIR filters are written as sums of shifted slices (see `_taps`).
  * Colour: a per-sample 4x4 homogeneous matrix C (brightness, contrast, luma
    flip, hue rotation about the luma axis v = [1, 1, 1] / sqrt(3), saturation)
    applied to RGB as `C[:3, :3] @ rgb + C[:3, 3]`. For one channel NVIDIA
    skips hue and saturation and applies the mean of C's first three rows, so
    brightness, contrast *and luma flip* act (the flip negates the image); we
    do the same.
  * Exactness at p = 0: a sample whose matrix is exactly the identity is passed
    through unchanged (`jnp.where`), so p = 0 returns the input bit for bit.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Low-pass decomposition filter of the Symlet-6 wavelet (public constants).
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057,
        -0.048311742585633, 0.4910559419267466, 0.787641141030194,
        0.3379294217276218, -0.07263752278646252, -0.021060292512300564,
        0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)
_F = np.asarray(SYM6, np.float64) / np.sum(SYM6)  # normalised: DC gain 1
_HZ_PAD = len(SYM6) // 4  # border of the sampling grid, in output pixels (3)

_BLIT = ("xflip", "rotate90", "xint")
_GEOM = ("scale", "rotate", "aniso", "xfrac")
_COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
_PRESETS = {"b": _BLIT, "g": _GEOM, "c": _COLOR}
_ALIASES = {"blit": "b", "geom": "g", "color": "c"}


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
    """Probability multipliers (0 = off) and strengths; NVIDIA's defaults."""
    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0
    xint_max: float = 0.125      # integer translation range, fraction of size
    scale: float = 0.0
    rotate: float = 0.0
    aniso: float = 0.0
    xfrac: float = 0.0
    scale_std: float = 0.2       # log2 std of isotropic scaling
    rotate_max: float = 1.0      # rotation range, 1 = full circle
    aniso_std: float = 0.2       # log2 std of anisotropic scaling
    xfrac_std: float = 0.125     # std of fractional translation, fraction of size
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    brightness_std: float = 0.2
    contrast_std: float = 0.5    # log2 std
    hue_max: float = 1.0         # 1 = full circle
    saturation_std: float = 1.0  # log2 std

    @classmethod
    def from_name(cls, name: str) -> "AugmentSpec":
        """'b' (blit), 'g' (geom), 'c' (color) or any combination: 'bg', 'bgc', 'gc'.

        'blit', 'geom' and 'color' are accepted too. NVIDIA's 'f', 'n' and
        'cutout' parts (image filtering, noise, cutout) are not implemented.
        """
        key = _ALIASES.get(name, name)
        if not key or any(ch not in _PRESETS for ch in key):
            raise ValueError(f"unknown/unsupported augment pipe {name!r}: use a combination "
                             "of 'b', 'g', 'c' (filter/noise/cutout are not implemented)")
        return cls(**{op: 1.0 for ch in key for op in _PRESETS[ch]})

    def any_of(self, names) -> bool:
        """Whether any of the transforms `names` is switched on (static)."""
        return any(getattr(self, n) > 0 for n in names)


# ----------------------------------------------------------------- matrices

# Full float32 products: TF32/bf16 passes (GPU/TPU defaults) would move sample
# coordinates by a fraction of a pixel and break the exact-identity tests.
_HIGHEST = lax.Precision.HIGHEST
_mm = functools.partial(jnp.matmul, precision=_HIGHEST)


def _mat(rows, n: int) -> jnp.ndarray:
    """[N, R, K] from R rows of K entries, each a scalar or an [N] array."""
    return jnp.stack([jnp.stack([jnp.broadcast_to(jnp.asarray(e, jnp.float32), (n,))
                                 for e in row], -1) for row in rows], -2)


def translate2d(tx, ty, n):
    """[N, 3, 3] translation by (tx, ty) (scalars or [N])."""
    return _mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]], n)


def scale2d(sx, sy, n):
    """[N, 3, 3] scaling by (sx, sy) (scalars or [N])."""
    return _mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], n)


def rotate2d(cos, sin, n):
    """[N, 3, 3] rotation given its cos and sin (scalars or [N])."""
    return _mat([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], n)


class _Draws:
    """Per-sample random numbers of `sample_matrices`, handed out column by column.

    Why: all random numbers come from two draws, uniform [N, 24] and normal
    [N, 8] (one threefry each: fast to compile); the transforms take
    consecutive columns, so the order of the calls fixes which numbers each
    transform gets and must not change.
    """

    def __init__(self, rng: jax.Array, n: int):
        """Draw the two tables for a batch of `n` samples from key `rng`."""
        k_u, k_n = jax.random.split(rng)
        self.n = n
        self._src = {"u": jax.random.uniform(k_u, (n, 24)), "n": jax.random.normal(k_n, (n, 8))}
        self._cols = {"u": 0, "n": 0}

    def _take(self, kind: str, shape) -> jnp.ndarray:
        """The next prod(shape) columns of table `kind`, as [N, *shape]."""
        src, i, k = self._src[kind], self._cols[kind], int(np.prod(shape))
        assert i + k <= src.shape[1], "more random numbers drawn than reserved"
        self._cols[kind] = i + k
        return src[:, i:i + k].reshape((self.n,) + shape)

    def unif(self, *shape) -> jnp.ndarray:
        """[N, *shape] uniform in [0, 1)."""
        return self._take("u", shape)

    def normal(self, *shape) -> jnp.ndarray:
        """[N, *shape] standard normal."""
        return self._take("n", shape)

    def on(self, prob) -> jnp.ndarray:
        """[N] bool: the transform is enabled for the sample, with probability `prob`."""
        return self.unif() < prob


def _blit_matrix(d: _Draws, p, spec: AugmentSpec, eye3, h: int, w: int) -> jnp.ndarray:
    """G_blit [N, 3, 3]: inverse x-flip, quarter turns and integer translation
    of (h, w) images, each enabled per sample; starts from eye3 [N, 3, 3]."""
    n, gb = d.n, eye3
    if spec.xflip > 0:
        i = jnp.where(d.on(spec.xflip * p), jnp.floor(d.unif() * 2), 0.0)
        gb = _mm(gb, scale2d(1 - 2 * i, 1, n))
    if spec.rotate90 > 0:  # rotation by i quarter turns, with exact cos/sin
        i = jnp.where(d.on(spec.rotate90 * p), jnp.floor(d.unif() * 4), 0.0).astype(jnp.int32)
        cs, sn = jnp.array([1., 0., -1., 0.]), jnp.array([0., 1., 0., -1.])
        gb = _mm(gb, rotate2d(cs[i], sn[i], n))
    if spec.xint > 0:
        t = (d.unif(2) * 2 - 1) * spec.xint_max
        t = jnp.where(d.on(spec.xint * p)[:, None], t, 0.0)
        gb = _mm(gb, translate2d(-jnp.round(t[:, 0] * w), -jnp.round(t[:, 1] * h), n))
    return gb


def _random_rotation(d: _Draws, p_rot, spec: AugmentSpec) -> jnp.ndarray:
    """[N, 3, 3] rotation by a uniform angle (range spec.rotate_max turns), on with probability p_rot."""
    theta = (d.unif() * 2 - 1) * np.pi * spec.rotate_max
    theta = jnp.where(d.on(p_rot), theta, 0.0)
    return rotate2d(jnp.cos(theta), jnp.sin(theta), d.n)


def _general_matrix(d: _Draws, p, spec: AugmentSpec, eye3, h: int, w: int) -> jnp.ndarray:
    """G_general [N, 3, 3]: inverse isotropic scale, rotation, anisotropic scale
    and fractional translation of (h, w) images; starts from eye3 [N, 3, 3].

    The rotation is two rotations (before and after the anisotropic scaling),
    each with p_rot, so that P(pre OR post) = p * spec.rotate.
    """
    n, gg = d.n, eye3
    if spec.scale > 0:
        s = jnp.where(d.on(spec.scale * p), jnp.exp2(d.normal() * spec.scale_std), 1.0)
        gg = _mm(gg, scale2d(1 / s, 1 / s, n))
    p_rot = 1 - jnp.sqrt(jnp.clip(1 - spec.rotate * p, 0.0, 1.0))
    if spec.rotate > 0:
        gg = _mm(gg, _random_rotation(d, p_rot, spec))  # before anisotropic scaling
    if spec.aniso > 0:
        s = jnp.where(d.on(spec.aniso * p), jnp.exp2(d.normal() * spec.aniso_std), 1.0)
        gg = _mm(gg, scale2d(1 / s, s, n))
    if spec.rotate > 0:
        gg = _mm(gg, _random_rotation(d, p_rot, spec))  # after anisotropic scaling
    if spec.xfrac > 0:
        t = jnp.where(d.on(spec.xfrac * p)[:, None], d.normal(2) * spec.xfrac_std, 0.0)
        gg = _mm(gg, translate2d(-t[:, 0] * w, -t[:, 1] * h, n))
    return gg


def _hue_rotation(theta: jnp.ndarray, v: jnp.ndarray, n: int) -> jnp.ndarray:
    """[N, 4, 4] rotation of RGB by angles theta [N] about the unit axis v (Rodrigues)."""
    s, co = jnp.sin(theta), jnp.cos(theta)
    cc, (x, y, z) = 1 - co, (v[0], v[1], v[2])
    return _mat([[x * x * cc + co, x * y * cc - z * s, x * z * cc + y * s, 0],
                 [y * x * cc + z * s, y * y * cc + co, y * z * cc - x * s, 0],
                 [z * x * cc - y * s, z * y * cc + x * s, z * z * cc + co, 0],
                 [0, 0, 0, 1]], n)


def _color_matrix(d: _Draws, p, spec: AugmentSpec, c: int) -> jnp.ndarray:
    """C [N, 4, 4]: brightness, contrast, luma flip, hue and saturation (the last
    two only for c > 1 channels), composed left to right, each enabled per sample."""
    n = d.n
    cm = jnp.broadcast_to(jnp.eye(4, dtype=jnp.float32), (n, 4, 4))
    eye4 = cm
    v = jnp.asarray(np.array([1, 1, 1, 0]) / np.sqrt(3), jnp.float32)  # luma axis
    vv = jnp.outer(v, v)
    if spec.brightness > 0:
        b = jnp.where(d.on(spec.brightness * p), d.normal() * spec.brightness_std, 0.0)
        cm = _mm(_mat([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], n), cm)
    if spec.contrast > 0:
        k = jnp.where(d.on(spec.contrast * p), jnp.exp2(d.normal() * spec.contrast_std), 1.0)
        cm = _mm(_mat([[k, 0, 0, 0], [0, k, 0, 0], [0, 0, k, 0], [0, 0, 0, 1]], n), cm)
    if spec.lumaflip > 0:  # Householder reflection of the luma axis
        i = jnp.where(d.on(spec.lumaflip * p), jnp.floor(d.unif() * 2), 0.0)
        cm = _mm(eye4 - 2 * vv * i[:, None, None], cm)
    if spec.hue > 0 and c > 1:  # rotation about the luma axis
        theta = jnp.where(d.on(spec.hue * p), (d.unif() * 2 - 1) * np.pi * spec.hue_max, 0.0)
        cm = _mm(_hue_rotation(theta, v, n), cm)
    if spec.saturation > 0 and c > 1:  # vv^T + (I - vv^T) s, exact identity at s = 1
        s = jnp.where(d.on(spec.saturation * p), jnp.exp2(d.normal() * spec.saturation_std), 1.0)
        cm = _mm(eye4 + (s - 1)[:, None, None] * (eye4 - vv), cm)
    return cm


def sample_matrices(rng: jax.Array, p, spec: AugmentSpec, shape: Tuple[int, ...]):
    """Draw the per-sample transforms for images of `shape` [N, H, W, C].

    Returns (G_blit [N,3,3], G_general [N,3,3], C [N,4,4]): inverse geometric
    matrices (output -> input pixel coordinates, centred) and the colour matrix
    (input -> output colour). A disabled transform contributes an exact identity.
    """
    n, h, w, c = shape
    p = lax.stop_gradient(jnp.asarray(p, jnp.float32))
    d = _Draws(rng, n)
    eye3 = jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), (n, 3, 3))
    gb = _blit_matrix(d, p, spec, eye3, h, w)
    gg = _general_matrix(d, p, spec, eye3, h, w)
    return gb, gg, _color_matrix(d, p, spec, c)


# ------------------------------------------------------------ resampling

def _reflect(i: jnp.ndarray, size: int) -> jnp.ndarray:
    """Reflect integer indices into [0, size) without repeating the edge ('reflect')."""
    if size == 1:
        return jnp.zeros_like(i)
    period = 2 * (size - 1)
    i = jnp.mod(i, period)
    return jnp.where(i >= size, period - i, i)


def _centred_grid(h: int, w: int) -> jnp.ndarray:
    """[3, h*w] homogeneous pixel centres, origin at the image centre."""
    ys, xs = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    return jnp.asarray(np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)]), jnp.float32)


def _gather(x: jnp.ndarray, idx: jnp.ndarray) -> jnp.ndarray:
    """x [N, H, W, C], idx [N, P] flat pixel indices -> [N, P, C]."""
    n, h, w, c = x.shape
    return jnp.take_along_axis(x.reshape(n, h * w, c), idx[:, :, None], axis=1)


def blit(x: jnp.ndarray, g_inv: jnp.ndarray) -> jnp.ndarray:
    """Exact pixel move for integer matrices (flips, quarter turns, integer shifts).

    Output pixel q takes input pixel round(G_inv q), reflected at the borders.
    Quarter turns are integer moves only for square images.
    """
    n, h, w, c = x.shape
    src = _mm(g_inv, _centred_grid(h, w))  # [N, 3, H*W]
    sx = _reflect(jnp.round(src[:, 0] + (w - 1) / 2).astype(jnp.int32), w)
    sy = _reflect(jnp.round(src[:, 1] + (h - 1) / 2).astype(jnp.int32), h)
    return _gather(x, sy * w + sx).reshape(n, h, w, c)


def _taps(x: jnp.ndarray, axis: int, taps, start: int, count: int, stride: int = 1):
    """sum_j taps[j] * x[start + j + stride * q] along `axis`, for q < count.

    FIR filtering as a sum of shifted slices: XLA fuses it into one elementwise
    loop, which is much faster on CPU than a depthwise (dilated) convolution
    and fine on accelerators. Its gradient is written out (`_taps_bwd`), again as
    shifted slices: autodiff's transpose is one padded array per tap, which XLA:CPU
    materialises one by one (ADA's resampling backward: 200 ms -> see bench/RESULTS.md).
    """
    return _fir(x, axis, tuple(float(t) for t in taps), start, count, stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def _fir(x, axis: int, taps: Tuple[float, ...], start: int, count: int, stride: int):
    out = 0.0
    for j, t in enumerate(taps):
        lo = start + j
        out = out + t * lax.slice_in_dim(x, lo, lo + (count - 1) * stride + 1, stride, axis)
    return out


def _fir_fwd(x, axis, taps, start, count, stride):
    return _fir(x, axis, taps, start, count, stride), x.shape[axis]


def _fir_bwd(axis, taps, start, count, stride, length, g):
    """x_bar[start + j + stride q] += taps[j] g[q]: g with stride - 1 zeros after each
    sample, placed at start + k - 1 of a zero line of length + k - 1, correlated with
    the reversed taps (k = len(taps))."""
    k = len(taps)
    u = g
    if stride > 1:
        u = jnp.stack([g] + [jnp.zeros_like(g)] * (stride - 1), axis=axis + 1)
        u = u.reshape(g.shape[:axis] + (stride * count,) + g.shape[axis + 1:])
    lo = start + k - 1
    pad = [(0, 0, 0)] * g.ndim
    pad[axis] = (lo, length + k - 1 - lo - u.shape[axis], 0)
    u = lax.pad(u, jnp.zeros((), u.dtype), pad)
    return (_fir(u, axis, taps[::-1], 0, length, 1),)


_fir.defvjp(_fir_fwd, _fir_bwd)


def _upsample2(x: jnp.ndarray, axis: int) -> jnp.ndarray:
    """NVIDIA's upsample2d along one axis (zero insertion, sym6 convolution,
    gain 2), in polyphase form: even outputs use the even taps, odd the odd."""
    n, a = x.shape[axis], 2 * _F[::-1]  # correlation taps
    pad = [(0, 0)] * x.ndim
    pad[axis] = (3, 3)
    xz = jnp.pad(x, pad)
    even, odd = _taps(xz, axis, a[0::2], 0, n), _taps(xz, axis, a[1::2], 1, n)
    y = jnp.stack([even, odd], axis=axis + 1)
    return y.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1:])


def _downsample2(y: jnp.ndarray, axis: int) -> jnp.ndarray:
    """NVIDIA's downsample2d(padding=-2 * Hz_pad, flip_filter=True) along one
    axis: crop 1 pixel per side, correlate with sym6, keep every other sample."""
    count = (y.shape[axis] - 2 - len(_F)) // 2 + 1
    return _taps(y, axis, _F, 1, count, 2)


def _bilinear(x: jnp.ndarray, px: jnp.ndarray, py: jnp.ndarray) -> jnp.ndarray:
    """grid_sample(bilinear, zeros outside): x [N,H,W,C], px/py [N,P] pixel coords."""
    n, h, w, c = x.shape
    x0, y0 = jnp.floor(px), jnp.floor(py)
    fx, fy = px - x0, py - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    idx, wts = [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            idx.append(jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1))
            wts.append(jnp.where(inside, wx * wy, 0.0))
    vals = _gather(x, jnp.concatenate(idx, axis=1)).reshape(n, 4, -1, c)
    wts = jnp.stack(wts, 1).astype(x.dtype)
    return jnp.einsum("nkpc,nkp->npc", vals, wts, precision=_HIGHEST)


def resample(x: jnp.ndarray, g_inv: jnp.ndarray) -> jnp.ndarray:
    """NVIDIA's geometric resampling of x [N,H,W,C] by inverse matrices [N,3,3]."""
    n, h, w, c = x.shape
    my, mx = h - 1, w - 1  # static reflect margin = NVIDIA's largest (clamped) margin
    x = jnp.pad(x, ((0, 0), (my, my), (mx, mx), (0, 0)), mode="reflect")
    x = _upsample2(_upsample2(x, 1), 2)  # sym6 low-pass, [N, 2Hp, 2Wp, C]
    hu, wu = x.shape[1:3]
    # Matrix in upsampled, half-pixel-shifted coordinates, as NVIDIA composes it.
    t = lambda d: np.array([[1, 0, d], [0, 1, d], [0, 0, 1]], np.float32)
    s = lambda f: np.diag(np.float32([f, f, 1]))
    g = _mm(_mm(t(-0.5) @ s(2), g_inv), s(0.5) @ t(0.5))
    ho, wo = 2 * (h + 2 * _HZ_PAD), 2 * (w + 2 * _HZ_PAD)
    src = _mm(g, _centred_grid(ho, wo))  # [N, 3, Ho*Wo]
    y = _bilinear(x, src[:, 0] + (wu - 1) / 2, src[:, 1] + (hu - 1) / 2).reshape(n, ho, wo, c)
    # Low-pass (correlation with sym6), crop the border and downsample 2x.
    return _downsample2(_downsample2(y, 1), 2)


def _is_identity(m: jnp.ndarray) -> jnp.ndarray:
    """[N] bool: the matrix is exactly the identity."""
    return jnp.all(m == jnp.eye(m.shape[-1], dtype=m.dtype), axis=(1, 2))


def apply_geometric(x: jnp.ndarray, g_blit: jnp.ndarray, g_general: jnp.ndarray,
                    general: bool = True) -> jnp.ndarray:
    """Exact blit where G_general is the identity, full resampling elsewhere.

    `general=False` (static) promises G_general == I and skips the resampler.
    """
    sel = lambda m, a, b: jnp.where(m[:, None, None, None], a, b)
    moved = blit(x, g_blit)
    if general:
        moved = sel(_is_identity(g_general), moved, resample(x, _mm(g_blit, g_general)))
    return sel(_is_identity(g_blit) & _is_identity(g_general), x, moved)


def apply_color(x: jnp.ndarray, cm: jnp.ndarray) -> jnp.ndarray:
    """Apply colour matrices [N,4,4] to x [N,H,W,C], C in {1, 3}."""
    c = x.shape[3]
    if c == 3:
        y = jnp.einsum("nij,nhwj->nhwi", cm[:, :3, :3], x, precision=_HIGHEST)
        y = y + cm[:, None, None, :3, 3]
    elif c == 1:
        mean = cm[:, :3, :].mean(axis=1)  # [N, 4]
        y = x * mean[:, None, None, :3].sum(-1, keepdims=True) + mean[:, None, None, 3:]
    else:
        raise ValueError(f"images must have 1 or 3 channels, got {c}")
    return jnp.where(_is_identity(cm)[:, None, None, None], x, y.astype(x.dtype))


# ----------------------------------------------------------------- public API

@functools.partial(jax.jit, static_argnames=("spec",))
def augment(images: jnp.ndarray, rng: jax.Array, p,
            spec: AugmentSpec = AugmentSpec.from_name("bgc")) -> jnp.ndarray:
    """Augment images [N, H, W, C] (C in {1, 3}) with probability p per transform.

    `p` may be traced (one compilation for all p); `spec` is static. Same shape
    and dtype out; p = 0 returns the input exactly.
    """
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(f"expected NHWC images with 1 or 3 channels, got {images.shape}")
    return apply_matrices(images, sample_matrices(rng, p, spec, images.shape), spec)


def apply_matrices(images: jnp.ndarray, matrices, spec: AugmentSpec) -> jnp.ndarray:
    """Images [N, H, W, C] under drawn transforms `matrices` = (blit [N,3,3], general
    [N,3,3], color [N,4,4]) from `sample_matrices`: the geometric ones, then colour.

    Why apart from `augment`: the train step draws the matrices once, up front, and
    applies a round's rows of them later (jaxgen.stylegan2.loss)."""
    g_blit, g_general, color = matrices
    if spec.any_of(_BLIT + _GEOM):
        images = apply_geometric(images, g_blit, g_general, general=spec.any_of(_GEOM))
    if spec.any_of(_COLOR):
        images = apply_color(images, color)
    return images


def ada_adjust(p, sign_mean, num_images, target: float = 0.6, ada_kimg: float = 500.0):
    """ADA's p update: p + sign(sign_mean - target) * num_images / (ada_kimg * 1000).

    `sign_mean` is E[sign(D(reals))] over the last interval and `num_images`
    the number of reals shown in it. The result is clamped to [0, 1] (NVIDIA
    clamps at 0 only). sign_mean == target leaves p unchanged, as NVIDIA's sign().
    """
    rate = num_images / (ada_kimg * 1000.0)
    step = jnp.sign(jnp.asarray(sign_mean, jnp.float32) - target) * rate
    return jnp.clip(jnp.asarray(p, jnp.float32) + step, 0.0, 1.0)
