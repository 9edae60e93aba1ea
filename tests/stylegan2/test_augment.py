"""Tests for jaxgen.stylegan2.augment (ADA's 'bgc' augmentation pipeline)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxgen.stylegan2 import augment as A
from jaxgen.stylegan2.augment import AugmentSpec, ada_adjust, augment

XLA_FAST_COMPILE = True   # compile-bound; references computed in this process (conftest.py)

KEY = jax.random.PRNGKey(7)
GEOM_OPS = ("scale", "rotate", "aniso", "xfrac")
COLOR_OPS = ("brightness", "contrast", "lumaflip", "hue", "saturation")


def smooth_images(n, h=16, w=16, c=3, seed=0):
    """Low-frequency images in [-1, 1] (sums of random sinusoids)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    out = np.zeros((n, h, w, c))
    for _ in range(4):
        fx, fy = rng.uniform(-3, 3, (2, n, 1, 1, c))
        ph, amp = rng.uniform(0, 2 * np.pi, (n, 1, 1, c)), rng.uniform(0.2, 1, (n, 1, 1, c))
        out += amp * np.sin(fx * xx[..., None] + fy * yy[..., None] + ph)
    return (out / np.abs(out).max(axis=(1, 2), keepdims=True)).astype(np.float32)


def noise_images(n, h=16, w=16, c=3, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, h, w, c)).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("spec",))
def aug_and_grad(x, p, spec, key=KEY):
    """(augment(x), d sum(augment(x) * r) / dx) in one compilation."""
    r = jax.random.normal(jax.random.PRNGKey(3), x.shape)
    y, vjp = jax.vjp(lambda im: augment(im, key, p, spec), x)
    return y, vjp(r)[0]


def run_aug(x, p, spec):
    """Numpy (augmented, image gradient) for numpy x."""
    y, g = aug_and_grad(jnp.asarray(x), jnp.float32(p), spec)
    return np.asarray(y), np.asarray(g)


matrices = jax.jit(A.sample_matrices, static_argnames=("spec", "shape"))
apply_geometric = jax.jit(A.apply_geometric)
resample = jax.jit(A.resample)


def changed(y, x):
    return np.any(np.asarray(y) != np.asarray(x), axis=(1, 2, 3))


def test_spec_presets():
    bgc = AugmentSpec.from_name("bgc")
    on = {f.name for f in bgc.__dataclass_fields__.values() if getattr(bgc, f.name) == 1.0
          and not f.name.endswith(("_std", "_max"))}
    assert on == {"xflip", "rotate90", "xint", *GEOM_OPS, *COLOR_OPS}
    assert (bgc.xint_max, bgc.scale_std, bgc.rotate_max, bgc.aniso_std, bgc.xfrac_std) == \
        (0.125, 0.2, 1.0, 0.2, 0.125)
    assert (bgc.brightness_std, bgc.contrast_std, bgc.hue_max, bgc.saturation_std) == \
        (0.2, 0.5, 1.0, 1.0)
    assert AugmentSpec.from_name("b") == AugmentSpec(xflip=1, rotate90=1, xint=1)
    assert AugmentSpec.from_name("g") == AugmentSpec(**{k: 1 for k in GEOM_OPS})
    assert AugmentSpec.from_name("c") == AugmentSpec.from_name("color")
    assert AugmentSpec.from_name("bg") == AugmentSpec(xflip=1, rotate90=1, xint=1,
                                                      **{k: 1 for k in GEOM_OPS})
    assert AugmentSpec.from_name("gc") == AugmentSpec(**{k: 1 for k in GEOM_OPS + COLOR_OPS})
    with pytest.raises(ValueError):
        AugmentSpec.from_name("bgcf")


