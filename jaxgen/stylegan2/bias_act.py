"""Fused bias + activation + gain + clamp, as StyleGAN2's `bias_act`.

Each activation has a default gain chosen so the output keeps roughly unit
variance (sqrt(2) for (leaky) ReLU); layers multiply further gains in
(e.g. sqrt(0.5) on the two branches of a residual block). XLA fuses this
elementwise chain into the preceding convolution, so no custom kernel is needed.
"""
from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np


class Activation(NamedTuple):
    fn: Callable[[jnp.ndarray, float], jnp.ndarray]
    alpha: float
    gain: float


ACTIVATIONS: Dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: jax.nn.relu(x), 0.0, float(np.sqrt(2))),
    "lrelu": Activation(lambda x, a: jnp.where(x >= 0, x, x * a), 0.2, float(np.sqrt(2))),
    "tanh": Activation(lambda x, a: jnp.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: jax.nn.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: jax.nn.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: jax.nn.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: jax.nn.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: jax.nn.sigmoid(x) * x, 0.0, float(np.sqrt(2))),
}


def default_gain(act: str) -> float:
    """The variance-preserving gain that `bias_act` applies by default for `act`."""
    return _spec(act).gain


def _spec(act: str) -> Activation:
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[act]


def bias_act(x: jnp.ndarray, b: Optional[jnp.ndarray] = None, act: str = "linear",
             alpha: Optional[float] = None, gain: Optional[float] = None,
             clamp: Optional[float] = None) -> jnp.ndarray:
    """Add bias `b` along the last (channel) axis, apply `act`, scale by `gain`, clamp.

    Args:
      x: [..., C] activations (channels last).
      b: [C] bias or None.
      act: name in `ACTIVATIONS`.
      alpha: leaky-ReLU slope (default 0.2 for 'lrelu').
      gain: output scale; None = the activation's default gain.
      clamp: clip the output to [-clamp, clamp]; None = no clipping.
    """
    spec = _spec(act)
    alpha = spec.alpha if alpha is None else alpha
    gain = spec.gain if gain is None else gain
    if b is not None:
        x = x + b.astype(x.dtype)
    x = spec.fn(x, alpha)
    if gain != 1:
        x = x * jnp.asarray(gain, x.dtype)
    if clamp is not None and clamp >= 0:
        x = jnp.clip(x, -clamp, clamp)
    return x
