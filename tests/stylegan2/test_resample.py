"""The fast resampling paths equal the straightforward formulations they replace."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.stylegan2.resample import conv2d_resample, conv_impl, conv_upsampled, setup_filter, upfirdn2d

XLA_FAST_COMPILE = True   # compile-bound; both sides of every check run in this process (conftest.py)

DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("h,k,up,pad", [(16, 3, 2, 2), (5, 3, 2, 1), (7, 4, 2, 3), (6, 1, 2, 0),
                                        (4, 3, 3, 2), (5, 2, 2, 0)])
def test_phase_decomposed_upsampling_conv_equals_dilated_conv(h, k, up, pad):
    x = jax.random.normal(jax.random.key(h), [2, h, h + 1, 5])
    w = jax.random.normal(jax.random.key(k), [k, k, 5, 3])
    ref = jax.lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)), lhs_dilation=(up, up),
                                       dimension_numbers=DN)
    got = conv_upsampled(x, w, up, pad, pad)
    assert got.shape == ref.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-5)
    # Gradients agree too (the reason for the decomposition is a faster backward pass).
    g_ref = jax.grad(lambda w: jnp.sum(jax.lax.conv_general_dilated(
        x, w, (1, 1), ((pad, pad), (pad, pad)), lhs_dilation=(up, up), dimension_numbers=DN) ** 2))(w)
    g_got = jax.grad(lambda w: jnp.sum(conv_upsampled(x, w, up, pad, pad) ** 2))(w)
    np.testing.assert_allclose(np.asarray(g_got), np.asarray(g_ref), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("up,down,padding", [(1, 1, 2), (2, 1, (2, 1, 2, 1)), (1, 2, 1), (2, 2, (1, 2, 0, 3)),
                                             (1, 1, (-1, 2, 0, -2))])
def test_separable_fir_equals_depthwise_2d_filter(up, down, padding):
    f = setup_filter((1, 3, 3, 1))
    x = jax.random.normal(jax.random.key(0), [2, 9, 10, 4])
    got = upfirdn2d(x, f, up=up, down=down, padding=padding, gain=up * up)
    # Reference: numpy, literally as the definition (zero insertion, pad/crop, flipped 2-D filter).
    xn = np.asarray(x)
    n, h, w, c = xn.shape
    xu = np.zeros([n, h * up, w * up, c], np.float32)
    xu[:, ::up, ::up] = xn
    px0, px1, py0, py1 = padding if isinstance(padding, tuple) else (padding,) * 4
    xp = np.pad(xu, [(0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)])
    xp = xp[:, max(-py0, 0):xp.shape[1] - max(-py1, 0), max(-px0, 0):xp.shape[2] - max(-px1, 0)]
    kern = (f * up * up)[::-1, ::-1]
    fh, fw = kern.shape
    out = np.zeros([n, xp.shape[1] - fh + 1, xp.shape[2] - fw + 1, c], np.float32)
    for i in range(fh):
        for j in range(fw):
            out += kern[i, j] * xp[:, i:i + out.shape[1], j:j + out.shape[2]]
    out = out[:, ::down, ::down]
    assert got.shape == out.shape
    np.testing.assert_allclose(np.asarray(got), out, atol=1e-5)


@pytest.mark.parametrize("k,up,down", [(3, 1, 1), (3, 1, 2), (1, 1, 2), (3, 2, 1), (1, 2, 1), (4, 1, 1)])
def test_per_tap_dots_compute_the_convolution_and_its_second_order_gradients(k, up, down):
    """The CPU program ('taps') and XLA's convolution agree on values, gradients and the
    gradient of a gradient norm (what R1 and path length differentiate)."""
    f = setup_filter((1, 3, 3, 1))
    x = jax.random.normal(jax.random.key(1), [2, 8, 8, 6])
    w = jax.random.normal(jax.random.key(2), [k, k, 6, 5])

    def r1(x, w):  # d/dw |d sum(y^2) / dx|^2, as the R1 penalty differentiates D
        gx = jax.grad(lambda x: jnp.sum(conv2d_resample(x, w, f=f, up=up, down=down, padding=k // 2) ** 2))(x)
        return jnp.sum(gx ** 2)

    results = {}
    for impl in ("xla", "taps"):
        with conv_impl(impl):
            y = conv2d_resample(x, w, f=f, up=up, down=down, padding=k // 2)
            results[impl] = (y, jax.grad(r1, argnums=(0, 1))(x, w))
    (y_x, (gx_x, gw_x)), (y_t, (gx_t, gw_t)) = results["xla"], results["taps"]
    side = 8 * up // down + (k + 1) % 2  # an even kernel with padding k // 2 grows by one pixel
    assert y_t.shape == y_x.shape == (2, side, side, 5)
    np.testing.assert_allclose(np.asarray(y_t), np.asarray(y_x), rtol=1e-5, atol=1e-5)
    for got, ref in ((gx_t, gx_x), (gw_t, gw_x)):
        scale = float(jnp.max(jnp.abs(ref)))
        assert scale > 0
        np.testing.assert_allclose(np.asarray(got) / scale, np.asarray(ref) / scale, atol=1e-5)