@pytest.mark.parametrize("c", [3, 1])
def test_p0_is_identity(c):
    x = noise_images(8, c=c)
    y, g = run_aug(x, 0.0, AugmentSpec.from_name("bgc"))
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_equal(y, x)
    assert np.all(np.isfinite(g))
    # The same compiled function at p = 1: everything on, gradients still finite.
    y, g = run_aug(x, 1.0, AugmentSpec.from_name("bgc"))
    assert changed(y, x).all() and np.all(np.isfinite(y))
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_xflip_exact():
    x = noise_images(16)
    y = np.asarray(augment(jnp.asarray(x), KEY, 1.0, AugmentSpec(xflip=1)))
    flipped = [np.array_equal(y[i], x[i, :, ::-1]) for i in range(16)]
    same = [np.array_equal(y[i], x[i]) for i in range(16)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 2 <= sum(flipped) <= 14  # i = floor(2u): about half flip


def test_rotate90_exact_and_direction():
    x = noise_images(32)
    spec = AugmentSpec(rotate90=1)
    y = np.asarray(augment(jnp.asarray(x), KEY, 1.0, spec))
    gb, _, _ = matrices(KEY, 1.0, spec, x.shape)
    quarter = {(1, 0): 0, (0, 1): 1, (-1, 0): 2, (0, -1): 3}
    drawn = [quarter[(int(g[0, 0]), int(g[1, 0]))] for g in np.asarray(gb)]
    for i, k in enumerate(drawn):
        np.testing.assert_array_equal(y[i], np.rot90(x[i], k, axes=(0, 1)))
    assert len(set(drawn)) >= 3
    # A forced quarter turn through the public matrix helpers, and the same
    # matrix through the resampler (which must agree on smooth images).
    g1 = A.rotate2d(0.0, 1.0, 4)
    xs = smooth_images(4, 32, 32)
    eye = jnp.broadcast_to(jnp.eye(3), (4, 3, 3))
    np.testing.assert_array_equal(np.asarray(apply_geometric(jnp.asarray(xs), g1, eye)),
                                  np.rot90(xs, 1, axes=(1, 2)))
    r = np.asarray(resample(jnp.asarray(xs), g1))
    assert np.abs(r - np.rot90(xs, 1, axes=(1, 2))).max() < 0.05


def test_xint_moves_by_drawn_pixels():
    n, h, w = 16, 32, 32
    x = np.zeros((n, h, w, 3), np.float32)
    x[:, 12, 9] = 1.0
    spec = AugmentSpec(xint=1)
    y = np.asarray(augment(jnp.asarray(x), KEY, 1.0, spec))
    gb, _, _ = matrices(KEY, 1.0, spec, x.shape)
    dx, dy = -np.asarray(gb)[:, 0, 2], -np.asarray(gb)[:, 1, 2]
    assert np.all(np.abs(dx) <= round(0.125 * w)) and np.any(dx != 0)
    for i in range(n):
        # Exactly the reflect-padded image shifted by (dx, dy) whole pixels.
        pad = np.pad(x[i], ((h, h), (w, w), (0, 0)), mode="reflect")
        ref = pad[h - int(dy[i]):2 * h - int(dy[i]), w - int(dx[i]):2 * w - int(dx[i])]
        np.testing.assert_array_equal(y[i], ref)
        assert np.argwhere(y[i, :, :, 0] == 1.0).tolist() == [[12 + dy[i], 9 + dx[i]]]


@pytest.mark.parametrize("op", ["xflip", "rotate90", "xint", *GEOM_OPS])
def test_geometric_op_alone(op):
    spec = AugmentSpec(**{op: 1.0})
    x = smooth_images(16)
    y, g = run_aug(x, 1.0, spec)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.5
    if op in GEOM_OPS:  # continuous draws: every sample changes at p = 1
        assert changed(y, x).all()
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


@pytest.mark.parametrize("op", COLOR_OPS)
def test_color_op_alone(op):
    spec = AugmentSpec(**{op: 1.0})
    x = smooth_images(16)
    y, g = run_aug(x, 1.0, spec)
    _, _, cm = matrices(KEY, 1.0, spec, x.shape)
    cm = np.asarray(cm)
    assert y.shape == x.shape and y.dtype == np.float32
    luma = lambda im: im.sum(-1)  # proportional to the projection on [1,1,1]
    chroma = lambda im: im - im.mean(-1, keepdims=True)
    if op == "brightness":
        b = cm[:, 0, 3]
        np.testing.assert_allclose(y.mean((1, 2, 3)) - x.mean((1, 2, 3)), b, atol=1e-6)
        np.testing.assert_allclose(y - x, np.broadcast_to(b[:, None, None, None], x.shape),
                                   atol=1e-6)
        assert 0.1 < b.std() < 0.35
    elif op == "contrast":
        k = cm[:, 0, 0]
        np.testing.assert_allclose(y, x * k[:, None, None, None], rtol=1e-5, atol=1e-6)
        assert np.all(k > 0) and np.any(np.abs(np.log2(k)) > 0.2)
    elif op == "lumaflip":
        flip = x - 2.0 / 3.0 * x.sum(-1, keepdims=True)  # Householder about [1,1,1]/sqrt(3)
        kinds = [np.allclose(y[i], flip[i], atol=1e-6) if changed(y, x)[i] else True
                 for i in range(16)]
        assert all(kinds) and 0 < changed(y, x).sum() < 16
    elif op == "hue":  # rotation about the luma axis: luma and chroma norm kept
        np.testing.assert_allclose(luma(y), luma(x), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(chroma(y), axis=-1),
                                   np.linalg.norm(chroma(x), axis=-1), atol=1e-5)
        assert changed(y, x).all()
    elif op == "saturation":  # chroma scaled by s, luma kept
        s = cm[:, 0, 0] - cm[:, 0, 1]  # diagonal minus off-diagonal of v v^T + (I - v v^T) s
        np.testing.assert_allclose(luma(y), luma(x), atol=1e-5)
        np.testing.assert_allclose(chroma(y), chroma(x) * s[:, None, None, None], atol=1e-5)
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_grayscale_color_is_brightness_contrast_lumaflip():
    x = jnp.asarray(smooth_images(16, c=1))
    y = np.asarray(augment(x, KEY, 1.0, AugmentSpec.from_name("c")))
    y_bcl = np.asarray(augment(x, KEY, 1.0, AugmentSpec(brightness=1, contrast=1, lumaflip=1)))
    np.testing.assert_array_equal(y, y_bcl)  # hue and saturation do nothing for C = 1
    _, _, cm = matrices(KEY, 1.0, AugmentSpec.from_name("c"), x.shape)
    cm = np.asarray(cm)
    a, b = cm[:, :3, :3].mean(1).sum(-1), cm[:, :3, 3].mean(1)  # NVIDIA's row mean
    np.testing.assert_allclose(y, np.asarray(x) * a[:, None, None, None] + b[:, None, None, None],
                               atol=1e-5)
    assert np.any(a < 0) and np.any(a > 0)  # luma flip negates some samples


@pytest.mark.parametrize("spec", [AugmentSpec(brightness=1), AugmentSpec(rotate=1),
                                  AugmentSpec(scale=1)])
def test_half_of_samples_change_at_half_p(spec):
    x = jnp.asarray(smooth_images(256, 8, 8))
    frac = changed(augment(x, jax.random.PRNGKey(11), 0.5, spec), x).mean()
    assert abs(frac - 0.5) < 0.1, frac  # binomial sd 0.031
    frac = changed(augment(x, jax.random.PRNGKey(11), 0.1, spec), x).mean()
    assert abs(frac - 0.1) < 0.07, frac


def test_compiles_once_for_any_p():
    traces = []

    @jax.jit
    def run(x, key, p):
        traces.append(1)
        return augment(x, key, p)

    x = jnp.asarray(smooth_images(8))
    outs = [np.asarray(run(x, KEY, jnp.float32(p))) for p in (0.0, 0.3, 0.8, 1.0)]
    assert len(traces) == 1  # p is traced: no recompilation as ADA moves it
    np.testing.assert_array_equal(outs[0], np.asarray(x))
    assert not np.array_equal(outs[1], outs[3])
    np.testing.assert_array_equal(outs[2], np.asarray(augment(x, KEY, 0.8)))
    # The jitted `augment` itself: Python floats share one (weakly typed) trace.
    before = augment._cache_size()
    for p in (0.1, 0.2, 0.9):
        augment(x, KEY, p)
    assert augment._cache_size() - before <= 1


def test_r1_double_backprop():
    """grad w.r.t. D-like params of |d sum(f(aug(x))) / dx|^2, all ops on (p = 1) and off."""
    x = jnp.asarray(smooth_images(8))
    w = jax.random.normal(jax.random.PRNGKey(5), (3, 3, 3, 4)) * 0.5

    def d_out(wt, im, p):
        y = jax.lax.conv_general_dilated(augment(im, KEY, p), wt, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jax.nn.softplus(y))

    @jax.jit
    def r1(wt, p):
        return jnp.sum(jnp.square(jax.grad(d_out, argnums=1)(wt, x, p)))

    r1_grad = jax.jit(jax.value_and_grad(r1))
    for p in (1.0, 0.0):
        val, g = r1_grad(w, jnp.float32(p))
        assert np.isfinite(float(val)) and float(val) > 0
        assert np.all(np.isfinite(np.asarray(g))) and np.abs(np.asarray(g)).sum() > 0


def test_ada_adjust():
    step = 64 * 4 / (500 * 1000)
    assert float(ada_adjust(0.2, 0.9, 256)) == pytest.approx(0.2 + step, abs=1e-7)
    assert float(ada_adjust(0.2, 0.1, 256)) == pytest.approx(0.2 - step, abs=1e-7)
    assert float(ada_adjust(0.2, 0.6, 256)) == pytest.approx(0.2)  # sign(0) = 0
    assert float(ada_adjust(0.0, 0.1, 256)) == 0.0
    assert float(ada_adjust(1.0, 0.9, 256)) == 1.0
    assert float(ada_adjust(0.5, 0.7, 1000, target=0.8, ada_kimg=100)) == pytest.approx(0.49)
    assert float(jax.jit(ada_adjust)(jnp.float32(0.3), jnp.float32(0.7), 500)) == \
        pytest.approx(0.301)


# ----------------------------------------------- torch reference of the resampler

def _torch_sep(x, taps, pad, stride=1):
    """Depthwise separable correlation (NCHW) with zero padding [x0, x1, y0, y1]."""
    c = x.shape[1]
    k = torch.as_tensor(taps, dtype=x.dtype)
    x = F.pad(x, pad)
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), stride=(1, stride), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), stride=(stride, 1), groups=c)


