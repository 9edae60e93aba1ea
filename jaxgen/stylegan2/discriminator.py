"""StyleGAN2 discriminator (residual architecture), with minibatch-stddev and label projection.

img [N, R, R, C] (+ labels c [N, c_dim]) -> logits [N, 1].

Blocks run from R down to 8 (each: 3x3 conv, 3x3 conv with FIR downsampling,
and a 1x1 downsampling skip, the two branches scaled by sqrt(0.5)); the
4x4 epilogue appends the minibatch standard deviation as an extra feature
map, then conv, fully connected and output layers. With labels, the output
is a cmap_dim vector projected onto the label embedding that D's own mapping
network computes (a projection discriminator).

Variables mirror NVIDIA's keys: params/b{res}/{fromrgb,conv0,conv1,skip},
params/b4/{conv,fc,out}, params/mapping/{embed,fc*}.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxgen.stylegan2.layers import Conv2dLayer, FullyConnected
from jaxgen.stylegan2.mapping import MappingNetwork
from jaxgen.stylegan2.synthesis import channels_for
from jaxgen.stylegan2.resample import downsample2d, setup_filter

Dtype = Any


class MinibatchStd(nn.Module):
    """Append the stddev over groups of samples as `num_channels` extra channels.

    [N, H, W, C] -> [N, H, W, C + num_channels]. Samples are grouped as
    {j, j + n, j + 2n, ...} with n = N / G, as in NVIDIA's code; N must be a
    multiple of the group size G = min(group_size, N).
    """
    group_size: Optional[int] = 4
    num_channels: int = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        n, h, w, c = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        if n % g:
            raise ValueError(f"minibatch-stddev group size {g} must divide the batch size {n}; "
                             "use a batch (per device) that is a multiple of mbstd_group_size")
        f = self.num_channels
        y = x.astype(jnp.float32).reshape(g, n // g, h, w, f, c // f)
        y = y - jnp.mean(y, axis=0)
        y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)   # [n, H, W, F, c]
        y = jnp.mean(y, axis=(1, 2, 4))                         # [n, F]
        y = jnp.tile(y[:, None, None, :], (g, h, w, 1))         # [N, H, W, F]
        return jnp.concatenate([x, y.astype(x.dtype)], axis=-1)


class DiscriminatorBlock(nn.Module):
    """(x [N,R,R,tmp] or None, img [N,R,R,C]) -> (x [N,R/2,R/2,out], img or None)."""
    in_channels: int  # 0 = first block (reads the image)
    tmp_channels: int
    out_channels: int
    resolution: int
    architecture: str = "resnet"
    activation: str = "lrelu"
    resample_filter: Sequence[float] = (1, 3, 3, 1)
    conv_clamp: Optional[float] = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Optional[jnp.ndarray], img: Optional[jnp.ndarray],
                 force_fp32: bool = False) -> Tuple[jnp.ndarray, Optional[jnp.ndarray]]:
        if self.architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"unknown discriminator architecture {self.architecture!r}")
        dtype = jnp.float32 if force_fp32 else self.dtype
        conv = dict(activation=self.activation, conv_clamp=self.conv_clamp, dtype=dtype)
        if x is not None:
            x = x.astype(dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            y = Conv2dLayer(self.tmp_channels, kernel_size=1, name="fromrgb", **conv)(img.astype(dtype))
            x = x + y if x is not None else y
            img = downsample2d(img, setup_filter(self.resample_filter)) if self.architecture == "skip" else None
        conv0 = Conv2dLayer(self.tmp_channels, kernel_size=3, name="conv0", **conv)
        conv1 = Conv2dLayer(self.out_channels, kernel_size=3, down=2,
                            resample_filter=self.resample_filter, name="conv1", **conv)
        if self.architecture == "resnet":
            y = Conv2dLayer(self.out_channels, kernel_size=1, use_bias=False, down=2,
                            resample_filter=self.resample_filter, dtype=dtype,
                            name="skip")(x, gain=np.sqrt(0.5))
            x = conv0(x)
            x = conv1(x, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = conv1(conv0(x))
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: x [N,4,4,C] (+ cmap [N,cmap_dim]) -> logits [N,1] (float32)."""
    in_channels: int
    cmap_dim: int
    resolution: int = 4
    architecture: str = "resnet"
    mbstd_group_size: Optional[int] = 4
    mbstd_num_channels: int = 1
    activation: str = "lrelu"
    conv_clamp: Optional[float] = None

    @nn.compact
    def __call__(self, x: Optional[jnp.ndarray], img: Optional[jnp.ndarray],
                 cmap: Optional[jnp.ndarray]) -> jnp.ndarray:
        if self.architecture == "skip" or x is None:
            # x is None only at img_resolution 4, where there are no blocks before the head.
            y = Conv2dLayer(self.in_channels, kernel_size=1, activation=self.activation,
                            name="fromrgb")(img.astype(jnp.float32))
            x = y if x is None else x.astype(jnp.float32) + y
        x = x.astype(jnp.float32)
        if self.mbstd_num_channels > 0:
            x = MinibatchStd(self.mbstd_group_size, self.mbstd_num_channels, name="mbstd")(x)
        x = Conv2dLayer(self.in_channels, kernel_size=3, activation=self.activation,
                        conv_clamp=self.conv_clamp, name="conv")(x)
        # Flatten in NCHW order so the fc weights are NVIDIA's, only transposed.
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        x = FullyConnected(self.in_channels, activation=self.activation, name="fc")(x)
        x = FullyConnected(1 if self.cmap_dim == 0 else self.cmap_dim, name="out")(x)
        if self.cmap_dim > 0:
            x = jnp.sum(x * cmap, axis=1, keepdims=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """img [N, R, R, img_channels] in [-1, 1], c [N, c_dim] -> logits [N, 1].

    Attributes as NVIDIA's Discriminator (its block/mapping/epilogue kwargs
    flattened): architecture ('resnet'), channel_base, channel_max,
    conv_clamp, cmap_dim (None = channels at 4x4), mbstd_group_size,
    mbstd_num_channels, mapping_layers/mapping_lr_multiplier for the label
    embedding; `dtype`/`num_lowp_res` as in the Generator.
    """
    c_dim: int
    img_resolution: int
    img_channels: int
    architecture: str = "resnet"
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: Optional[float] = None
    cmap_dim: Optional[int] = None
    mbstd_group_size: Optional[int] = 4
    mbstd_num_channels: int = 1
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    resample_filter: Sequence[float] = (1, 3, 3, 1)
    dtype: Dtype = jnp.float32
    num_lowp_res: Optional[int] = None

    @property
    def block_resolutions(self) -> Tuple[int, ...]:
        r = self.img_resolution
        if not isinstance(r, int) or r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r!r}")
        return tuple(2 ** i for i in range(int(np.log2(r)), 2, -1))

    def _cmap_dim(self) -> int:
        if self.c_dim == 0:
            return 0
        if self.cmap_dim is not None:
            return self.cmap_dim
        return channels_for(4, self.channel_base, self.channel_max)

    def setup(self):
        ch = lambda res: channels_for(res, self.channel_base, self.channel_max)  # noqa: E731
        res_list = self.block_resolutions
        n_low = len(res_list) if self.num_lowp_res is None else self.num_lowp_res
        self.blocks = [
            DiscriminatorBlock(
                in_channels=ch(res) if res < self.img_resolution else 0, tmp_channels=ch(res),
                out_channels=ch(res // 2), resolution=res, architecture=self.architecture,
                resample_filter=self.resample_filter, conv_clamp=self.conv_clamp,
                dtype=self.dtype if i < n_low else jnp.float32, name=f"b{res}")
            for i, res in enumerate(res_list)]
        cmap_dim = self._cmap_dim()
        if self.c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=self.c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                num_layers=self.mapping_layers, lr_multiplier=self.mapping_lr_multiplier,
                name="mapping")
        self.b4 = DiscriminatorEpilogue(
            ch(4), cmap_dim=cmap_dim, architecture=self.architecture,
            mbstd_group_size=self.mbstd_group_size, mbstd_num_channels=self.mbstd_num_channels,
            conv_clamp=self.conv_clamp, name="b4")

    def __call__(self, img: jnp.ndarray, c: Optional[jnp.ndarray] = None,
                 force_fp32: bool = False) -> jnp.ndarray:
        expect = (self.img_resolution, self.img_resolution, self.img_channels)
        if img.ndim != 4 or tuple(img.shape[1:]) != expect:
            raise ValueError(f"discriminator expects images [N, {expect[0]}, {expect[1]}, {expect[2]}] "
                             f"(NHWC), got {tuple(img.shape)}")
        x = None
        for block in self.blocks:
            x, img = block(x, img, force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
