"""One StyleGAN2-ADA training iteration as a single jit-compiled function.

Phases, in NVIDIA's order, each with its own latents and optimizer step:
  Gmain                         every iteration
  Greg  (path length)           when step % g_reg_interval == 0
  Dmain                         every iteration (fakes from the updated G)
  Dreg  (R1)                    when step % d_reg_interval == 0
then G_ema <- lerp(G, G_ema, beta) with beta = 0.5 ** (B / ema_nimg), and every
`ada_interval` iterations ADA's p moves towards E[sign D(real)] = target.

Which lazy phases run: the caller that counts steps on the host (the harness)
passes `regs=lazy_phases(cfg, step)`, a static argument, so each compiled program
holds only the phases it runs (at most three programs: both, Greg only, none).
Without it (regs=None) the step decides on the device with lax.cond on
state.step. The host choice is the fast one on CPU: there XLA runs the weight
gradient of a convolution inside a conditional (or a loop) body 40x slower than
in the main program (79 s against 0.5 s for a 3x3, 512-channel layer at 32 px,
bench/RESULTS.md), and the regularisers are all weight gradients of convolutions.

RNG: the step's key is fold_in(base_key, step), so a resumed run draws the
same numbers as an uninterrupted one. The batch is global: under jit with a
sharded batch, XLA splits the work across devices and the means (hence the
gradients) are over the whole batch, i.e. gradients are averaged across
devices; results equal the single-device run up to float rounding.

Gradient accumulation (StepConfig.batch_gpu > 0, NVIDIA's --batch-gpu): every
phase runs its batch in rounds of batch_gpu examples (lax.scan, so memory is
that of one round), averages the rounds' gradients and makes ONE optimizer
step, which equals the step on the whole batch up to float round-off. Round r
holds rows r, r + R, r + 2R, ... of the batch (R = batch_size / batch_gpu
rounds; see `loss.Part`); latents and labels are drawn for the whole batch
and sliced. batch_gpu counts examples of the global batch: with the batch
sharded over D devices each holds batch_gpu / D of a round (so NVIDIA's
per-GPU --batch-gpu=b on D GPUs is batch_gpu = b * D here). What could differ
from the whole batch at once, and how:
  * minibatch-std groups form within a round (as within a GPU's batch in
    NVIDIA's code): batch_gpu must be a multiple of mbstd_group_size, and with
    strided rounds a round's groups are exactly the whole batch's groups;
  * ADA's per-sample transforms, the style-mixing latents and the path-length
    noise are drawn for the whole batch and sliced: identical;
  * G's w_avg update is linear in the mean w of a forward pass: each round
    updates from the phase's starting buffers and the phase keeps the mean of
    the rounds' changes, which is the whole batch's update (NVIDIA updates it
    once per round, R times per phase);
  * synthesis noise (noise_mode 'random') is drawn by the generator with the
    round's shape, from the phase's noise key folded with the round index:
    same distribution, not the same numbers; 'const' noise is identical;
  * path length: pl_batch_shrink applies to the global batch (its first
    batch_size // pl_batch_shrink samples, run in up to R rounds), and the
    penalty's mean term (pl_mean' = lerp(pl_mean, mean a, pl_decay), which
    carries gradient) is over that whole batch, as without accumulation. This
    costs a first pass that computes all path lengths without the parameter
    gradient (see `loss.g_pl_round_loss`). NVIDIA shrinks each round's batch
    and updates pl_mean once per round; jaxgen keeps the update independent of
    batch_gpu, which only trades memory for time;
  * NVIDIA SUMS the rounds' mean gradients (R times the batch's gradient; Adam
    is nearly invariant to that scale, all but its epsilon); jaxgen AVERAGES
    them, so the update does not depend on batch_gpu at all.
Cost: one scan per phase (R sequential rounds; pass 1 of Greg is extra); with
batch_gpu = 0, or = batch_size, the step is the whole-batch program as before.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from jaxgen.stylegan2 import loss as L
from jaxgen.stylegan2.augment import (_BLIT, _COLOR, _GEOM, AugmentSpec, ada_adjust, apply_color,
                                      apply_geometric, augment, sample_matrices)
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
    batch_gpu: int = 0              # examples per accumulation round; 0 = the whole batch at once
    loss_scale: float = 1.0         # static gradient scale for float16 (1 = none, as NVIDIA);
                                    # != 1 also skips any update whose gradients overflowed

    @property
    def rounds(self) -> int:
        """Accumulation rounds per phase: batch_size / batch_gpu (1 without batch_gpu)."""
        return self.batch_size // self.batch_gpu if self.batch_gpu else 1

    @property
    def greg_enabled(self) -> bool:
        """Whether the path-length regulariser runs at all (pl_weight and its interval > 0)."""
        return bool(self.loss.pl_weight > 0 and self.g_reg_interval)

    @property
    def dreg_enabled(self) -> bool:
        """Whether R1 runs at all (r1_gamma and its interval > 0)."""
        return bool(self.loss.r1_gamma > 0 and self.d_reg_interval)


def batch_gpu_problem(batch_size: int, batch_gpu: int, mbstd_group_size: Optional[int],
                      num_devices: int = 1) -> Optional[str]:
    """Why `batch_gpu` cannot split a step of `batch_size` (None: it can; 0 is always fine).

    It must divide the batch, be a multiple of D's minibatch-std group size
    (groups form within a round; None = the whole batch is one group) and of the
    number of devices the batch is sharded over.
    """
    if batch_gpu == 0:
        return None
    if batch_gpu < 0 or batch_size % batch_gpu:
        return f"must be 0 (off) or divide the batch size {batch_size}"
    if batch_gpu < batch_size and (mbstd_group_size is None or batch_gpu % mbstd_group_size):
        return (f"must be a multiple of the minibatch-std group size {mbstd_group_size} "
                "(groups form within a round)")
    if batch_gpu % num_devices:
        return f"must be a multiple of the {num_devices} devices the batch is split over"
    return None


# Names of the 11 keys split from each step's key, in split order.
_KEY_NAMES = ("gz", "gc", "gmain", "rz", "rc", "greg", "dz", "dc", "dgen", "dmain", "dreg")


def sample_labels(rng: jax.Array, batch: int, real_c: jnp.ndarray) -> jnp.ndarray:
    """Generated labels [B, K]: `batch` rows of the real batch's labels real_c [B', K], drawn
    with replacement ([B, 0] when unconditional).

    The real batch is drawn uniformly from the data, so these labels follow the data's class
    frequencies, as NVIDIA's (drawn from the dataset's labels), without the frequencies
    being a constant of the compiled step: every per-class fine-tune of one config (all
    images one class) runs the base's program, which the compilation cache then holds."""
    if real_c.shape[-1] == 0:
        return jnp.zeros((batch, 0), jnp.float32)
    idx = jax.random.randint(rng, (batch,), 0, real_c.shape[0])
    return jnp.asarray(real_c, jnp.float32)[idx]


