"""XLA compile options for training steps, and `jit_train_step`, the jit that applies them.

On CPU, XLA (jaxlib 0.10) hands convolutions to YNNPACK by default. Its kernels for
the weight gradient of a convolution (a convolution whose window is the whole
image) run 2.4-3x slower than XLA's own (Eigen) kernels: a 3x3, 512 -> 512
convolution at 32 px, batch 4, forward + backward takes 617 ms with YNNPACK and 220-270
ms without; at 64 channels and 64 px, 128 ms against 45 ms (bench/RESULTS.md,
'Training step on CPU: where the time went'). So CPU training steps compile with
YNNPACK kept to dots. The option is XLA's own and experimental: a jaxlib that does
not know it, or another backend, compiles with the defaults.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict

import jax
import jax.numpy as jnp

_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


@functools.lru_cache(maxsize=None)
def _cpu_options_known() -> bool:
    """Whether this jaxlib's CPU compiler accepts `_CPU_OPTIONS` (compiles a tiny program once)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(jnp.zeros(2)).compile()
    except Exception:  # noqa: BLE001 - an unknown option or value is an XlaRuntimeError/ValueError
        return False
    return True


def train_compiler_options() -> Dict[str, str]:
    """The compile options for a training step on the default backend ({} off CPU)."""
    if jax.default_backend() != "cpu" or not _cpu_options_known():
        return {}
    return dict(_CPU_OPTIONS)


def jit_train_step(fn: Callable[..., Any], **jit_kwargs: Any) -> Callable[..., Any]:
    """`jax.jit(fn, **jit_kwargs)` compiled with `train_compiler_options()`."""
    return jax.jit(fn, compiler_options=train_compiler_options() or None, **jit_kwargs)
