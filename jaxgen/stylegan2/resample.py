"""FIR up/down-sampling and resampling convolutions, NHWC, matching StyleGAN2-ADA.

StyleGAN2 never resamples with nearest/bilinear interpolation: it inserts zeros
(upsampling) or drops pixels (downsampling) and low-pass filters with a small
FIR kernel, by default the outer product of [1, 3, 3, 1] normalised to sum 1.
These functions compute exactly what NVIDIA's reference ops
(`upfirdn2d` and `conv2d_resample`) compute, so that ported weights give the
same images, but they work on channels-last arrays ([N, H, W, C]) and convolution
kernels in HWIO layout, which is what XLA prefers on TPU and GPU.

Conventions:
  * padding is `(x0, x1, y0, y1)` in pixels of the *upsampled* image, as in
    the reference; negative values crop.
  * A "correlation" (`flip_weight=True` in NVIDIA's terms) is what
    `lax.conv_general_dilated` computes; a convolution flips the kernel.
"""
from __future__ import annotations

import contextlib
from typing import Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Padding = Union[int, Sequence[int]]

_DN = ("NHWC", "HWIO", "NHWC")


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1), gain: float = 1.0) -> np.ndarray:
    """Return the 2-D FIR filter [fh, fw] (float32) for 1-D `taps`.

    The filter is the outer product of the taps, normalised so a constant
    signal keeps its value (sum 1), then scaled by `gain`.
    """
    f = np.asarray(taps, dtype=np.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1:
        f = np.outer(f, f)
    if f.ndim != 2 or f.size == 0:
        raise ValueError(f"FIR filter must be 1-D or 2-D taps, got shape {f.shape}")
    f = f / f.sum()
    return (f * gain).astype(np.float32)


def _parse_padding(padding: Padding) -> Tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return padding  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding}")


def _pad_or_crop(x: jnp.ndarray, px0: int, px1: int, py0: int, py1: int) -> jnp.ndarray:
    """Zero-pad (positive) or crop (negative) the H and W axes of an NHWC array."""
    cfg = [(0, 0, 0), (py0, py1, 0), (px0, px1, 0), (0, 0, 0)]
    return lax.pad(x, jnp.zeros((), x.dtype), cfg)


def upfirdn2d(x: jnp.ndarray, f: np.ndarray | None, up: int = 1, down: int = 1,
              padding: Padding = 0, flip_filter: bool = False, gain: float = 1.0) -> jnp.ndarray:
    """Upsample by zero insertion, pad, FIR-filter and downsample, per channel.

    Args:
      x: [N, H, W, C] input.
      f: [fh, fw] filter from `setup_filter`, or None for the identity.
      up, down: integer resampling factors (same on both axes).
      padding: see module docstring.
      flip_filter: False = true convolution with `f`, True = correlation.
      gain: overall scale; the filter is multiplied by `gain` (2-D filter).
    Returns:
      [N, H', W', C] with H' = (H * up + py0 + py1 - fh + 1) // down (rounded up).
    """
    if f is None:
        f = np.ones([1, 1], np.float32)
    f = np.asarray(f, np.float32)
    c = x.shape[-1]
    px0, px1, py0, py1 = _parse_padding(padding)
    # Zero insertion and padding in one lax.pad (interior padding = up - 1),
    # with the up-1 trailing zeros of the last pixel that the reference adds.
    cfg = [(0, 0, 0), (py0, py1 + up - 1, up - 1), (px0, px1 + up - 1, up - 1), (0, 0, 0)]
    x = lax.pad(x, jnp.zeros((), x.dtype), cfg)
    if f.shape == (1, 1):
        f_val = float(f[0, 0]) * gain
        x = x if f_val == 1 else x * jnp.asarray(f_val, x.dtype)
        return x[:, ::down, ::down] if down > 1 else x
    kernel = f * gain
    if not flip_filter:
        kernel = kernel[::-1, ::-1]
    sep = _separable(kernel)
    if sep is not None:
        # Rank-1 filter (the usual outer-product FIR): two 1-D passes of
        # shifted slices. Same sums as the 2-D filter, and far cheaper than a
        # depthwise convolution (which XLA:CPU runs very slowly).
        col, row = sep
        x = _fir_1d(x, col, axis=1, down=down)
        return _fir_1d(x, row, axis=2, down=down)
    k = jnp.asarray(np.tile(kernel[:, :, None, None], [1, 1, 1, c]), dtype=x.dtype)
    return lax.conv_general_dilated(x, k, window_strides=(down, down), padding="VALID",
                                    dimension_numbers=_DN, feature_group_count=c)