class _Ctx(NamedTuple):
    """What every phase of one step reads: the config, the networks (with D's
    augmentation at this step's p), the optimizers, the real batch's labels [B, K]
    (the generated labels are drawn from them) and the step's keys by name."""
    cfg: StepConfig
    nets: L.Nets
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation
    real_c: jnp.ndarray
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
    return L.Nets(G, D, functools.partial(_augment, p=ada_p, spec=spec))


def _augment(img: jnp.ndarray, rng: jax.Array, part: Optional[L.Part], p, spec: AugmentSpec):
    """ADA's augmentation of img [n,R,R,C]; for a round (`part`), each sample gets the
    transforms drawn for its row of the whole batch [n * count] (the same as without rounds)."""
    if part is None:
        return augment(img, rng, p, spec)
    full_shape = (img.shape[0] * part.count,) + img.shape[1:]
    g_blit, g_general, cm = (part.take(m) for m in sample_matrices(rng, p, spec, full_shape))
    if spec.any_of(_BLIT + _GEOM):
        img = apply_geometric(img, g_blit, g_general, general=spec.any_of(_GEOM))
    if spec.any_of(_COLOR):
        img = apply_color(img, cm)
    return img


def _take(x: jnp.ndarray, part: Optional[L.Part]) -> jnp.ndarray:
    """The round's rows of x [N, ...] (all of x without a part)."""
    return x if part is None else part.take(x)


