"""The whole StyleGAN2-ADA training state as one pytree, and its optimizers.

`TrainState` holds G, D and G_ema variables, both Adam states, the ADA
probability p and its sign accumulator, the path-length mean, the iteration
and the number of real images shown (nimg; kimg = nimg / 1000). Everything
that must survive a crash is in here, so one orbax checkpoint of it resumes a
run exactly.

Optimizers follow NVIDIA's lazy regularisation: with a regulariser every k
minibatches, Adam's lr is scaled by k/(k+1) and betas raised to k/(k+1) so the
main and regularisation steps together behave like one optimizer step.
Gradients go through nan_to_num (nan->0, +-inf->+-1e5) first, as NVIDIA does.
Frozen parameters (freeze-D, frozen G layers) get no update at all.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray          # int32 []  iterations done
    nimg: jnp.ndarray          # int32 []  real images shown to D
    g_params: Any
    g_buffers: Any             # w_avg and noise_const
    d_params: Any
    ema_params: Any
    ema_buffers: Any
    g_opt: Any
    d_opt: Any
    ada_p: jnp.ndarray         # float32 []
    ada_sign_sum: jnp.ndarray  # float32 []  sum of sign(D(real)) since the last adjustment
    ada_count: jnp.ndarray     # float32 []  how many logits went into that sum
    pl_mean: jnp.ndarray       # float32 []

    @property
    def kimg(self) -> float:
        return float(self.nimg) / 1000.0


@dataclasses.dataclass(frozen=True)
class OptConfig:
    lr: float = 0.002
    betas: Sequence[float] = (0.0, 0.99)
    eps: float = 1e-8
    reg_interval: Optional[int] = None   # lazy regularisation interval (4 for G, 16 for D)


def _nan_to_num() -> optax.GradientTransformation:
    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(
            lambda g: jnp.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5), updates), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(cfg: OptConfig, frozen: Optional[Callable[[str], bool]] = None) -> optax.GradientTransformation:
    """Adam with NVIDIA's lazy-regularisation adjustment and optional frozen params.

    `frozen(path) -> bool` gets a parameter path like 'b64/conv0/weight'.
    """
    ratio = 1.0
    if cfg.reg_interval:
        ratio = cfg.reg_interval / (cfg.reg_interval + 1)
    b1, b2 = cfg.betas
    adam = optax.adam(cfg.lr * ratio, b1=b1 ** ratio, b2=b2 ** ratio, eps=cfg.eps)
    tx = optax.chain(_nan_to_num(), adam)
    if frozen is None:
        return tx

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda p, _: "frozen" if frozen(_path_str(p)) else "train", params)

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def d_layer_index_fn(block_resolutions: Sequence[int], architecture: str = "resnet") -> Callable[[str], Optional[int]]:
    """Map a D parameter path to NVIDIA's freeze-D layer index (None = epilogue/mapping).

    Layers are numbered from the highest resolution block down:
    fromrgb (first block, or every block in 'skip'), conv0, conv1, skip (resnet).
    """
    index = {}
    i = 0
    for n, res in enumerate(block_resolutions):
        names = []
        if n == 0 or architecture == "skip":
            names.append("fromrgb")
        names += ["conv0", "conv1"]
        if architecture == "resnet":
            names.append("skip")
        for name in names:
            index[(f"b{res}", name)] = i
            i += 1

    def fn(path: str) -> Optional[int]:
        parts = path.split("/")
        return index.get(tuple(parts[:2])) if len(parts) >= 2 else None
    return fn


def freeze_d_fn(block_resolutions: Sequence[int], freeze_layers: int,
                architecture: str = "resnet") -> Optional[Callable[[str], bool]]:
    """Freeze-D: the first `freeze_layers` D layers (from the image side) stay fixed."""
    if freeze_layers <= 0:
        return None
    idx = d_layer_index_fn(block_resolutions, architecture)

    def frozen(path: str) -> bool:
        i = idx(path)
        return i is not None and i < freeze_layers
    return frozen


def freeze_g_fn(freeze_res: int = 0, freeze_mapping: bool = False) -> Optional[Callable[[str], bool]]:
    """Freeze G's synthesis blocks at resolutions <= freeze_res (and optionally the mapping)."""
    if freeze_res <= 0 and not freeze_mapping:
        return None
    pat = re.compile(r"^synthesis/b(\d+)/")

    def frozen(path: str) -> bool:
        if freeze_mapping and path.startswith("mapping/"):
            return True
        m = pat.match(path)
        return bool(m) and int(m.group(1)) <= freeze_res
    return frozen


def init_state(g_vars: Any, d_vars: Any, g_tx: optax.GradientTransformation,
               d_tx: optax.GradientTransformation, ema_vars: Optional[Any] = None,
               ada_p: float = 0.0) -> TrainState:
    """A fresh TrainState; G_ema starts as a copy of G unless given (transfer learning)."""
    ema_vars = ema_vars if ema_vars is not None else g_vars
    copy = lambda t: jax.tree_util.tree_map(jnp.array, t)  # noqa: E731
    return TrainState(
        step=jnp.zeros((), jnp.int32), nimg=jnp.zeros((), jnp.int32),
        g_params=copy(g_vars["params"]), g_buffers=copy(g_vars["buffers"]),
        d_params=copy(d_vars["params"]),
        ema_params=copy(ema_vars["params"]), ema_buffers=copy(ema_vars["buffers"]),
        g_opt=g_tx.init(g_vars["params"]), d_opt=d_tx.init(d_vars["params"]),
        ada_p=jnp.asarray(ada_p, jnp.float32), ada_sign_sum=jnp.zeros((), jnp.float32),
        ada_count=jnp.zeros((), jnp.float32), pl_mean=jnp.zeros((), jnp.float32))
