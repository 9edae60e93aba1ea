"""StyleGAN2 synthesis network: w [N, num_ws, w_dim] -> image [N, R, R, C].

Blocks run from 4x4 up to the output resolution. Each block has two
modulated 3x3 convs (the first upsamples, except in the 4x4 block which
starts from a learned constant), per-pixel noise scaled by a learned
strength, and a ToRGB layer whose output is added to the FIR-upsampled image
of the block below ('skip' architecture). Each conv and ToRGB consumes one w
vector; consecutive blocks share one (the ToRGB w of block k is the conv0 w
of block k+1), hence num_ws = 2 * log2(R) - 2.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.stylegan2.layers import Conv2dLayer, FullyConnected, modulated_conv2d
from jaxgen.stylegan2.bias_act import bias_act, default_gain
from jaxgen.stylegan2.resample import setup_filter, upsample2d

Dtype = Any
NOISE_MODES = ("random", "const", "none")


def channels_for(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at `resolution`: min(channel_base // resolution, channel_max)."""
    return min(channel_base // resolution, channel_max)


def block_resolutions_for(img_resolution: int) -> Tuple[int, ...]:
    """Synthesis block resolutions 4, 8, ..., img_resolution (a power of two >= 4)."""
    r = img_resolution
    if not isinstance(r, int) or r < 4 or r & (r - 1):
        raise ValueError(f"img_resolution must be a power of two >= 4, got {r!r}")
    return tuple(2 ** i for i in range(2, int(np.log2(r)) + 1))


def num_ws_for(img_resolution: int) -> int:
    """w vectors consumed by the synthesis network: 1 + 2 per block above 4x4 + final ToRGB."""
    return 2 * len(block_resolutions_for(img_resolution))


class SynthesisLayer(nn.Module):
    """Modulated conv + noise + bias + lrelu. [N, H, W, I] -> [N, H*up, W*up, out]."""
    out_channels: int
    resolution: int
    kernel_size: int = 3
    up: int = 1
    use_noise: bool = True
    activation: str = "lrelu"
    resample_filter: Sequence[float] = (1, 3, 3, 1)
    conv_clamp: Optional[float] = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, w: jnp.ndarray, noise_mode: str = "random",
                 fused_modconv: bool = False, gain: float = 1.0) -> jnp.ndarray:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        in_channels = x.shape[-1]
        k = self.kernel_size
        styles = FullyConnected(in_channels, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", nn.initializers.normal(1.0), (k, k, in_channels, self.out_channels))
        res = self.resolution
        noise = None
        if self.use_noise:
            noise_const = self.variable(
                "buffers", "noise_const",
                lambda: jax.random.normal(self.make_rng("params"), (res, res), jnp.float32))
            strength = self.param("noise_strength", nn.initializers.zeros, ())
            if noise_mode == "random":
                noise = jax.random.normal(self.make_rng("noise"), (x.shape[0], res, res, 1)) * strength
            elif noise_mode == "const":
                noise = noise_const.value[:, :, None] * strength
        f = setup_filter(self.resample_filter) if self.up > 1 else None
        x = modulated_conv2d(x, weight, styles, noise=noise, up=self.up, padding=k // 2,
                             resample_filter=f, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        bias = self.param("bias", nn.initializers.zeros, (self.out_channels,))
        act_gain = default_gain(self.activation) * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, bias, act=self.activation, gain=act_gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation: [N, H, W, I] -> [N, H, W, img_channels] (float32)."""
    out_channels: int
    kernel_size: int = 1
    conv_clamp: Optional[float] = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, w: jnp.ndarray, fused_modconv: bool = False) -> jnp.ndarray:
        in_channels = x.shape[-1]
        k = self.kernel_size
        weight_gain = 1 / np.sqrt(in_channels * k * k)
        styles = FullyConnected(in_channels, bias_init=1.0, name="affine")(w) * weight_gain
        weight = self.param("weight", nn.initializers.normal(1.0), (k, k, in_channels, self.out_channels))
        x = modulated_conv2d(x, weight, styles, demodulate=False, padding=k // 2,
                             fused_modconv=fused_modconv)
        bias = self.param("bias", nn.initializers.zeros, (self.out_channels,))
        return bias_act(x, bias, clamp=self.conv_clamp).astype(jnp.float32)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network.

    Inputs x [N, R/2, R/2, in_channels] (None for the first block), img
    [N, R/2, R/2, C] (None at first) and this block's ws [N, num_conv + num_torgb, w_dim].
    Returns (x [N, R, R, out_channels], img [N, R, R, C] float32 or None).
    """
    in_channels: int  # 0 = first block (learned constant input)
    out_channels: int
    resolution: int
    img_channels: int
    is_last: bool
    architecture: str = "skip"
    resample_filter: Sequence[float] = (1, 3, 3, 1)
    conv_clamp: Optional[float] = None
    use_noise: bool = True
    dtype: Dtype = jnp.float32

    @property
    def num_conv(self) -> int:
        return 1 if self.in_channels == 0 else 2

    @property
    def num_torgb(self) -> int:
        return 1 if (self.is_last or self.architecture == "skip") else 0

    @nn.compact
    def __call__(self, x: Optional[jnp.ndarray], img: Optional[jnp.ndarray], ws: jnp.ndarray,
                 noise_mode: str = "random", fused_modconv: bool = False,
                 force_fp32: bool = False) -> Tuple[jnp.ndarray, Optional[jnp.ndarray]]:
        if self.architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"unknown synthesis architecture {self.architecture!r}")
        dtype = jnp.float32 if force_fp32 else self.dtype
        common = dict(resolution=self.resolution, use_noise=self.use_noise,
                      resample_filter=self.resample_filter, conv_clamp=self.conv_clamp, dtype=dtype)
        w_iter = iter(range(ws.shape[1]))
        if self.in_channels == 0:
            const = self.param("const", nn.initializers.normal(1.0),
                               (self.resolution, self.resolution, self.out_channels))
            x = jnp.broadcast_to(const.astype(dtype)[None], (ws.shape[0],) + const.shape)
            x = SynthesisLayer(self.out_channels, name="conv1", **common)(
                x, ws[:, next(w_iter)], noise_mode, fused_modconv)
        else:
            x = x.astype(dtype)
            conv0 = SynthesisLayer(self.out_channels, up=2, name="conv0", **common)
            conv1 = SynthesisLayer(self.out_channels, name="conv1", **common)
            if self.architecture == "resnet":
                y = Conv2dLayer(self.out_channels, kernel_size=1, use_bias=False, up=2,
                                resample_filter=self.resample_filter, dtype=dtype,
                                name="skip")(x, gain=np.sqrt(0.5))
                x = conv0(x, ws[:, next(w_iter)], noise_mode, fused_modconv)
                x = conv1(x, ws[:, next(w_iter)], noise_mode, fused_modconv, gain=np.sqrt(0.5))
                x = y + x
            else:
                x = conv0(x, ws[:, next(w_iter)], noise_mode, fused_modconv)
                x = conv1(x, ws[:, next(w_iter)], noise_mode, fused_modconv)

        if img is not None:
            img = upsample2d(img, setup_filter(self.resample_filter))
        if self.is_last or self.architecture == "skip":
            y = ToRGBLayer(self.img_channels, conv_clamp=self.conv_clamp, dtype=dtype,
                           name="torgb")(x, ws[:, next(w_iter)], fused_modconv)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, R, R, img_channels] (float32, about [-1, 1]).

    `dtype` is the compute dtype of the highest `num_lowp_res` resolutions
    (None = all blocks); the rest, and the image accumulation, stay float32.
    """
    w_dim: int
    img_resolution: int
    img_channels: int
    channel_base: int = 32768
    channel_max: int = 512
    architecture: str = "skip"
    resample_filter: Sequence[float] = (1, 3, 3, 1)
    conv_clamp: Optional[float] = None
    use_noise: bool = True
    dtype: Dtype = jnp.float32
    num_lowp_res: Optional[int] = None

    @property
    def block_resolutions(self) -> Tuple[int, ...]:
        return block_resolutions_for(self.img_resolution)

    @property
    def num_ws(self) -> int:
        return num_ws_for(self.img_resolution)

    def setup(self):
        res_list = self.block_resolutions
        lowp_from = 0 if self.num_lowp_res is None else len(res_list) - self.num_lowp_res
        blocks = []
        for i, res in enumerate(res_list):
            blocks.append(SynthesisBlock(
                in_channels=channels_for(res // 2, self.channel_base, self.channel_max) if res > 4 else 0,
                out_channels=channels_for(res, self.channel_base, self.channel_max),
                resolution=res, img_channels=self.img_channels,
                is_last=(res == self.img_resolution), architecture=self.architecture,
                resample_filter=self.resample_filter, conv_clamp=self.conv_clamp,
                use_noise=self.use_noise,
                dtype=self.dtype if i >= lowp_from else jnp.float32, name=f"b{res}"))
        self.blocks = blocks

    def __call__(self, ws: jnp.ndarray, noise_mode: str = "random", fused_modconv: bool = False,
                 force_fp32: bool = False) -> jnp.ndarray:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis expects ws of shape [N, {self.num_ws}, {self.w_dim}], "
                             f"got {tuple(ws.shape)}")
        ws = ws.astype(jnp.float32)
        x = img = None
        w_idx = 0
        for block in self.blocks:
            take = block.num_conv + block.num_torgb
            x, img = block(x, img, ws[:, w_idx:w_idx + take], noise_mode, fused_modconv, force_fp32)
            w_idx += block.num_conv
        return img

