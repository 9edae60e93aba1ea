"""One StyleGAN2-ADA training iteration as a single jit-compiled function.

Phases, in NVIDIA's order, each with its own latents and optimizer step:
  Gmain                         every iteration
  Greg  (path length)           when step % g_reg_interval == 0  (lax.cond)
  Dmain                         every iteration (fakes from the updated G)
  Dreg  (R1)                    when step % d_reg_interval == 0  (lax.cond)
then G_ema <- lerp(G, G_ema, beta) with beta = 0.5 ** (B / ema_nimg), and every
`ada_interval` iterations ADA's p moves towards E[sign D(real)] = target.

RNG: the step's key is fold_in(base_key, step), so a resumed run draws the
same numbers as an uninterrupted one. The batch is global: under jit with a
sharded batch, XLA splits the work across devices and the means (hence the
gradients) are over the whole batch, i.e. gradients are averaged across
devices; results equal the single-device run up to float rounding.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.stylegan2 import loss as L
from jaxgen.stylegan2.state import TrainState


@dataclasses.dataclass(frozen=True)
class StepConfig:
    batch_size: int
    loss: L.LossConfig = L.LossConfig()
    g_reg_interval: int = 4
    d_reg_interval: int = 16
    ema_kimg: float = 10.0
    ema_rampup: Optional[float] = 0.05
    augment: str = "ada"            # 'ada' (adaptive p) | 'fixed' (p as given) | 'noaug'
    augpipe: str = "bgc"
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500.0


def sample_labels(rng: jax.Array, batch: int, label_probs: Optional[np.ndarray]) -> jnp.ndarray:
    """One-hot labels [B, K] drawn from the data's class frequencies ([B, 0] when unconditional)."""
    if label_probs is None or len(label_probs) == 0:
        return jnp.zeros((batch, 0), jnp.float32)
    logits = jnp.log(jnp.asarray(label_probs, jnp.float32))
    idx = jax.random.categorical(rng, logits, shape=(batch,))
    return jax.nn.one_hot(idx, len(label_probs), dtype=jnp.float32)