def _grads(ctx: "_Ctx", loss_fn: Callable, *args, **kwargs):
    """loss.phase_grads with the step's loss scale: (loss, grads, aux)."""
    return L.phase_grads(loss_fn, *args, loss_scale=ctx.cfg.loss_scale, **kwargs)


def _apply(tx: optax.GradientTransformation, grads, opt, params, loss_scale: float):
    """One optimizer update -> (params, opt, overflowed 0/1 float32 []).

    Without loss scaling this is NVIDIA's update (non-finite gradients were already
    clipped by the optimizer's nan_to_num). With a loss scale, gradients that are not
    all finite mean float16 overflowed: the update is skipped, as a dynamic scaler would.
    """
    upd, new_opt = tx.update(grads, opt, params)
    new_params = optax.apply_updates(params, upd)
    if loss_scale == 1.0:
        return new_params, new_opt, jnp.zeros((), jnp.float32)
    ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
    return keep(new_params, params), keep(new_opt, opt), 1.0 - ok.astype(jnp.float32)


def _rounds(fn: Callable[[Optional[L.Part]], Tuple[Any, Any]], count: int) -> Tuple[Any, Any]:
    """Run a phase in `count` accumulation rounds, with the memory of one round (lax.scan).

    fn(part) -> (mean_tree, rows_tree): mean_tree (gradients, round means; float
    leaves) is averaged over the rounds; rows_tree leaves [n, ...] (per-sample
    values) are concatenated to [count * n, ...] in round order, not batch order.
    count == 1: fn(None), the whole batch in one go.
    """
    if count == 1:
        return fn(None)
    shapes = jax.eval_shape(lambda: fn(L.Part(jnp.int32(0), count))[0])
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(total, r):
        mean_tree, rows = fn(L.Part(r, count))
        return jax.tree_util.tree_map(jnp.add, total, mean_tree), rows

    total, rows = jax.lax.scan(body, zeros, jnp.arange(count, dtype=jnp.int32))
    return (jax.tree_util.tree_map(lambda t: t / count, total),
            jax.tree_util.tree_map(lambda y: y.reshape((-1,) + y.shape[2:]), rows))


def _buffer_change(new, old, part: Optional[L.Part]):
    """What a round contributes of G's buffers: the new ones (whole batch) or their change."""
    return new if part is None else jax.tree_util.tree_map(jnp.subtract, new, old)


def _buffers_after(mean_change, old, count: int):
    """G's buffers after a phase: the whole batch's, or old + the rounds' mean change, which
    is the whole batch's w_avg update (it is linear in the batch mean of w)."""
    return mean_change if count == 1 else jax.tree_util.tree_map(jnp.add, old, mean_change)


def _latents(ctx: _Ctx, name: str) -> jnp.ndarray:
    """Latents z [B, z_dim] ~ N(0, I) from the step key `name`."""
    return jax.random.normal(ctx.k[name], (ctx.cfg.batch_size, ctx.nets.G.z_dim))


def _labels(ctx: _Ctx, name: str) -> jnp.ndarray:
    """Generated labels [B, K] (one-hot, K may be 0) from the step key `name`."""
    return sample_labels(ctx.k[name], ctx.cfg.batch_size, ctx.real_c)


def _g_main(ctx: _Ctx, state: TrainState):
    """Gmain: one G optimizer step on the non-saturating loss of fresh fakes.

    Returns ((g_params, g_opt, g_buffers), metrics 'loss/G', 'scores/fake').
    """
    z, c, count = _latents(ctx, "gz"), _labels(ctx, "gc"), ctx.cfg.rounds

    def one_round(part):
        loss, grads, aux = _grads(ctx, L.g_main_loss, state.g_params, state.g_buffers, state.d_params,
                                  _take(z, part), _take(c, part), ctx.k["gmain"], ctx.nets,
                                  ctx.cfg.loss, part=part)
        buffers = _buffer_change(aux["buffers"], state.g_buffers, part)
        return (grads, buffers, loss, jnp.mean(aux["logits"])), ()

    (grads, buffers, loss, score), _ = _rounds(one_round, count)
    g_params, g_opt, overflow = _apply(ctx.g_tx, grads, state.g_opt, state.g_params, ctx.cfg.loss_scale)
    return (g_params, g_opt, _buffers_after(buffers, state.g_buffers, count)), \
        {"loss/G": loss, "scores/fake": score, "overflow": overflow}