def _separable(kernel: np.ndarray):
    """(column taps, row taps) if `kernel` is an outer product, else None."""
    total = kernel.sum()
    if total == 0:
        return None
    col, row = kernel.sum(axis=1), kernel.sum(axis=0) / total
    if np.allclose(np.outer(col, row), kernel, rtol=1e-6, atol=1e-9):
        return col, row
    return None


def _fir_1d(x: jnp.ndarray, taps: np.ndarray, axis: int, down: int) -> jnp.ndarray:
    """Valid correlation of `x` with `taps` along `axis`, keeping every `down`-th output."""
    n_out = (x.shape[axis] - len(taps)) // down + 1
    out = None
    for k, t in enumerate(taps):
        if t == 0:
            continue
        start = [0] * x.ndim
        limit = list(x.shape)
        strides = [1] * x.ndim
        start[axis] = k
        limit[axis] = k + (n_out - 1) * down + 1
        strides[axis] = down
        term = lax.slice(x, start, limit, strides) * jnp.asarray(t, x.dtype)
        out = term if out is None else out + term
    return out


def upsample2d(x: jnp.ndarray, f: np.ndarray, up: int = 2) -> jnp.ndarray:
    """FIR upsampling by `up` that keeps the image aligned: [N,H,W,C] -> [N,up*H,up*W,C]."""
    fh, fw = f.shape
    p = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up)


def downsample2d(x: jnp.ndarray, f: np.ndarray, down: int = 2) -> jnp.ndarray:
    """FIR downsampling by `down`: [N,H,W,C] -> [N,H/down,W/down,C]."""
    fh, fw = f.shape
    p = ((fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2)
    return upfirdn2d(x, f, down=down, padding=p)


# How `_conv` computes a convolution: 'auto' (per backend, see `_conv`), 'xla' or 'taps'.
_CONV_IMPL = ["auto"]


@contextlib.contextmanager
def conv_impl(name: str):
    """Within the block, trace every resampling convolution with `name` ('auto', 'xla' or
    'taps'); for tests that compare the two ways and for benchmarks."""
    if name not in ("auto", "xla", "taps"):
        raise ValueError(f"conv impl {name!r}: choose 'auto', 'xla' or 'taps'")
    old, _CONV_IMPL[0] = _CONV_IMPL[0], name
    try:
        yield
    finally:
        _CONV_IMPL[0] = old


def _xla_conv_is_fast(kh: int, kw: int, stride: int, padding) -> bool:
    """Whether XLA:CPU's convolution (and its gradients) is the fast way: odd square kernels
    larger than 1x1 at stride 1 with 'same' padding (a 1x1 kernel is a plain dot). Its
    gradients of strided convolutions (a dilated-input convolution) and of small even kernels (the up-sampling phases) run 10-30x slower than
    their forward pass on CPU (bench/RESULTS.md, 'Training step on CPU: where the time went')."""
    (py0, py1), (px0, px1) = padding
    return stride == 1 and kh == kw > 1 and kh % 2 == 1 and py0 == py1 == px0 == px1 == kh // 2


def _conv(x, w, stride=1, padding=((0, 0), (0, 0))):
    """Correlation of x [N, H, W, I] with w [kh, kw, I, O] at `stride`, zero padding
    ((top, bottom), (left, right)): [N, H', W', O].

    Same sums either way, by one of two programs: XLA's convolution, or (impl 'taps')
    a sum over the kh * kw taps of dots between shifted, strided slices of x and
    w[dy, dx], whose gradients are dots and pads only. 'auto' uses XLA's convolution
    except on CPU where `_xla_conv_is_fast` says it is slow.
    """
    kh, kw = int(w.shape[0]), int(w.shape[1])
    impl = _CONV_IMPL[0]
    if impl == "auto":
        slow = jax.default_backend() == "cpu" and not _xla_conv_is_fast(kh, kw, stride, padding)
        impl = "taps" if slow else "xla"
    if impl == "xla":
        return lax.conv_general_dilated(x, w, window_strides=(stride, stride), padding=padding,
                                        dimension_numbers=_DN)
    return _conv_taps(x, w, stride, padding)


def _conv_taps(x, w, stride, padding):
    """`_conv` as a sum of per-tap dots: x [N, H, W, I], w [kh, kw, I, O] -> [N, H', W', O]."""
    kh, kw, i, _ = (int(d) for d in w.shape)
    (py0, py1), (px0, px1) = padding
    x = _pad_or_crop(x, px0, px1, py0, py1)
    n, hp, wp, _ = x.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    out = None
    for dy in range(kh):
        for dx in range(kw):
            tap = lax.slice(x, (0, dy, dx, 0), (n, dy + (ho - 1) * stride + 1, dx + (wo - 1) * stride + 1, i),
                            (1, stride, stride, 1))
            term = lax.dot_general(tap, w[dy, dx], (((3,), (0,)), ((), ())))
            out = term if out is None else out + term
    return out


def _phase_taps(k: int, up: int, pad: int, n_in: int, r: int):
    """For output phase r of a zero-inserted (by `up`), `pad`-padded correlation
    with a length-k kernel: (first tap, number of taps, input pad lo, input pad hi, outputs)."""
    n_out = (n_in - 1) * up + 1 + 2 * pad - k + 1
    m = -(-(n_out - r) // up)  # outputs of this phase, ceil
    s = (pad - r) % up
    taps = len(range(s, k, up))
    off = (r + s - pad) // up
    lo = -off
    hi = (m - 1 + taps - 1 + off) - (n_in - 1)
    return s, taps, lo, hi, m, n_out


def conv_upsampled(x: jnp.ndarray, w: jnp.ndarray, up: int, pad_y: int, pad_x: int) -> jnp.ndarray:
    """Correlation of the zero-inserted input (factor `up`) with `w`, padded by pad_y/pad_x.

    Equals `lax.conv_general_dilated(x, w, padding=((pad_y,)*2, (pad_x,)*2),
    lhs_dilation=(up, up))`, computed as up*up small convolutions on the
    low-resolution input (one per output phase) that are interleaved. This never
    multiplies the inserted zeros, and its gradient avoids XLA:CPU's very slow
    path for dilated-input convolutions.
    x: [N, H, W, I], w: [kh, kw, I, O] -> [N, (H-1)*up + 1 + 2*pad_y - kh + 1, ..., O].
    """
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    rows = []
    out_h = out_w = None
    for ry in range(up):
        sy, ty, ly, hy, my, out_h = _phase_taps(kh, up, pad_y, h, ry)
        cols = []
        for rx in range(up):
            sx, tx, lx, hx, mx, out_w = _phase_taps(kw, up, pad_x, wd, rx)
            if ty == 0 or tx == 0:
                cols.append(jnp.zeros((n, my, mx, o), x.dtype))
                continue
            xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (ly, hy, 0), (lx, hx, 0), (0, 0, 0)])
            cols.append(_conv(xp, w[sy::up, sx::up]))
        rows.append(cols)
    my = max(c.shape[1] for r in rows for c in r)
    mx = max(c.shape[2] for r in rows for c in r)
    fit = lambda a: lax.pad(a, jnp.zeros((), a.dtype), [(0, 0, 0), (0, my - a.shape[1], 0),  # noqa: E731
                                                       (0, mx - a.shape[2], 0), (0, 0, 0)])
    y = jnp.stack([jnp.stack([fit(c) for c in r], axis=3) for r in rows], axis=2)  # [N,my,up,mx,up,O]
    y = y.reshape(n, my * up, mx * up, o)
    return y[:, :out_h, :out_w]