def make_train_step(cfg: StepConfig, G, D, g_tx: optax.GradientTransformation,
                    d_tx: optax.GradientTransformation,
                    label_probs: Optional[np.ndarray]) -> Callable[..., Tuple[TrainState, Dict[str, Any]]]:
    """Build `step(state, real_img, real_c, base_key) -> (state, metrics)` (not yet jitted).

    real_img: [B, R, R, C] float32 in [-1, 1]; real_c: [B, K] one-hot (K may be 0).
    metrics: scalars; '*_w' entries are 0/1 weights saying whether a lazy phase ran.
    """
    if cfg.augment not in ("ada", "fixed", "noaug"):
        raise ValueError(f"augment mode {cfg.augment!r}: choose 'ada', 'fixed' or 'noaug'")
    spec = None
    if cfg.augment != "noaug":
        from jaxgen.stylegan2.augment import AugmentSpec, ada_adjust, augment
        spec = AugmentSpec.from_name(cfg.augpipe)
    B = cfg.batch_size

    def step(state: TrainState, real_img: jnp.ndarray, real_c: jnp.ndarray, base_key: jax.Array):
        key = jax.random.fold_in(base_key, state.step)
        k = dict(zip(["gz", "gc", "gmain", "rz", "rc", "greg", "dz", "dc", "dgen", "dmain", "dreg"],
                     jax.random.split(key, 11)))
        if spec is None:
            aug = L.no_augment
        else:
            aug = lambda img, rng: augment(img, rng, state.ada_p, spec)  # noqa: E731
        nets = L.Nets(G, D, aug)
        z = lambda kk, n: jax.random.normal(kk, (n, G.z_dim))  # noqa: E731
        m: Dict[str, Any] = {}

        # Gmain.
        loss, grads, aux = L.phase_grads(L.g_main_loss, state.g_params, state.g_buffers, state.d_params,
                                         z(k["gz"], B), sample_labels(k["gc"], B, label_probs),
                                         k["gmain"], nets, cfg.loss)
        upd, g_opt = g_tx.update(grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, upd)
        g_buffers = aux["buffers"]
        m["loss/G"] = loss
        m["scores/fake"] = jnp.mean(aux["logits"])

        # Greg (lazy path-length regularisation).
        def greg(operand):
            g_params, g_opt, g_buffers, pl_mean = operand
            loss, grads, aux = L.phase_grads(L.g_pl_loss, g_params, g_buffers, z(k["rz"], B),
                                             sample_labels(k["rc"], B, label_probs), k["greg"], pl_mean,
                                             nets, cfg.loss, gain=float(cfg.g_reg_interval))
            upd, g_opt = g_tx.update(grads, g_opt, g_params)
            out = (optax.apply_updates(g_params, upd), g_opt, aux["buffers"], aux["pl_mean"])
            return out, jnp.mean(aux["pl_penalty"])

        operand = (g_params, g_opt, g_buffers, state.pl_mean)
        if cfg.loss.pl_weight > 0 and cfg.g_reg_interval:
            do_greg = state.step % cfg.g_reg_interval == 0
            (g_params, g_opt, g_buffers, pl_mean), pl_pen = jax.lax.cond(
                do_greg, greg, lambda op: (op, jnp.zeros(())), operand)
            m["loss/pl_penalty"], m["loss/pl_penalty_w"] = pl_pen, do_greg.astype(jnp.float32)
        else:
            pl_mean = state.pl_mean

        # Dmain: fakes from the updated G, reals from the batch.
        gen_c = sample_labels(k["dc"], B, label_probs)
        gen_img, _, g_buffers = L.run_G(nets, g_params, g_buffers, z(k["dz"], B), gen_c, k["dgen"], cfg.loss)
        loss, grads, aux = L.phase_grads(L.d_main_loss, state.d_params, gen_img, gen_c, real_img, real_c,
                                         k["dmain"], nets)
        upd, d_opt = d_tx.update(grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, upd)
        real_signs = jnp.sign(aux["real_logits"])
        m["loss/D"] = loss
        m["scores/real"] = jnp.mean(aux["real_logits"])
        m["signs/real"] = jnp.mean(real_signs)

        # Dreg (lazy R1).
        def dreg(operand):
            d_params, d_opt = operand
            loss, grads, aux = L.phase_grads(L.d_r1_loss, d_params, real_img, real_c, k["dreg"], nets,
                                             cfg.loss, gain=float(cfg.d_reg_interval))
            upd, d_opt = d_tx.update(grads, d_opt, d_params)
            return (optax.apply_updates(d_params, upd), d_opt), jnp.mean(aux["r1_penalty"])

        if cfg.loss.r1_gamma > 0 and cfg.d_reg_interval:
            do_dreg = state.step % cfg.d_reg_interval == 0
            (d_params, d_opt), r1 = jax.lax.cond(do_dreg, dreg, lambda op: (op, jnp.zeros(())),
                                                 (d_params, d_opt))
            m["loss/r1_penalty"], m["loss/r1_penalty_w"] = r1, do_dreg.astype(jnp.float32)

        # G_ema.
        ema_nimg = cfg.ema_kimg * 1000.0
        if cfg.ema_rampup:
            ema_nimg = jnp.minimum(ema_nimg, state.nimg.astype(jnp.float32) * cfg.ema_rampup)
        beta = 0.5 ** (B / jnp.maximum(ema_nimg, 1e-8))
        ema_params = jax.tree_util.tree_map(lambda p, e: p + beta * (e - p), g_params, state.ema_params)

        # ADA.
        sign_sum = state.ada_sign_sum + jnp.sum(real_signs)
        count = state.ada_count + real_signs.size
        ada_p = state.ada_p
        if cfg.augment == "ada":
            adjust_now = (state.step + 1) % cfg.ada_interval == 0
            new_p = ada_adjust(ada_p, sign_sum / jnp.maximum(count, 1.0), B * cfg.ada_interval,
                               cfg.ada_target, cfg.ada_kimg)
            ada_p = jnp.where(adjust_now, new_p, ada_p)
            sign_sum = jnp.where(adjust_now, 0.0, sign_sum)
            count = jnp.where(adjust_now, 0.0, count)
        m["ada_p"] = ada_p
        m["pl_mean"] = pl_mean

        new_state = state.replace(
            step=state.step + 1, nimg=state.nimg + B, g_params=g_params, g_buffers=g_buffers,
            d_params=d_params, ema_params=ema_params, ema_buffers=g_buffers, g_opt=g_opt, d_opt=d_opt,
            ada_p=ada_p, ada_sign_sum=sign_sum, ada_count=count, pl_mean=pl_mean)
        return new_state, m

    return step
