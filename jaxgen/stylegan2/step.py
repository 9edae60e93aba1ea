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
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.stylegan2 import loss as L
from jaxgen.stylegan2.augment import AugmentSpec, ada_adjust, augment
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


# Names of the 11 keys split from each step's key, in split order.
_KEY_NAMES = ("gz", "gc", "gmain", "rz", "rc", "greg", "dz", "dc", "dgen", "dmain", "dreg")


def sample_labels(rng: jax.Array, batch: int, label_probs: Optional[np.ndarray]) -> jnp.ndarray:
    """One-hot labels [B, K] drawn from the data's class frequencies ([B, 0] when unconditional)."""
    if label_probs is None or len(label_probs) == 0:
        return jnp.zeros((batch, 0), jnp.float32)
    logits = jnp.log(jnp.asarray(label_probs, jnp.float32))
    idx = jax.random.categorical(rng, logits, shape=(batch,))
    return jax.nn.one_hot(idx, len(label_probs), dtype=jnp.float32)


class _Ctx(NamedTuple):
    """What every phase of one step reads: the config, the networks (with D's
    augmentation at this step's p), the optimizers, the class frequencies [K]
    of the generated labels (None: unconditional) and the step's keys by name."""
    cfg: StepConfig
    nets: L.Nets
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation
    label_probs: Optional[np.ndarray]
    k: Dict[str, jax.Array]


def _step_keys(base_key: jax.Array, step) -> Dict[str, jax.Array]:
    """The 11 keys of iteration `step`, by name, from fold_in(base_key, step).

    Why fold_in: a resumed run draws the same numbers as an uninterrupted one.
    The names and their order fix which key each phase uses; do not reorder.
    """
    key = jax.random.fold_in(base_key, step)
    return dict(zip(_KEY_NAMES, jax.random.split(key, len(_KEY_NAMES))))


def _nets(G, D, spec, ada_p) -> L.Nets:
    """G and D, with D's inputs augmented by `spec` at probability `ada_p`
    (a traced scalar), or not at all when `spec` is None ('noaug')."""
    if spec is None:
        return L.Nets(G, D, L.no_augment)
    return L.Nets(G, D, lambda img, rng: augment(img, rng, ada_p, spec))


def _latents(ctx: _Ctx, name: str) -> jnp.ndarray:
    """Latents z [B, z_dim] ~ N(0, I) from the step key `name`."""
    return jax.random.normal(ctx.k[name], (ctx.cfg.batch_size, ctx.nets.G.z_dim))


def _labels(ctx: _Ctx, name: str) -> jnp.ndarray:
    """Generated labels [B, K] (one-hot, K may be 0) from the step key `name`."""
    return sample_labels(ctx.k[name], ctx.cfg.batch_size, ctx.label_probs)


def _g_main(ctx: _Ctx, state: TrainState):
    """Gmain: one G optimizer step on the non-saturating loss of fresh fakes.

    Returns ((g_params, g_opt, g_buffers), metrics 'loss/G', 'scores/fake').
    """
    loss, grads, aux = L.phase_grads(L.g_main_loss, state.g_params, state.g_buffers, state.d_params,
                                     _latents(ctx, "gz"), _labels(ctx, "gc"), ctx.k["gmain"],
                                     ctx.nets, ctx.cfg.loss)
    upd, g_opt = ctx.g_tx.update(grads, state.g_opt, state.g_params)
    g_params = optax.apply_updates(state.g_params, upd)
    return (g_params, g_opt, aux["buffers"]), {"loss/G": loss, "scores/fake": jnp.mean(aux["logits"])}


def _g_reg_update(ctx: _Ctx, operand):
    """The Greg branch: one G optimizer step on the path-length penalty, its
    gradient scaled by g_reg_interval (lazy regularisation).

    operand and the first result: (g_params, g_opt, g_buffers, pl_mean); second
    result: the mean penalty (scalar).
    """
    g_params, g_opt, g_buffers, pl_mean = operand
    cfg = ctx.cfg
    loss, grads, aux = L.phase_grads(L.g_pl_loss, g_params, g_buffers, _latents(ctx, "rz"),
                                     _labels(ctx, "rc"), ctx.k["greg"], pl_mean,
                                     ctx.nets, cfg.loss, gain=float(cfg.g_reg_interval))
    upd, g_opt = ctx.g_tx.update(grads, g_opt, g_params)
    out = (optax.apply_updates(g_params, upd), g_opt, aux["buffers"], aux["pl_mean"])
    return out, jnp.mean(aux["pl_penalty"])


