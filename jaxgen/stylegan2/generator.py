"""The StyleGAN2 generator: mapping + synthesis, configurable like NVIDIA's.

Variables of an initialised Generator:
  params/mapping/{embed,fc0..fc{L-1}}/{weight,bias}
  params/synthesis/b{res}/{const | conv0,conv1,torgb}/...
  buffers/mapping/w_avg                      [w_dim]   (running mean of w)
  buffers/synthesis/b{res}/conv{0,1}/noise_const  [res, res]
The names follow NVIDIA's state-dict keys so conversion is a relabelling
(`jaxgen.stylegan2.nvidia`).

Usage:
  G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3)
  variables = G.init({'params': key}, z, c)
  img = G.apply(variables, z, c, truncation_psi=0.7, rngs={'noise': key})   # NHWC
  ws = G.apply(variables, z, c, method=Generator.map)
  img = G.apply(variables, ws, noise_mode='const', method=Generator.synthesize)
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.stylegan2.mapping import MappingNetwork
from jaxgen.stylegan2.synthesis import SynthesisNetwork, num_ws_for

Dtype = Any


class Generator(nn.Module):
    """z [N, z_dim], c [N, c_dim] -> images [N, R, R, img_channels] in about [-1, 1].

    Attributes (NVIDIA's names; `mapping_*` are its `mapping_kwargs`, the
    synthesis ones its `synthesis_kwargs`):
      z_dim, c_dim, w_dim, img_resolution, img_channels
      mapping_layers (8), mapping_lr_multiplier (0.01), w_avg_beta (0.995),
      embed_features / layer_features (None = w_dim)
      channel_base (32768), channel_max (512), architecture ('skip'),
      conv_clamp (None), use_noise (True), resample_filter ([1,3,3,1])
      dtype: compute dtype of the synthesis (params stay float32);
      num_lowp_res: how many of the highest resolutions use `dtype` (None = all).
    """
    z_dim: int
    c_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: Optional[float] = 0.995
    embed_features: Optional[int] = None
    layer_features: Optional[int] = None
    channel_base: int = 32768
    channel_max: int = 512
    architecture: str = "skip"
    conv_clamp: Optional[float] = None
    use_noise: bool = True
    resample_filter: Sequence[float] = (1, 3, 3, 1)
    dtype: Dtype = jnp.float32
    num_lowp_res: Optional[int] = None

    def setup(self):
        if self.img_channels < 1:
            raise ValueError(f"img_channels must be >= 1, got {self.img_channels}")
        self.synthesis = SynthesisNetwork(
            w_dim=self.w_dim, img_resolution=self.img_resolution, img_channels=self.img_channels,
            channel_base=self.channel_base, channel_max=self.channel_max,
            architecture=self.architecture, resample_filter=self.resample_filter,
            conv_clamp=self.conv_clamp, use_noise=self.use_noise, dtype=self.dtype,
            num_lowp_res=self.num_lowp_res, name="synthesis")
        self.mapping = MappingNetwork(
            z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim, num_ws=self.num_ws,
            num_layers=self.mapping_layers, embed_features=self.embed_features,
            layer_features=self.layer_features, lr_multiplier=self.mapping_lr_multiplier,
            w_avg_beta=self.w_avg_beta, name="mapping")

    @property
    def num_ws(self) -> int:
        """How many w vectors the synthesis network consumes (2 log2 R - 2)."""
        return num_ws_for(self.img_resolution)

    def map(self, z: jnp.ndarray, c: Optional[jnp.ndarray], truncation_psi: float = 1.0,
            truncation_cutoff: Optional[int] = None, update_w_avg: bool = False) -> jnp.ndarray:
        """z, c -> ws [N, num_ws, w_dim]."""
        return self.mapping(z, c, truncation_psi, truncation_cutoff, update_w_avg)

    def synthesize(self, ws: jnp.ndarray, noise_mode: str = "random", fused_modconv: bool = False,
                   force_fp32: bool = False) -> jnp.ndarray:
        """ws [N, num_ws, w_dim] -> images [N, R, R, C]. noise_mode 'random' needs rngs={'noise': key}."""
        return self.synthesis(ws, noise_mode, fused_modconv, force_fp32)

    def __call__(self, z: jnp.ndarray, c: Optional[jnp.ndarray], truncation_psi: float = 1.0,
                 truncation_cutoff: Optional[int] = None, noise_mode: str = "random",
                 fused_modconv: bool = False, force_fp32: bool = False,
                 update_w_avg: bool = False) -> jnp.ndarray:
        ws = self.map(z, c, truncation_psi, truncation_cutoff, update_w_avg)
        return self.synthesize(ws, noise_mode, fused_modconv, force_fp32)