def conv2d_resample(x: jnp.ndarray, w: jnp.ndarray, f: np.ndarray | None = None, up: int = 1,
                    down: int = 1, padding: int = 0, flip_weight: bool = True) -> jnp.ndarray:
    """2-D convolution with optional FIR up/downsampling, as NVIDIA's `conv2d_resample`.

    Padding is applied once, relative to the upsampled image, so the result is
    exactly the reference's (it chooses a strided or transposed convolution
    where that is equivalent).

    Args:
      x: [N, H, W, I] input.
      w: [kh, kw, I, O] kernel (HWIO).
      f: [fh, fw] FIR filter for resampling (required when up or down > 1).
      up, down: 1 or 2 (any integer works).
      padding: symmetric padding (kernel_size // 2 for 'same').
      flip_weight: True = correlation, False = convolution with `w`.
    Returns:
      [N, H * up / down, W * up / down, O].
    """
    kh, kw = int(w.shape[0]), int(w.shape[1])
    if not flip_weight:
        w = w[::-1, ::-1]
    if f is not None:
        fh, fw = f.shape
    else:
        fh = fw = 1
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        # Filter and decimate first, then the (cheap) 1x1 conv.
        x = upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1))
        return _conv(x, w)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w)
        return upfirdn2d(x, f, up=up, padding=(px0, px1, py0, py1), gain=up * up)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=(px0, px1, py0, py1))
        return _conv(x, w, stride=down)
    if up > 1:
        # The reference runs a transposed strided conv; that equals zero
        # insertion (lhs dilation) + padding k-1-p + correlation with the
        # flipped transposed kernel, which is `w` as prepared above. The FIR
        # filter then takes the remaining padding, as in the reference.
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = conv_upsampled(x, w, up, kh - 1 - pyt, kw - 1 - pxt)
        x = upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)
        if down > 1:
            x = upfirdn2d(x, f, down=down)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=((py0, py1), (px0, px1)))
    x = _pad_or_crop(x, px0, px1, py0, py1)
    return _conv(x, w)
