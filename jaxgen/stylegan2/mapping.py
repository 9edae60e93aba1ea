"""The StyleGAN2 mapping network z (+ label c) -> w, with w_avg and truncation.

The mapping is an MLP with a 100x smaller learning rate (lr_multiplier 0.01).
A running mean of w (`buffers/w_avg`, decay `w_avg_beta`) is tracked during
training and is the centre of the truncation trick: w' = w_avg + psi (w - w_avg).
The discriminator reuses this network (z_dim=0, no w_avg) to embed labels.
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.stylegan2.layers import FullyConnected, normalize_2nd_moment


class MappingNetwork(nn.Module):
    """[N, z_dim], [N, c_dim] -> [N, num_ws, w_dim] (or [N, w_dim] if num_ws is None).

    Attributes mirror NVIDIA's MappingNetwork; `embed_features` and
    `layer_features` default to `w_dim`.
    """
    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: Optional[int]
    num_layers: int = 8
    embed_features: Optional[int] = None
    layer_features: Optional[int] = None
    activation: str = "lrelu"
    lr_multiplier: float = 0.01
    w_avg_beta: Optional[float] = 0.995

    def setup(self):
        embed = self.embed_features if self.embed_features is not None else self.w_dim
        if self.c_dim == 0:
            embed = 0
        layer = self.layer_features if self.layer_features is not None else self.w_dim
        feats = [self.z_dim + embed] + [layer] * (self.num_layers - 1) + [self.w_dim]
        if self.z_dim + embed == 0:
            raise ValueError("MappingNetwork needs z_dim > 0 or c_dim > 0")
        if self.c_dim > 0:
            self.embed = FullyConnected(embed, name="embed")
        self.layers = [FullyConnected(feats[i + 1], activation=self.activation,
                                      lr_multiplier=self.lr_multiplier, name=f"fc{i}")
                       for i in range(self.num_layers)]
        if self.num_ws is not None and self.w_avg_beta is not None:
            self.w_avg = self.variable("buffers", "w_avg", jnp.zeros, (self.w_dim,), jnp.float32)

    def __call__(self, z: Optional[jnp.ndarray], c: Optional[jnp.ndarray],
                 truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None,
                 update_w_avg: bool = False) -> jnp.ndarray:
        """Map latents to w.

        Args:
          z: [N, z_dim] Gaussian latents (ignored when z_dim == 0).
          c: [N, c_dim] labels, usually one-hot (ignored when c_dim == 0).
          truncation_psi: 1 = no truncation; <1 pulls w towards w_avg (may be
            a traced scalar).
          truncation_cutoff: truncate only the first `cutoff` of the num_ws
            copies (coarse layers); None = all.
          update_w_avg: update the running mean (training only; needs
            `mutable=['buffers']`).
        """
        x = None
        if self.z_dim > 0:
            _check_shape(z, self.z_dim, "z")
            x = normalize_2nd_moment(z.astype(jnp.float32))
        if self.c_dim > 0:
            _check_shape(c, self.c_dim, "c")
            y = normalize_2nd_moment(self.embed(c.astype(jnp.float32)))
            x = jnp.concatenate([x, y], axis=1) if x is not None else y
        for layer in self.layers:
            x = layer(x)

        if update_w_avg and self.w_avg_beta is not None and self.num_ws is not None:
            if not self.is_mutable_collection("buffers"):
                raise ValueError("update_w_avg=True needs apply(..., mutable=['buffers'])")
            mean = jax.lax.stop_gradient(jnp.mean(x, axis=0))
            self.w_avg.value = mean + self.w_avg_beta * (self.w_avg.value - mean)

        if self.num_ws is not None:
            x = jnp.repeat(x[:, None, :], self.num_ws, axis=1)

        if not (isinstance(truncation_psi, (int, float)) and truncation_psi == 1):
            if self.w_avg_beta is None or self.num_ws is None:
                raise ValueError("truncation needs the w_avg buffer (w_avg_beta and num_ws set)")
            w_avg = self.w_avg.value
            truncated = w_avg + truncation_psi * (x - w_avg)
            if truncation_cutoff is None:
                x = truncated
            else:
                idx = jnp.arange(self.num_ws)[None, :, None]
                x = jnp.where(idx < truncation_cutoff, truncated, x)
        return x


def _check_shape(a: Optional[jnp.ndarray], dim: int, name: str) -> None:
    if a is None or a.ndim != 2 or a.shape[1] != dim:
        got = None if a is None else tuple(a.shape)
        raise ValueError(f"mapping network expects {name} of shape [N, {dim}], got {got}")
