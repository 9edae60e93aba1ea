"""Equalized-learning-rate layers and the modulated convolution of StyleGAN2.

Every weight is stored *unscaled* (drawn from N(0, 1) / lr_multiplier) and
multiplied at run time by `lr_multiplier / sqrt(fan_in)`; biases by
`lr_multiplier`. This "equalized learning rate" makes Adam's per-parameter
step the same relative size for every layer, and it is why NVIDIA's state
dicts can be copied here value for value (only layouts change).

Layouts: activations are NHWC; dense weights are [in, out]; conv kernels are
HWIO [kh, kw, in, out]. Parameters are float32; `dtype` is the compute dtype.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.stylegan2.bias_act import bias_act, default_gain
from jaxgen.stylegan2.resample import conv2d_resample, setup_filter

Dtype = Any


def normalize_2nd_moment(x: jnp.ndarray, axis: int = -1, eps: float = 1e-8) -> jnp.ndarray:
    """Scale each vector along `axis` to unit root-mean-square."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def _normal_init(scale: float = 1.0):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype) * scale
    return init


class FullyConnected(nn.Module):
    """Dense layer with equalized learning rate: [..., in] -> [..., features].

    Attributes:
      features: output width.
      use_bias: add a bias (initialised to `bias_init`).
      activation: name from `jaxgen.stylegan2.bias_act.ACTIVATIONS` (gain included).
      lr_multiplier: scales both the effective weights and the effective
        learning rate (0.01 in the mapping network).
    """
    features: int
    use_bias: bool = True
    activation: str = "linear"
    lr_multiplier: float = 1.0
    bias_init: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        in_features = x.shape[-1]
        weight = self.param("weight", _normal_init(1.0 / self.lr_multiplier),
                            (in_features, self.features))
        w = weight.astype(self.dtype) * jnp.asarray(self.lr_multiplier / np.sqrt(in_features), self.dtype)
        b = None
        if self.use_bias:
            b = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
            b = b.astype(self.dtype)
            if self.lr_multiplier != 1:
                b = b * jnp.asarray(self.lr_multiplier, self.dtype)
        x = jnp.matmul(x.astype(self.dtype), w)
        return bias_act(x, b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Equalized-LR convolution with optional FIR up/downsampling (used by D).

    [N, H, W, in] -> [N, H * up / down, W * up / down, out_channels].
    `gain` at call time multiplies the activation gain and the clamp (residual
    branches pass sqrt(0.5)).
    """
    out_channels: int
    kernel_size: int
    use_bias: bool = True
    activation: str = "linear"
    up: int = 1
    down: int = 1
    resample_filter: Sequence[float] = (1, 3, 3, 1)
    conv_clamp: Optional[float] = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, gain: float = 1.0) -> jnp.ndarray:
        in_channels = x.shape[-1]
        k = self.kernel_size
        weight = self.param("weight", _normal_init(), (k, k, in_channels, self.out_channels))
        w = weight.astype(self.dtype) * jnp.asarray(1 / np.sqrt(in_channels * k * k), self.dtype)
        f = setup_filter(self.resample_filter) if (self.up > 1 or self.down > 1) else None
        x = conv2d_resample(x.astype(self.dtype), w, f=f, up=self.up, down=self.down,
                            padding=k // 2, flip_weight=(self.up == 1))
        b = self.param("bias", nn.initializers.zeros, (self.out_channels,)) if self.use_bias else None
        act_gain = default_gain(self.activation) * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=act_gain, clamp=clamp)


def modulated_conv2d(x: jnp.ndarray, weight: jnp.ndarray, styles: jnp.ndarray,
                     noise: Optional[jnp.ndarray] = None, up: int = 1, padding: int = 0,
                     resample_filter: Optional[np.ndarray] = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = False) -> jnp.ndarray:
    """StyleGAN2 modulated (and demodulated) convolution.

    Per sample n, the kernel is `weight * styles[n]` along the input channels;
    with `demodulate` each output channel of that kernel is rescaled to unit
    L2 norm. Two equivalent ways of computing it:
      * fused: build the N per-sample kernels and run N convolutions (vmap);
      * non-fused (default, faster for batches): scale x by the styles, run
        one shared convolution, scale by the demodulation coefficients.
    They agree to float rounding (NVIDIA uses fused in eval, non-fused in training).

    Args:
      x: [N, H, W, I]; weight: [kh, kw, I, O]; styles: [N, I].
      noise: broadcastable to the output ([N, H', W', 1] or [H', W', 1]), added
        after demodulation.
    Returns:
      [N, H * up, W * up, O].
    """
    in_channels = weight.shape[2]
    # Modulation and demodulation coefficients are computed in float32 (as NVIDIA's code
    # does) and cast to the compute dtype only where they meet x.
    weight = weight.astype(jnp.float32)
    styles = styles.astype(jnp.float32)
    if x.dtype == jnp.float16 and demodulate:
        # Pre-normalise to keep fp16 in range; demodulation undoes the scale.
        weight = weight * (np.float32(1 / np.sqrt(in_channels * weight.shape[0] * weight.shape[1]))
                           / jnp.max(jnp.abs(weight), axis=(0, 1, 2), keepdims=True))
        styles = styles / jnp.max(jnp.abs(styles), axis=1, keepdims=True)

    dcoefs = None
    if demodulate:
        wsq = jnp.einsum("hwio,ni->no", jnp.square(weight), jnp.square(styles))
        dcoefs = jax.lax.rsqrt(wsq + 1e-8)  # [N, O] float32

    if not fused_modconv:
        x = x * styles[:, None, None, :].astype(x.dtype)
        x = conv2d_resample(x, weight.astype(x.dtype), f=resample_filter, up=up, padding=padding,
                            flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs[:, None, None, :].astype(x.dtype)
        if noise is not None:
            x = x + noise.astype(x.dtype)
        return x

    w = weight[None] * styles[:, None, None, :, None]  # [N, kh, kw, I, O]
    if demodulate:
        w = w * dcoefs[:, None, None, None, :]
    w = w.astype(x.dtype)

    def one(xi, wi):
        return conv2d_resample(xi[None], wi, f=resample_filter, up=up, padding=padding,
                               flip_weight=flip_weight)[0]

    x = jax.vmap(one)(x, w)
    if noise is not None:
        x = x + noise.astype(x.dtype)
    return x