def torch_geometric_reference(x_nhwc, g_inv):
    """NVIDIA's geometric execution with its data-dependent reflect margin,
    torch's affine_grid and grid_sample (bilinear, zeros, align_corners=False)."""
    x = torch.as_tensor(x_nhwc).permute(0, 3, 1, 2).double()
    g = torch.as_tensor(np.array(g_inv)).double()
    n, c, h, w = x.shape
    mat = lambda rows: torch.tensor(rows, dtype=torch.float64)
    T = lambda tx, ty: mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    S = lambda sx, sy: mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])
    cx, cy = (w - 1) / 2, (h - 1) / 2
    corners = g @ mat([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]])  # [N, 3, 4]
    m = corners[:, :2].permute(1, 0, 2).reshape(2, -1)
    m = torch.cat([-m, m]).max(dim=1).values + mat([6 - cx, 6 - cy] * 2)
    m = torch.minimum(m.clamp(min=0), mat([w - 1, h - 1] * 2)).ceil().int().tolist()
    x = F.pad(x, [m[0], m[2], m[1], m[3]], mode="reflect")
    g = T((m[0] - m[2]) / 2, (m[1] - m[3]) / 2) @ g
    f = np.asarray(A.SYM6) / np.sum(A.SYM6)
    xz = torch.zeros(n, c, 2 * x.shape[2], 2 * x.shape[3], dtype=x.dtype)
    xz[:, :, ::2, ::2] = x
    x = _torch_sep(xz, 2 * f[::-1].copy(), [6, 5, 6, 5])
    g = T(-0.5, -0.5) @ S(2, 2) @ g @ S(0.5, 0.5) @ T(0.5, 0.5)
    ho, wo = 2 * (h + 6), 2 * (w + 6)
    theta = S(2 / x.shape[3], 2 / x.shape[2]) @ g @ S(wo / 2, ho / 2)
    grid = F.affine_grid(theta[:, :2], [n, c, ho, wo], align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = _torch_sep(y, f, [-1, -1, -1, -1], stride=2)
    return y.permute(0, 2, 3, 1).numpy()


def test_resampler_matches_torch_grid_sample_reference():
    x = noise_images(5, 24, 20)  # non-square, full-band content
    n = 5
    th = np.array([0.3, -2.0, 1.0, 0.0, 0.0])
    sx, sy = np.array([1.3, 0.8, 1.0, 1.0, 0.55]), np.array([1.3, 0.8, 1.2, 1.0, 0.55])
    tx, ty = np.array([2.5, -1.2, 0.0, 25.0, 7.0]), np.array([0.0, 3.3, -0.7, -9.0, -9.0])
    g = (A.scale2d(1 / sx, 1 / sy, n) @ A.rotate2d(np.cos(th), np.sin(th), n)
         @ A.translate2d(tx, ty, n))
    ours = np.asarray(resample(jnp.asarray(x), g))
    # One sample per call, so the reference's batch-wide margin is each one's own
    # (small for the first ones, clamped at W-1 on the right for sample 3), while
    # ours is always the static maximum: the results agree to float precision.
    ref = np.concatenate([torch_geometric_reference(x[i:i + 1], g[i:i + 1]) for i in range(n)])
    assert ours.shape == x.shape
    np.testing.assert_allclose(ours[:4], ref[:4], atol=2e-5)
    # Zoom-out: NVIDIA's filter allowance (6 px, not scaled by the transform)
    # falls short at the left border, so its tails there see zero padding;
    # ours has the margin and differs only in the outermost pixels.
    np.testing.assert_allclose(ours[4, 1:-1, 1:-1], ref[4, 1:-1, 1:-1], atol=2e-5)
    np.testing.assert_allclose(ours[4], ref[4], atol=1e-3)
    full = apply_geometric(jnp.asarray(x), jnp.broadcast_to(jnp.eye(3), (n, 3, 3)), g)
    np.testing.assert_array_equal(np.asarray(full), ours)


@pytest.mark.parametrize("axis,length,start,stride", [(1, 40, 1, 2), (2, 41, 1, 2), (1, 30, 0, 1),
                                                    (2, 29, 1, 1), (1, 31, 2, 3)])
def test_fir_gradient_is_the_transpose_of_the_filter(axis, length, start, stride):
    """`_taps`'s written-out gradient equals autodiff of the same strided FIR, to first and
    second order (R1 differentiates D's input gradient through the augmentation)."""
    y = jax.random.normal(jax.random.key(axis), (2, length, 43 - axis, 3))
    taps = A._F[: 12 - stride]
    count = (y.shape[axis] - start - len(taps)) // stride + 1

    def plain(y):  # the same sums, differentiated by JAX
        return sum(float(t) * jax.lax.slice_in_dim(y, start + j, start + j + (count - 1) * stride + 1, stride,
                                                   axis) for j, t in enumerate(taps))

    fir = lambda y: A._taps(y, axis, taps, start, count, stride)  # noqa: E731
    np.testing.assert_allclose(np.asarray(fir(y)), np.asarray(plain(y)), rtol=1e-6, atol=1e-6)
    w = jax.random.normal(jax.random.key(9), plain(y).shape)

    def second(f):  # d/dw |d <w, f(y)^2> / dy|^2
        inner = lambda w: jax.grad(lambda y: jnp.sum(w * f(y) ** 2))(y)  # noqa: E731
        return jax.grad(lambda w: jnp.sum(inner(w) ** 2))(w)

    g_ref = jax.grad(lambda y: jnp.sum(w * plain(y) ** 2))(y)
    g_got = jax.grad(lambda y: jnp.sum(w * fir(y) ** 2))(y)
    np.testing.assert_allclose(np.asarray(g_got), np.asarray(g_ref), rtol=1e-5, atol=1e-5)
    s_ref, s_got = second(plain), second(fir)
    assert float(jnp.max(jnp.abs(s_ref))) > 0
    np.testing.assert_allclose(np.asarray(s_got), np.asarray(s_ref), rtol=1e-5, atol=1e-5)