def _g_reg(ctx: _Ctx, state: TrainState, g: tuple):
    """Greg: the lazy path-length step when step % g_reg_interval == 0 (lax.cond);
    skipped entirely (not traced) when pl_weight or the interval is 0.

    g: (g_params, g_opt, g_buffers) after Gmain. Returns (g, pl_mean, metrics
    'loss/pl_penalty' and its 0/1 weight 'loss/pl_penalty_w').
    """
    cfg = ctx.cfg
    if not (cfg.loss.pl_weight > 0 and cfg.g_reg_interval):
        return g, state.pl_mean, {}
    do_greg = state.step % cfg.g_reg_interval == 0
    (g_params, g_opt, g_buffers, pl_mean), pl_pen = jax.lax.cond(
        do_greg, lambda op: _g_reg_update(ctx, op), lambda op: (op, jnp.zeros(())),
        (*g, state.pl_mean))
    metrics = {"loss/pl_penalty": pl_pen, "loss/pl_penalty_w": do_greg.astype(jnp.float32)}
    return (g_params, g_opt, g_buffers), pl_mean, metrics


def _d_main(ctx: _Ctx, state: TrainState, g_params, g_buffers, real_img, real_c):
    """Dmain: one D optimizer step on fakes of the updated G and the real batch
    (real_img [B, R, R, C], real_c [B, K]).

    Returns ((d_params, d_opt), g_buffers after this G run, real_signs [B, 1]
    = sign D(reals) for ADA, metrics 'loss/D', 'scores/real', 'signs/real').
    """
    gen_c = _labels(ctx, "dc")
    gen_img, _, g_buffers = L.run_G(ctx.nets, g_params, g_buffers, _latents(ctx, "dz"), gen_c,
                                    ctx.k["dgen"], ctx.cfg.loss)
    loss, grads, aux = L.phase_grads(L.d_main_loss, state.d_params, gen_img, gen_c, real_img, real_c,
                                     ctx.k["dmain"], ctx.nets)
    upd, d_opt = ctx.d_tx.update(grads, state.d_opt, state.d_params)
    d_params = optax.apply_updates(state.d_params, upd)
    real_signs = jnp.sign(aux["real_logits"])
    metrics = {"loss/D": loss, "scores/real": jnp.mean(aux["real_logits"]),
               "signs/real": jnp.mean(real_signs)}
    return (d_params, d_opt), g_buffers, real_signs, metrics


def _d_reg_update(ctx: _Ctx, operand, real_img, real_c):
    """The Dreg branch: one D optimizer step on the R1 penalty of the reals, its
    gradient scaled by d_reg_interval (lazy regularisation).

    operand and the first result: (d_params, d_opt); second: the mean penalty.
    """
    d_params, d_opt = operand
    cfg = ctx.cfg
    loss, grads, aux = L.phase_grads(L.d_r1_loss, d_params, real_img, real_c, ctx.k["dreg"], ctx.nets,
                                     cfg.loss, gain=float(cfg.d_reg_interval))
    upd, d_opt = ctx.d_tx.update(grads, d_opt, d_params)
    return (optax.apply_updates(d_params, upd), d_opt), jnp.mean(aux["r1_penalty"])


def _d_reg(ctx: _Ctx, state: TrainState, d: tuple, real_img, real_c):
    """Dreg: the lazy R1 step when step % d_reg_interval == 0 (lax.cond); skipped
    entirely (not traced) when r1_gamma or the interval is 0.

    d: (d_params, d_opt) after Dmain. Returns (d, metrics 'loss/r1_penalty' and
    its 0/1 weight 'loss/r1_penalty_w').
    """
    cfg = ctx.cfg
    if not (cfg.loss.r1_gamma > 0 and cfg.d_reg_interval):
        return d, {}
    do_dreg = state.step % cfg.d_reg_interval == 0
    d, r1 = jax.lax.cond(do_dreg, lambda op: _d_reg_update(ctx, op, real_img, real_c),
                         lambda op: (op, jnp.zeros(())), d)
    return d, {"loss/r1_penalty": r1, "loss/r1_penalty_w": do_dreg.astype(jnp.float32)}


