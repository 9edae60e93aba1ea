"""One StyleGAN2-ADA training iteration as a single jit-compiled function.

It reads beside NVIDIA's training loop (one loop over the phases, each an optimizer step
on gradients from its `loss.accumulate_gradients`): the step first draws every random
number it will use (`StepDraws`), then runs the phases in NVIDIA's order, each a function
TrainState -> TrainState (with its metrics) on its own latents:
  Gmain                         every iteration
  Greg  (path length)           when step % g_reg_interval == 0
  Dmain                         every iteration (fakes from the updated G); sums sign D(reals)
  Dreg  (R1)                    when step % d_reg_interval == 0
  EMA   G_ema <- lerp(G, G_ema, beta) with beta = 0.5 ** (B / ema_nimg)
  ADA   every `ada_interval` iterations p moves towards E[sign D(real)] = target.
The losses are pure functions of parameters, inputs and draws (`jaxgen.stylegan2.loss`).

Which lazy phases run: the caller that counts steps on the host (the harness)
passes `regs=lazy_phases(cfg, step)`, a static argument, so each compiled program
holds only the phases it runs (at most three programs: both, Greg only, none).
Without it (regs=None) the step decides on the device with lax.cond on
state.step. The host choice is the fast one on CPU: there XLA runs the weight
gradient of a convolution inside a conditional (or a loop) body 40x slower than
in the main program (79 s against 0.5 s for a 3x3, 512-channel layer at 32 px,
bench/RESULTS.md), and the regularisers are all weight gradients of convolutions.

RNG: the step's key is fold_in(base_key, step), so a resumed run draws the same
numbers as an uninterrupted one; it is split into 11 keys, one per use
(`_KEY_NAMES`). The batch is global: under jit with a sharded batch, XLA splits
the work across devices and the means (hence the gradients) are over the whole
batch, i.e. gradients are averaged across devices; results equal the
single-device run up to float rounding.

Gradient accumulation (StepConfig.batch_gpu > 0, NVIDIA's --batch-gpu): every
phase runs its batch in rounds of batch_gpu examples, each taking its rows of
the step's draws, and makes ONE optimizer step on the rounds' mean gradient
(`jaxgen.stylegan2.accumulation`, which says what differs from the whole batch).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from jaxgen.stylegan2 import loss as L
from jaxgen.stylegan2.accumulation import (WHOLE, Part, buffer_change, buffers_after, pl_rounds, round_keys,
                                           run_rounds, take_round)
from jaxgen.stylegan2.augment import AugmentSpec, ada_adjust
from jaxgen.stylegan2.state import TrainState

Metrics = Dict[str, jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """The train step's settings (NVIDIA's training_loop/loss kwargs): batch, losses, lazy
    regularisation intervals, G_ema, ADA, accumulation rounds and float16 loss scale."""
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


def lazy_phases(cfg: StepConfig, step: int) -> Tuple[str, ...]:
    """The lazy regularisation phases ('Greg', 'Dreg') that run at `step`, for `regs`."""
    greg = cfg.greg_enabled and step % cfg.g_reg_interval == 0
    dreg = cfg.dreg_enabled and step % cfg.d_reg_interval == 0
    return tuple(name for name, on in (("Greg", greg), ("Dreg", dreg)) if on)


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


def _step_keys(base_key: jax.Array, step) -> Dict[str, jax.Array]:
    """The 11 keys of iteration `step`, by name, from fold_in(base_key, step).

    Why fold_in: a resumed run draws the same numbers as an uninterrupted one.
    The names and their order fix which key each phase uses; do not reorder.
    """
    key = jax.random.fold_in(base_key, step)
    return dict(zip(_KEY_NAMES, jax.random.split(key, len(_KEY_NAMES))))


class StepDraws(NamedTuple):
    """Every random number of one train step, drawn before its first phase (`draw_step`), as
    NVIDIA's loop draws every phase's latents and labels for the whole batch up front.

    B = batch_size, K = labels (may be 0), n = B // pl_batch_shrink (Greg's batch). Each G
    run's synthesis-noise keys are one per accumulation round ([R], `round_keys`); all else
    is for the whole batch, and a round takes its rows (`accumulation.take_round`).
    """
    gmain_z: jnp.ndarray      # [B, z_dim]
    gmain_c: jnp.ndarray      # [B, K]
    gmain: L.GMainDraws       # style mixing, noise keys, the augmentation of the fakes
    greg_z: jnp.ndarray       # [B, z_dim]; Greg uses the first n
    greg_c: jnp.ndarray       # [B, K]
    greg: L.PLDraws           # for those n samples
    dmain_z: jnp.ndarray      # [B, z_dim]
    dmain_c: jnp.ndarray      # [B, K]
    dmain_gen: L.GDraws       # the G run making Dmain's fakes
    dmain: L.DMainDraws       # the augmentation of the fakes and of the reals
    dreg: L.R1Draws           # the augmentation of the reals


def _pl_batch(cfg: StepConfig) -> Tuple[int, int]:
    """Greg's batch: (n = batch_size // pl_batch_shrink, at least 1; its accumulation rounds)."""
    n = max(cfg.batch_size // cfg.loss.pl_batch_shrink, 1)
    return n, pl_rounds(n, cfg.rounds)


def draw_step(cfg: StepConfig, nets: L.Nets, base_key: jax.Array, step, real_c: jnp.ndarray) -> StepDraws:
    """All the random numbers of iteration `step` (int32 []), from its keys (`_step_keys`).

    real_c [B, K]: the real batch's labels, which the generated labels are drawn from;
    nets: G, D and D's augmentation (its probability p is the step's starting ada_p).
    A lazy phase that does not run leaves its draws unused: XLA drops them when the host
    decides (regs), and draws them anyway when lax.cond decides (as NVIDIA draws every
    phase's latents every iteration).
    """
    k, B = _step_keys(base_key, step), cfg.batch_size
    z = lambda name: jax.random.normal(k[name], (B, nets.G.z_dim))  # noqa: E731
    c = lambda name: sample_labels(k[name], B, real_c)  # noqa: E731
    per_round = lambda g, count: g._replace(noise=round_keys(g.noise, count))  # noqa: E731
    n, pl_count = _pl_batch(cfg)
    gmain = L.draw_g_main(k["gmain"], B, nets, cfg.loss)
    greg = L.draw_pl(k["greg"], n, nets, cfg.loss)
    return StepDraws(
        gmain_z=z("gz"), gmain_c=c("gc"), gmain=gmain._replace(g=per_round(gmain.g, cfg.rounds)),
        greg_z=z("rz"), greg_c=c("rc"), greg=greg._replace(g=per_round(greg.g, pl_count)),
        dmain_z=z("dz"), dmain_c=c("dc"),
        dmain_gen=per_round(L.draw_g(k["dgen"], B, nets, cfg.loss), cfg.rounds),
        dmain=L.draw_d_main(k["dmain"], B, nets), dreg=L.draw_r1(k["dreg"], B, nets))


class _Run(NamedTuple):
    """What every phase reads besides the state and the draws: the config, the networks
    (with D's augmentation) and the two optimizers."""
    cfg: StepConfig
    nets: L.Nets
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation


def _grads(run: _Run, loss_fn: Callable, *args, **kwargs):
    """loss.phase_grads with the step's loss scale: (loss, grads, aux)."""
    return L.phase_grads(loss_fn, *args, loss_scale=run.cfg.loss_scale, **kwargs)


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


def _g_update(run: _Run, state: TrainState, grads) -> Tuple[TrainState, jnp.ndarray]:
    """One G optimizer step on `grads` -> (state with new g_params and g_opt, overflowed 0/1)."""
    g_params, g_opt, overflow = _apply(run.g_tx, grads, state.g_opt, state.g_params, run.cfg.loss_scale)
    return state.replace(g_params=g_params, g_opt=g_opt), overflow


def _d_update(run: _Run, state: TrainState, grads) -> Tuple[TrainState, jnp.ndarray]:
    """One D optimizer step on `grads` -> (state with new d_params and d_opt, overflowed 0/1)."""
    d_params, d_opt, overflow = _apply(run.d_tx, grads, state.d_opt, state.d_params, run.cfg.loss_scale)
    return state.replace(d_params=d_params, d_opt=d_opt), overflow


def _lazy(run_now: Optional[bool], due: Callable[[], Any], phase: Callable, state: TrainState,
          changes: Tuple[str, ...]):
    """A lazy phase (Greg, Dreg) -> (state, (penalty, overflowed), ran): float32 scalars.

    phase(state) -> (state, (penalty, overflowed)). run_now True/False: known on the host,
    so only what runs is traced; None: decided on the device by `due()` (a traced bool)
    with lax.cond, which carries the state fields named in `changes` (those phase sets).
    """
    def update(fields):
        new, scalars = phase(state.replace(**fields))
        return {f: getattr(new, f) for f in changes}, scalars

    skipped = lambda fields: (fields, (jnp.zeros(()), jnp.zeros(())))  # noqa: E731
    fields = {f: getattr(state, f) for f in changes}
    if run_now is None:
        on = due()
        fields, scalars = jax.lax.cond(on, update, skipped, fields)
    elif run_now:
        on, (fields, scalars) = jnp.bool_(True), update(fields)
    else:
        on, (fields, scalars) = jnp.bool_(False), skipped(fields)
    return state.replace(**fields), scalars, on.astype(jnp.float32)


# ------------------------------------------------------------ the phases, in NVIDIA's order

def _gmain(run: _Run, state: TrainState, draws: StepDraws) -> Tuple[TrainState, Metrics]:
    """Gmain: one G optimizer step on the non-saturating loss of fakes from draws.gmain_z/c
    [B]; G's w_avg moves. Metrics 'loss/G', 'scores/fake' (mean logit), 'overflow' (0/1)."""
    count = run.cfg.rounds

    def one_round(part: Part):
        z, c, d = take_round((draws.gmain_z, draws.gmain_c, draws.gmain), part)
        loss, grads, aux = _grads(run, L.g_main_loss, state.g_params, state.g_buffers, state.d_params,
                                  z, c, d, run.nets, run.cfg.loss)
        change = buffer_change(aux["buffers"], state.g_buffers, count)
        return (grads, change, loss, jnp.mean(aux["logits"])), ()

    (grads, change, loss, score), _ = run_rounds(one_round, count)
    state = state.replace(g_buffers=buffers_after(change, state.g_buffers, count))
    state, overflow = _g_update(run, state, grads)
    return state, {"loss/G": loss, "scores/fake": score, "overflow": overflow}


def _greg_update(run: _Run, state: TrainState, draws: StepDraws):
    """Greg's step: G on the path-length penalty of the first n of draws.greg_z/c, its
    gradient scaled by g_reg_interval (lazy regularisation); G's w_avg and pl_mean move.

    Returns (state, (the mean penalty, overflowed 0/1)).
    """
    cfg = run.cfg
    n, count = _pl_batch(cfg)
    if count == 1:
        _, grads, aux = _grads(run, L.g_pl_loss, state.g_params, state.g_buffers, draws.greg_z,
                               draws.greg_c, take_round(draws.greg, WHOLE), state.pl_mean, run.nets,
                               cfg.loss, gain=float(cfg.g_reg_interval))
        buffers, pl_mean, penalty = aux["buffers"], aux["pl_mean"], jnp.mean(aux["pl_penalty"])
    else:
        grads, buffers, pl_mean, penalty = _pl_in_rounds(run, state, draws, n, count)
    state, overflow = _g_update(run, state.replace(g_buffers=buffers, pl_mean=pl_mean), grads)
    return state, (penalty, overflow)


def _pl_in_rounds(run: _Run, state: TrainState, draws: StepDraws, n: int, count: int):
    """Greg's gradient on the path-length batch (the first n of draws.greg_z/c) in `count` rounds.

    Pass 1 computes every path length (no parameter gradient), hence the new pl_mean
    and the penalty; pass 2 averages the gradients of `loss.g_pl_round_loss`, which
    sum to g_pl_loss's. Returns (grads, g_buffers, new pl_mean, mean penalty).
    """
    cfg, g_params, g_buffers = run.cfg, state.g_params, state.g_buffers
    batch = (draws.greg_z[:n], draws.greg_c[:n], draws.greg)

    def lengths(part: Part):  # pass 1: the round's path lengths [n / count], nothing to average
        z, c, d = take_round(batch, part)
        return (), L.pl_lengths(g_params, g_buffers, z, c, d, run.nets, cfg.loss)[0]

    _, a = run_rounds(lengths, count)   # [n], in round order
    new_pl_mean = state.pl_mean + cfg.loss.pl_decay * (jnp.mean(a) - state.pl_mean)

    def one_round(part: Part):
        z, c, d = take_round(batch, part)
        _, grads, aux = _grads(run, L.g_pl_round_loss, g_params, g_buffers, z, c, d, new_pl_mean,
                               jnp.mean(a - new_pl_mean), run.nets, cfg.loss,
                               gain=float(cfg.g_reg_interval))
        return (grads, buffer_change(aux["buffers"], g_buffers, count)), ()

    (grads, change), _ = run_rounds(one_round, count)
    penalty = jnp.mean(jnp.square(a - new_pl_mean))
    return grads, buffers_after(change, g_buffers, count), new_pl_mean, penalty


def _greg(run: _Run, state: TrainState, draws: StepDraws, run_now: Optional[bool]):
    """Greg: the lazy path-length step when step % g_reg_interval == 0 (`run_now`: whether it
    runs, known on the host; None: decide on the device from state.step). Not traced at all
    when pl_weight or the interval is 0.

    Metrics 'loss/pl_penalty', its 0/1 weight 'loss/pl_penalty_w' (whether it ran), 'overflow'.
    """
    cfg = run.cfg
    if not cfg.greg_enabled:
        return state, {}
    state, (penalty, overflow), ran = _lazy(
        run_now, lambda: state.step % cfg.g_reg_interval == 0, lambda s: _greg_update(run, s, draws), state,
        ("g_params", "g_opt", "g_buffers", "pl_mean"))
    return state, {"loss/pl_penalty": penalty, "loss/pl_penalty_w": ran, "overflow": overflow}


def _dmain(run: _Run, state: TrainState, draws: StepDraws, real_img, real_c):
    """Dmain: one D optimizer step on fakes of the current G (from draws.dmain_z/c) and the real
    batch (real_img [B, R, R, C], real_c [B, K]). G ran in training mode, so its w_avg moves;
    sign D(reals) is added to ADA's sums (as NVIDIA collects it during Dmain).

    Metrics 'loss/D', 'scores/real' (mean logit), 'signs/real' (mean sign), 'overflow' (0/1).
    """
    count = run.cfg.rounds

    def one_round(part: Part):
        z, c, gen, d, img, img_c = take_round(
            (draws.dmain_z, draws.dmain_c, draws.dmain_gen, draws.dmain, real_img, real_c), part)
        fakes, _, buffers = L.run_G(run.nets, state.g_params, state.g_buffers, z, c, gen, run.cfg.loss)
        loss, grads, aux = _grads(run, L.d_main_loss, state.d_params, fakes, c, img, img_c, d, run.nets)
        real_logits = aux["real_logits"]
        means = (grads, buffer_change(buffers, state.g_buffers, count), loss, jnp.mean(real_logits))
        return means, jnp.sign(real_logits)

    (grads, change, loss, score), signs = run_rounds(one_round, count)   # signs [B, 1]
    state, overflow = _d_update(run, state, grads)
    state = state.replace(g_buffers=buffers_after(change, state.g_buffers, count),
                          ada_sign_sum=state.ada_sign_sum + jnp.sum(signs),
                          ada_count=state.ada_count + signs.size)
    return state, {"loss/D": loss, "scores/real": score, "signs/real": jnp.mean(signs),
                   "overflow": overflow}


def _dreg_update(run: _Run, state: TrainState, draws: StepDraws, real_img, real_c):
    """Dreg's step: D on the R1 penalty of the reals [B, R, R, C], its gradient scaled by
    d_reg_interval (lazy regularisation). Returns (state, (mean penalty, overflowed 0/1))."""
    cfg = run.cfg

    def one_round(part: Part):
        img, c, d = take_round((real_img, real_c, draws.dreg), part)
        _, grads, aux = _grads(run, L.d_r1_loss, state.d_params, img, c, d, run.nets, cfg.loss,
                               gain=float(cfg.d_reg_interval))
        return (grads, jnp.mean(aux["r1_penalty"])), ()

    (grads, r1), _ = run_rounds(one_round, cfg.rounds)
    state, overflow = _d_update(run, state, grads)
    return state, (r1, overflow)


def _dreg(run: _Run, state: TrainState, draws: StepDraws, real_img, real_c, run_now: Optional[bool]):
    """Dreg: the lazy R1 step when step % d_reg_interval == 0; `run_now` as in `_greg`. Not
    traced at all when r1_gamma or the interval is 0.

    Metrics 'loss/r1_penalty', its 0/1 weight 'loss/r1_penalty_w', 'overflow'.
    """
    cfg = run.cfg
    if not cfg.dreg_enabled:
        return state, {}
    state, (r1, overflow), ran = _lazy(
        run_now, lambda: state.step % cfg.d_reg_interval == 0,
        lambda s: _dreg_update(run, s, draws, real_img, real_c), state, ("d_params", "d_opt"))
    return state, {"loss/r1_penalty": r1, "loss/r1_penalty_w": ran, "overflow": overflow}


def _ema(cfg: StepConfig, state: TrainState) -> TrainState:
    """EMA: G_ema <- lerp(G, G_ema, beta), beta = 0.5 ** (B / ema_nimg), ema_nimg ramped up
    with the images shown so far (ema_rampup); G_ema's buffers are G's."""
    ema_nimg = cfg.ema_kimg * 1000.0
    if cfg.ema_rampup:
        ema_nimg = jnp.minimum(ema_nimg, state.nimg.astype(jnp.float32) * cfg.ema_rampup)
    beta = 0.5 ** (cfg.batch_size / jnp.maximum(ema_nimg, 1e-8))
    ema = jax.tree_util.tree_map(lambda p, e: p + beta * (e - p), state.g_params, state.ema_params)
    return state.replace(ema_params=ema, ema_buffers=state.g_buffers)


def _ada(cfg: StepConfig, state: TrainState) -> TrainState:
    """ADA: in 'ada' mode, every ada_interval iterations move p towards E[sign D(reals)] =
    ada_target (the mean of the sums Dmain adds to) and reset the sums."""
    if cfg.augment != "ada":
        return state
    adjust_now = (state.step + 1) % cfg.ada_interval == 0
    new_p = ada_adjust(state.ada_p, state.ada_sign_sum / jnp.maximum(state.ada_count, 1.0),
                       cfg.batch_size * cfg.ada_interval, cfg.ada_target, cfg.ada_kimg)
    return state.replace(ada_p=jnp.where(adjust_now, new_p, state.ada_p),
                         ada_sign_sum=jnp.where(adjust_now, 0.0, state.ada_sign_sum),
                         ada_count=jnp.where(adjust_now, 0.0, state.ada_count))


def _metrics(cfg: StepConfig, state: TrainState, phases: Tuple[Metrics, ...]) -> Metrics:
    """The step's metrics: the phases' in order, then 'ada_p' and 'pl_mean' after the step and,
    with a loss scale, 'overflow': the updates (0-4) skipped because gradients overflowed."""
    overflow = sum(m.get("overflow", 0.0) for m in phases)
    out = {k: v for m in phases for k, v in m.items() if k != "overflow"}
    out.update({"ada_p": state.ada_p, "pl_mean": state.pl_mean})
    if cfg.loss_scale != 1.0:
        out["overflow"] = overflow
    return out


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
        """One iteration: draw, then Gmain, Greg, Dmain, Dreg, EMA, ADA (see the module doc)."""
        greg_now, dreg_now = (None, None) if regs is None else ("Greg" in regs, "Dreg" in regs)
        run = _Run(cfg, L.Nets(G, D, spec, state.ada_p), g_tx, d_tx)
        draws = draw_step(cfg, run.nets, base_key, state.step, real_c)
        state, m_gmain = _gmain(run, state, draws)
        state, m_greg = _greg(run, state, draws, greg_now)
        state, m_dmain = _dmain(run, state, draws, real_img, real_c)
        state, m_dreg = _dreg(run, state, draws, real_img, real_c, dreg_now)
        state = _ada(cfg, _ema(cfg, state))
        state = state.replace(step=state.step + 1, nimg=state.nimg + cfg.batch_size)
        return state, _metrics(cfg, state, (m_gmain, m_greg, m_dmain, m_dreg))

    return step