def _g_reg_update(ctx: _Ctx, operand):
    """The Greg branch: one G optimizer step on the path-length penalty, its
    gradient scaled by g_reg_interval (lazy regularisation).

    operand and the first result: (g_params, g_opt, g_buffers, pl_mean); second
    result: (the mean penalty, overflowed 0/1), scalars.
    """
    g_params, g_opt, g_buffers, pl_mean = operand
    cfg = ctx.cfg
    z, c = _latents(ctx, "rz"), _labels(ctx, "rc")
    n = max(cfg.batch_size // cfg.loss.pl_batch_shrink, 1)
    count = _pl_rounds(n, cfg.rounds)
    if count == 1:
        _, grads, aux = _grads(ctx, L.g_pl_loss, g_params, g_buffers, z, c, ctx.k["greg"], pl_mean,
                               ctx.nets, cfg.loss, gain=float(cfg.g_reg_interval))
        g_buffers, pl_mean, penalty = aux["buffers"], aux["pl_mean"], jnp.mean(aux["pl_penalty"])
    else:
        grads, g_buffers, pl_mean, penalty = _pl_in_rounds(ctx, operand, z[:n], c[:n], count)
    g_params, g_opt, overflow = _apply(ctx.g_tx, grads, g_opt, g_params, ctx.cfg.loss_scale)
    return (g_params, g_opt, g_buffers, pl_mean), (penalty, overflow)


def _pl_rounds(n: int, rounds: int) -> int:
    """Rounds for the n-sample path-length batch: the largest divisor of n up to `rounds`."""
    return max(d for d in range(1, min(n, rounds) + 1) if n % d == 0)


def _pl_in_rounds(ctx: _Ctx, operand, z: jnp.ndarray, c: jnp.ndarray, count: int):
    """Greg's gradient on the path-length batch z [n, z_dim], c [n, K] in `count` rounds.

    Pass 1 computes every path length (no parameter gradient), hence the new
    pl_mean and the penalty; pass 2 averages the gradients of
    `loss.g_pl_round_loss`, which sum to g_pl_loss's.
    operand: (g_params, g_opt, g_buffers, pl_mean). Returns (grads, g_buffers,
    new pl_mean, mean penalty).
    """
    g_params, _, g_buffers, pl_mean = operand
    cfg, key = ctx.cfg, ctx.k["greg"]

    def lengths(part):  # pass 1: the round's path lengths [n / count], nothing to average
        return (), L.pl_lengths(g_params, g_buffers, part.take(z), part.take(c), key, ctx.nets, cfg.loss,
                                part=part)[0]

    _, a = _rounds(lengths, count)   # [n], in round order
    new_pl_mean = pl_mean + cfg.loss.pl_decay * (jnp.mean(a) - pl_mean)

    def one_round(part):
        _, grads, aux = _grads(ctx, L.g_pl_round_loss, g_params, g_buffers, part.take(z), part.take(c),
                               key, new_pl_mean, jnp.mean(a - new_pl_mean), ctx.nets, cfg.loss,
                               part, gain=float(cfg.g_reg_interval))
        return (grads, _buffer_change(aux["buffers"], g_buffers, part)), ()

    (grads, change), _ = _rounds(one_round, count)
    penalty = jnp.mean(jnp.square(a - new_pl_mean))
    return grads, _buffers_after(change, g_buffers, count), new_pl_mean, penalty


def _lazy(run: Optional[bool], due: Callable[[], Any], update: Callable, operand):
    """A lazy phase: (operand after it, (penalty, overflowed), 0/1 weight saying whether it ran).

    run True/False: known on the host, so only what runs is traced; None: decided on the
    device by `due()` (a traced bool) with lax.cond.
    update(operand) -> (operand, (penalty, overflowed)), scalars.
    """
    skipped = lambda op: (op, (jnp.zeros(()), jnp.zeros(())))  # noqa: E731
    if run is None:
        on = due()
        out, scalars = jax.lax.cond(on, update, skipped, operand)
    elif run:
        on, (out, scalars) = jnp.bool_(True), update(operand)
    else:
        on, (out, scalars) = jnp.bool_(False), skipped(operand)
    return out, scalars, on.astype(jnp.float32)


def _g_reg(ctx: _Ctx, state: TrainState, g: tuple, run: Optional[bool]):
    """Greg: the lazy path-length step when step % g_reg_interval == 0; skipped entirely
    (not traced) when pl_weight or the interval is 0. `run`: whether it runs at this step,
    known on the host (None: decide on the device with lax.cond on state.step).

    g: (g_params, g_opt, g_buffers) after Gmain. Returns (g, pl_mean, metrics
    'loss/pl_penalty' and its 0/1 weight 'loss/pl_penalty_w', 'overflow').
    """
    cfg = ctx.cfg
    if not cfg.greg_enabled:
        return g, state.pl_mean, {}
    (g_params, g_opt, g_buffers, pl_mean), (pl_pen, overflow), w = _lazy(
        run, lambda: state.step % cfg.g_reg_interval == 0, lambda op: _g_reg_update(ctx, op),
        (*g, state.pl_mean))
    metrics = {"loss/pl_penalty": pl_pen, "loss/pl_penalty_w": w, "overflow": overflow}
    return (g_params, g_opt, g_buffers), pl_mean, metrics


def _d_main(ctx: _Ctx, state: TrainState, g_params, g_buffers, real_img, real_c):
    """Dmain: one D optimizer step on fakes of the updated G and the real batch
    (real_img [B, R, R, C], real_c [B, K]).

    Returns ((d_params, d_opt), g_buffers after this G run, real_signs [B, 1]
    = sign D(reals) for ADA, metrics 'loss/D', 'scores/real', 'signs/real').
    """
    z, gen_c, count = _latents(ctx, "dz"), _labels(ctx, "dc"), ctx.cfg.rounds

    def one_round(part):
        c = _take(gen_c, part)
        gen_img, _, buffers = L.run_G(ctx.nets, g_params, g_buffers, _take(z, part), c, ctx.k["dgen"],
                                      ctx.cfg.loss, part)
        loss, grads, aux = _grads(ctx, L.d_main_loss, state.d_params, gen_img, c, _take(real_img, part),
                                  _take(real_c, part), ctx.k["dmain"], ctx.nets, part=part)
        real_logits = aux["real_logits"]
        means = (grads, _buffer_change(buffers, g_buffers, part), loss, jnp.mean(real_logits))
        return means, jnp.sign(real_logits)

    (grads, buffers, loss, score), real_signs = _rounds(one_round, count)
    d_params, d_opt, overflow = _apply(ctx.d_tx, grads, state.d_opt, state.d_params, ctx.cfg.loss_scale)
    metrics = {"loss/D": loss, "scores/real": score, "signs/real": jnp.mean(real_signs),
               "overflow": overflow}
    return (d_params, d_opt), _buffers_after(buffers, g_buffers, count), real_signs, metrics


def _d_reg_update(ctx: _Ctx, operand, real_img, real_c):
    """The Dreg branch: one D optimizer step on the R1 penalty of the reals, its
    gradient scaled by d_reg_interval (lazy regularisation).

    operand and the first result: (d_params, d_opt); second: (the mean penalty, overflowed 0/1).
    """
    d_params, d_opt = operand
    cfg = ctx.cfg

    def one_round(part):
        _, grads, aux = _grads(ctx, L.d_r1_loss, d_params, _take(real_img, part), _take(real_c, part),
                               ctx.k["dreg"], ctx.nets, cfg.loss, gain=float(cfg.d_reg_interval),
                               part=part)
        return (grads, jnp.mean(aux["r1_penalty"])), ()

    (grads, r1), _ = _rounds(one_round, cfg.rounds)
    d_params, d_opt, overflow = _apply(ctx.d_tx, grads, d_opt, d_params, ctx.cfg.loss_scale)
    return (d_params, d_opt), (r1, overflow)


def _d_reg(ctx: _Ctx, state: TrainState, d: tuple, real_img, real_c, run: Optional[bool]):
    """Dreg: the lazy R1 step when step % d_reg_interval == 0; skipped entirely (not
    traced) when r1_gamma or the interval is 0. `run` as in `_g_reg`.

    d: (d_params, d_opt) after Dmain. Returns (d, metrics 'loss/r1_penalty' and
    its 0/1 weight 'loss/r1_penalty_w', 'overflow').
    """
    cfg = ctx.cfg
    if not cfg.dreg_enabled:
        return d, {}
    d, (r1, overflow), w = _lazy(run, lambda: state.step % cfg.d_reg_interval == 0,
                                 lambda op: _d_reg_update(ctx, op, real_img, real_c), d)
    return d, {"loss/r1_penalty": r1, "loss/r1_penalty_w": w, "overflow": overflow}


def lazy_phases(cfg: StepConfig, step: int) -> Tuple[str, ...]:
    """The lazy regularisation phases ('Greg', 'Dreg') that run at `step`, for `regs`."""
    greg = cfg.greg_enabled and step % cfg.g_reg_interval == 0
    dreg = cfg.dreg_enabled and step % cfg.d_reg_interval == 0
    return tuple(name for name, on in (("Greg", greg), ("Dreg", dreg)) if on)


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
                    d_tx: optax.GradientTransformation) -> Callable[..., Tuple[TrainState, Dict[str, Any]]]:
    """Build `step(state, real_img, real_c, base_key, regs=None) -> (state, metrics)` (not jitted).

    real_img: [B, R, R, C] float32 in [-1, 1]; real_c: [B, K] one-hot (K may be 0).
    regs: `lazy_phases(cfg, step)` for the step being run (jit it as a static argument),
    or None to choose on the device from state.step (one program with lax.cond).
    metrics: scalars; '*_w' entries are 0/1 weights saying whether a lazy phase ran;
    'overflow' (only with a loss scale): updates skipped because gradients overflowed.
    """
    if cfg.augment not in ("ada", "fixed", "noaug"):
        raise ValueError(f"augment mode {cfg.augment!r}: choose 'ada', 'fixed' or 'noaug'")
    group = D.mbstd_group_size if D.mbstd_num_channels > 0 else 1
    problem = batch_gpu_problem(cfg.batch_size, cfg.batch_gpu, group)
    if problem:
        raise ValueError(f"batch_gpu={cfg.batch_gpu} {problem}")
    spec = None if cfg.augment == "noaug" else AugmentSpec.from_name(cfg.augpipe)

    def step(state: TrainState, real_img: jnp.ndarray, real_c: jnp.ndarray, base_key: jax.Array,
             regs: Optional[Tuple[str, ...]] = None):
        """One iteration: Gmain, Greg, Dmain, Dreg, G_ema, ADA (see the module doc)."""
        runs = (None, None) if regs is None else ("Greg" in regs, "Dreg" in regs)
        k = _step_keys(base_key, state.step)
        ctx = _Ctx(cfg, _nets(G, D, spec, state.ada_p), g_tx, d_tx, real_c, k)
        g, m = _g_main(ctx, state)
        g, pl_mean, m_greg = _g_reg(ctx, state, g, runs[0])
        g_params, g_opt, g_buffers = g
        d, g_buffers, real_signs, m_dmain = _d_main(ctx, state, g_params, g_buffers, real_img, real_c)
        (d_params, d_opt), m_dreg = _d_reg(ctx, state, d, real_img, real_c, runs[1])
        ema_params = _ema(cfg, state, g_params)
        ada_p, sign_sum, count = _ada(cfg, state, real_signs)
        overflow = sum(part.pop("overflow", 0.0) for part in (m, m_greg, m_dmain, m_dreg))
        m = {**m, **m_greg, **m_dmain, **m_dreg, "ada_p": ada_p, "pl_mean": pl_mean}
        if cfg.loss_scale != 1.0:
            m["overflow"] = overflow  # updates skipped this step (0-4)
        new_state = state.replace(
            step=state.step + 1, nimg=state.nimg + cfg.batch_size, g_params=g_params,
            g_buffers=g_buffers, d_params=d_params, ema_params=ema_params, ema_buffers=g_buffers,
            g_opt=g_opt, d_opt=d_opt, ada_p=ada_p, ada_sign_sum=sign_sum, ada_count=count,
            pl_mean=pl_mean)
        return new_state, m

    return step