def _ema(cfg: StepConfig, state: TrainState, g_params):
    """G_ema <- lerp(G, G_ema, beta), beta = 0.5 ** (B / ema_nimg); ema_nimg is
    ramped up with the images shown so far (ema_rampup). Returns the new ema_params."""
    ema_nimg = cfg.ema_kimg * 1000.0
    if cfg.ema_rampup:
        ema_nimg = jnp.minimum(ema_nimg, state.nimg.astype(jnp.float32) * cfg.ema_rampup)
    beta = 0.5 ** (cfg.batch_size / jnp.maximum(ema_nimg, 1e-8))
    return jax.tree_util.tree_map(lambda p, e: p + beta * (e - p), g_params, state.ema_params)


def _ada(cfg: StepConfig, state: TrainState, real_signs):
    """Accumulate sign D(reals) ([B, 1]) and, in 'ada' mode every ada_interval
    iterations, move p towards E[sign] = ada_target and reset the sums.

    Returns (ada_p, ada_sign_sum, ada_count), scalars.
    """
    sign_sum = state.ada_sign_sum + jnp.sum(real_signs)
    count = state.ada_count + real_signs.size
    ada_p = state.ada_p
    if cfg.augment == "ada":
        adjust_now = (state.step + 1) % cfg.ada_interval == 0
        new_p = ada_adjust(ada_p, sign_sum / jnp.maximum(count, 1.0),
                           cfg.batch_size * cfg.ada_interval, cfg.ada_target, cfg.ada_kimg)
        ada_p = jnp.where(adjust_now, new_p, ada_p)
        sign_sum = jnp.where(adjust_now, 0.0, sign_sum)
        count = jnp.where(adjust_now, 0.0, count)
    return ada_p, sign_sum, count


def make_train_step(cfg: StepConfig, G, D, g_tx: optax.GradientTransformation,
                    d_tx: optax.GradientTransformation,
                    label_probs: Optional[np.ndarray]) -> Callable[..., Tuple[TrainState, Dict[str, Any]]]:
    """Build `step(state, real_img, real_c, base_key) -> (state, metrics)` (not yet jitted).

    real_img: [B, R, R, C] float32 in [-1, 1]; real_c: [B, K] one-hot (K may be 0).
    metrics: scalars; '*_w' entries are 0/1 weights saying whether a lazy phase ran.
    """
    if cfg.augment not in ("ada", "fixed", "noaug"):
        raise ValueError(f"augment mode {cfg.augment!r}: choose 'ada', 'fixed' or 'noaug'")
    spec = None if cfg.augment == "noaug" else AugmentSpec.from_name(cfg.augpipe)

    def step(state: TrainState, real_img: jnp.ndarray, real_c: jnp.ndarray, base_key: jax.Array):
        """One iteration: Gmain, Greg, Dmain, Dreg, G_ema, ADA (see the module doc)."""
        k = _step_keys(base_key, state.step)
        ctx = _Ctx(cfg, _nets(G, D, spec, state.ada_p), g_tx, d_tx, label_probs, k)
        g, m = _g_main(ctx, state)
        g, pl_mean, m_greg = _g_reg(ctx, state, g)
        g_params, g_opt, g_buffers = g
        d, g_buffers, real_signs, m_dmain = _d_main(ctx, state, g_params, g_buffers, real_img, real_c)
        (d_params, d_opt), m_dreg = _d_reg(ctx, state, d, real_img, real_c)
        ema_params = _ema(cfg, state, g_params)
        ada_p, sign_sum, count = _ada(cfg, state, real_signs)
        m = {**m, **m_greg, **m_dmain, **m_dreg, "ada_p": ada_p, "pl_mean": pl_mean}
        new_state = state.replace(
            step=state.step + 1, nimg=state.nimg + cfg.batch_size, g_params=g_params,
            g_buffers=g_buffers, d_params=d_params, ema_params=ema_params, ema_buffers=g_buffers,
            g_opt=g_opt, d_opt=d_opt, ada_p=ada_p, ada_sign_sum=sign_sum, ada_count=count,
            pl_mean=pl_mean)
        return new_state, m

    return step
