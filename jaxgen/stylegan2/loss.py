"""StyleGAN2-ADA losses as pure functions (NVIDIA's StyleGAN2Loss, phase by phase).

  Gmain: non-saturating G loss  mean softplus(-D(G(z)))
  Greg:  path-length regularisation on a 1/pl_batch_shrink batch:
         a = |J_w^T y| with y ~ N(0, I)/sqrt(H W); penalty (a - pl_mean')^2 * pl_weight,
         where pl_mean' = lerp(pl_mean, mean(a), pl_decay) (gradient flows through it,
         as in the reference)
  Dmain: mean softplus(D(G(z))) + mean softplus(-D(x))
  Dreg:  R1 = |d sum D(x) / dx|^2 * r1_gamma / 2 on reals

Each loss function returns (scalar, aux) so `jax.value_and_grad(..., has_aux=True)`
gives the phase's gradients; `gain` (the lazy-regularisation interval) multiplies
the scalar exactly as in the reference. D's inputs are augmented by `Nets.augment`
(ADA's pipeline; None = not at all).

Nothing here is stateful: the new G buffers (w_avg) and the new pl_mean are
returned in `aux` and the caller puts them into the train state.

Random numbers. Each loss takes its random numbers as one value (`GMainDraws`,
`PLDraws`, `DMainDraws`, `R1Draws`: style mixing, the synthesis-noise key, the
path-length noise, ADA's per-sample transforms), or a PRNG key from which it
draws them for the samples it is given (`draw_g_main`, ...). The train step
(`jaxgen.stylegan2.step`) draws them once for the whole batch and, when it runs
a phase in accumulation rounds, hands each round its rows, so a round sees the
numbers the whole batch would (`g_pl_round_loss` is the path-length loss of one
round, whose gradient averaged over the rounds is g_pl_loss's).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxgen.stylegan2.augment import AugmentSpec, apply_matrices, sample_matrices
from jaxgen.stylegan2.discriminator import Discriminator
from jaxgen.stylegan2.generator import Generator


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Hyper-parameters of StyleGAN2Loss (NVIDIA defaults)."""
    r1_gamma: float = 10.0
    pl_weight: float = 2.0
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing_prob: float = 0.9
    noise_mode: str = "random"  # 'const' reproduces NVIDIA's fixture runs


@dataclasses.dataclass(frozen=True)
class Nets:
    """The two modules and how D's inputs are augmented: ADA's pipeline `augment` at
    probability `ada_p` (a traced scalar in the train step), or not at all (None)."""
    G: Generator
    D: Discriminator
    augment: Optional[AugmentSpec] = None
    ada_p: Any = 0.0


# ------------------------------------------------------------ random numbers

class Mixing(NamedTuple):
    """Style mixing's random numbers for n samples: with probability style_mixing_prob the
    ws from index `cutoff` on come from the second latents z2 (one cutoff per batch, as NVIDIA)."""
    cutoff: jnp.ndarray   # int32 []: in [1, num_ws), or num_ws when the batch is not mixed
    z2: jnp.ndarray       # [n, z_dim]


class GDraws(NamedTuple):
    """The random numbers of one training-mode run of G on n samples: style mixing and the
    synthesis-noise key (the generator draws 'random' noise itself, with the batch's shape)."""
    mixing: Mixing
    noise: jax.Array


# ADA's transforms of n images (augment.sample_matrices): the inverse blit and general geometric
# matrices [n, 3, 3] and the colour matrix [n, 4, 4]; None where D's inputs are not augmented.
AugDraws = Optional[Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]]


class GMainDraws(NamedTuple):
    """Gmain's random numbers for n samples: G's run and the augmentation of its fakes."""
    g: GDraws
    aug: AugDraws


class PLDraws(NamedTuple):
    """The path-length batch's random numbers (n samples): G's run and the directions the
    images are projected on, pl_noise = y / sqrt(R R) with y ~ N(0, I) [n, R, R, C]."""
    g: GDraws
    pl_noise: jnp.ndarray


class DMainDraws(NamedTuple):
    """Dmain's random numbers for n fakes and n reals: each batch's augmentation."""
    fake_aug: AugDraws
    real_aug: AugDraws


class R1Draws(NamedTuple):
    """Dreg's random numbers for n reals: their augmentation."""
    real_aug: AugDraws


def draw_mixing(rng: jax.Array, n: int, nets: Nets, cfg: LossConfig) -> Mixing:
    """Style mixing for n samples; `rng` is split into mix-or-not, the cutoff and z2."""
    k_mix, k_cut, k_z = jax.random.split(rng, 3)
    num_ws = nets.G.num_ws
    cutoff = jax.random.randint(k_cut, (), 1, num_ws)
    cutoff = jnp.where(jax.random.uniform(k_mix, ()) < cfg.style_mixing_prob, cutoff, num_ws)
    return Mixing(cutoff, jax.random.normal(k_z, (n, nets.G.z_dim)))


def draw_g(rng: jax.Array, n: int, nets: Nets, cfg: LossConfig) -> GDraws:
    """A run of G on n samples; `rng` is split into style mixing and the noise key."""
    k_map, k_noise = jax.random.split(rng)
    return GDraws(draw_mixing(k_map, n, nets, cfg), k_noise)


def draw_augment(rng: jax.Array, n: int, nets: Nets) -> AugDraws:
    """ADA's transforms of n images for D (at probability nets.ada_p); None without augmentation."""
    if nets.augment is None:
        return None
    shape = (n, nets.D.img_resolution, nets.D.img_resolution, nets.D.img_channels)
    return sample_matrices(rng, nets.ada_p, nets.augment, shape)


def draw_g_main(rng: jax.Array, n: int, nets: Nets, cfg: LossConfig) -> GMainDraws:
    """Gmain on n samples; `rng` is split into G's run and D's augmentation."""
    k_g, k_d = jax.random.split(rng)
    return GMainDraws(draw_g(k_g, n, nets, cfg), draw_augment(k_d, n, nets))


def draw_pl(rng: jax.Array, n: int, nets: Nets, cfg: LossConfig) -> PLDraws:
    """The n-sample path-length batch; `rng` is split into style mixing, noise key and y."""
    k_map, k_noise, k_pl = jax.random.split(rng, 3)
    G = nets.G
    y = jax.random.normal(k_pl, (n, G.img_resolution, G.img_resolution, G.img_channels))
    return PLDraws(GDraws(draw_mixing(k_map, n, nets, cfg), k_noise), _pl_scaled(y))


def _pl_scaled(y: jnp.ndarray) -> jnp.ndarray:
    """The projection directions from y ~ N(0, I) [n, R, R, C]: y / sqrt(R R), so that
    |J^T pl_noise| does not grow with the resolution."""
    return y / jnp.sqrt(float(y.shape[1] * y.shape[2]))


def draw_d_main(rng: jax.Array, n: int, nets: Nets) -> DMainDraws:
    """Dmain on n fakes and n reals; `rng` is split into the fakes' and the reals' augmentation."""
    k_f, k_r = jax.random.split(rng)
    return DMainDraws(draw_augment(k_f, n, nets), draw_augment(k_r, n, nets))


def draw_r1(rng: jax.Array, n: int, nets: Nets) -> R1Draws:
    """Dreg on n reals: their augmentation, from `rng` itself."""
    return R1Draws(draw_augment(rng, n, nets))


def _drawn(draws: Any, kind: type, draw: Callable, *args):
    """`draws` if it is a `kind` already, else draw(draws, *args): a PRNG key is drawn from."""
    return draws if isinstance(draws, kind) else draw(draws, *args)


# ------------------------------------------------------------ the networks in training mode

def map_with_mixing(nets: Nets, g_params: Any, g_buffers: Any, z: jnp.ndarray, c: jnp.ndarray,
                    mixing: Any, cfg: LossConfig) -> Tuple[jnp.ndarray, Any]:
    """Training-mode mapping of z [n, z_dim], c [n, K]: updates w_avg and applies style mixing.

    mixing: their `Mixing`, or a PRNG key to draw it. Returns (ws [n, num_ws, w_dim], new buffers).
    """
    G = nets.G
    mixing = _drawn(mixing, Mixing, draw_mixing, z.shape[0], nets, cfg)
    ws, mutated = G.apply({"params": g_params, "buffers": g_buffers}, z, c, update_w_avg=True,
                          method=Generator.map, mutable=["buffers"])
    buffers = mutated["buffers"]
    if cfg.style_mixing_prob > 0:
        ws2 = G.apply({"params": g_params, "buffers": buffers}, mixing.z2, c, method=Generator.map)
        ws = jnp.where(jnp.arange(ws.shape[1])[None, :, None] < mixing.cutoff, ws, ws2)
    return ws, buffers


def run_G(nets: Nets, g_params: Any, g_buffers: Any, z: jnp.ndarray, c: jnp.ndarray, draws: Any,
          cfg: LossConfig) -> Tuple[jnp.ndarray, jnp.ndarray, Any]:
    """Map (with style mixing and w_avg update) and synthesise z [n, z_dim], c [n, K] in training mode.

    draws: their `GDraws`, or a PRNG key. Returns (img [n,R,R,C], ws [n,num_ws,w_dim], new buffers).
    """
    draws = _drawn(draws, GDraws, draw_g, z.shape[0], nets, cfg)
    ws, buffers = map_with_mixing(nets, g_params, g_buffers, z, c, draws.mixing, cfg)
    img = synthesize(nets, g_params, buffers, ws, draws.noise, cfg)
    return img, ws, buffers


def synthesize(nets: Nets, g_params: Any, g_buffers: Any, ws: jnp.ndarray, rng: jax.Array,
               cfg: LossConfig) -> jnp.ndarray:
    """Training-mode synthesis (non-fused modconv), noise per `cfg.noise_mode`."""
    return nets.G.apply({"params": g_params, "buffers": g_buffers}, ws, cfg.noise_mode, False,
                        method=Generator.synthesize, rngs={"noise": rng})


def augment_images(nets: Nets, img: jnp.ndarray, aug: AugDraws) -> jnp.ndarray:
    """img [n,R,R,C] under ADA's drawn transforms `aug` (img itself without nets.augment)."""
    return img if nets.augment is None else apply_matrices(img, aug, nets.augment)


def run_D(nets: Nets, d_params: Any, img: jnp.ndarray, c: jnp.ndarray, aug: AugDraws) -> jnp.ndarray:
    """Augment (img [n,R,R,C], c [n,K]) by `aug` then discriminate: logits [n, 1]."""
    return nets.D.apply({"params": d_params}, augment_images(nets, img, aug), c)


# ------------------------------------------------------------ the losses

def g_main_loss(g_params, g_buffers, d_params, z, c, draws, nets: Nets, cfg: LossConfig,
                gain: float = 1.0):
    """Non-saturating generator loss of fakes from z [n, z_dim], c [n, K].

    draws: their `GMainDraws`, or a PRNG key. aux: logits, per-sample loss, new buffers, img.
    """
    draws = _drawn(draws, GMainDraws, draw_g_main, z.shape[0], nets, cfg)
    img, _, buffers = run_G(nets, g_params, g_buffers, z, c, draws.g, cfg)
    logits = run_D(nets, d_params, img, c, draws.aug)
    loss = jax.nn.softplus(-logits)
    return jnp.mean(loss) * gain, dict(logits=logits, loss=loss, buffers=buffers, img=img)


def pl_lengths(g_params, g_buffers, z, c, draws, nets: Nets, cfg: LossConfig):
    """Path lengths a = |J_w^T y| [n] of the samples z [n, z_dim], c [n, K] (all of them).

    draws: their `PLDraws`, or a PRNG key. Returns (a [n], new buffers, img [n,R,R,C]).
    """
    draws = _drawn(draws, PLDraws, draw_pl, z.shape[0], nets, cfg)
    ws, buffers = map_with_mixing(nets, g_params, g_buffers, z, c, draws.g.mixing, cfg)
    # img and d<img, y>/dws in one forward + one VJP (differentiable again for the params).
    img, vjp_fn = jax.vjp(lambda w: synthesize(nets, g_params, buffers, w, draws.g.noise, cfg), ws)
    (pl_grads,) = vjp_fn(draws.pl_noise)
    return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(pl_grads), axis=2), axis=1)), buffers, img


def g_pl_loss(g_params, g_buffers, z, c, draws, pl_mean, nets: Nets, cfg: LossConfig,
              gain: float = 1.0, pl_noise_randn: Optional[jnp.ndarray] = None):
    """Path-length regulariser on the first n = N // pl_batch_shrink of z [N, z_dim], c [N, K].

    draws: the `PLDraws` of those n samples, or a PRNG key. `pl_noise_randn` ([n,R,R,C]
    standard normal) replaces its y, to reproduce a reference run.
    aux: pl_penalty [n], new pl_mean, new buffers, img.
    """
    n = max(z.shape[0] // cfg.pl_batch_shrink, 1)
    draws = _drawn(draws, PLDraws, draw_pl, n, nets, cfg)
    if pl_noise_randn is not None:
        draws = draws._replace(pl_noise=_pl_scaled(pl_noise_randn))
    a, buffers, img = pl_lengths(g_params, g_buffers, z[:n], c[:n], draws, nets, cfg)
    new_pl_mean = pl_mean + cfg.pl_decay * (jnp.mean(a) - pl_mean)
    pl_penalty = jnp.square(a - new_pl_mean)
    loss = pl_penalty * cfg.pl_weight
    aux = dict(pl_penalty=pl_penalty, pl_mean=jax.lax.stop_gradient(new_pl_mean), buffers=buffers,
               img=img)
    return jnp.mean(loss) * gain, aux


def g_pl_round_loss(g_params, g_buffers, z, c, draws: PLDraws, new_pl_mean, mean_offset, nets: Nets,
                    cfg: LossConfig, gain: float = 1.0):
    """One round's path-length loss whose gradient, averaged over the rounds, is g_pl_loss's.

    g_pl_loss's penalty (a_i - m')^2 couples the samples through m' = pl_mean +
    pl_decay (mean(a) - pl_mean), which carries gradient. Its gradient is
    2 w / n sum_i [(a_i - m') - pl_decay mean_k(a_k - m')] da_i, w = pl_weight,
    i.e. the gradient of mean_i [(a_i - sg m')^2 - 2 pl_decay sg(mean_k(a_k - m')) a_i] w
    (sg: no gradient), which splits over rounds. `new_pl_mean` (m') and
    `mean_offset` (mean_k(a_k - m')) are scalars from a first pass over all rounds.
    z [n, z_dim], c [n, K], draws: the round's rows of the path-length batch's.
    aux: new buffers. The value is not the penalty; take that from the first pass.
    """
    a, buffers, _ = pl_lengths(g_params, g_buffers, z, c, draws, nets, cfg)
    m, off = lax.stop_gradient(new_pl_mean), lax.stop_gradient(mean_offset)
    loss = (jnp.square(a - m) - 2 * cfg.pl_decay * off * a) * cfg.pl_weight
    return jnp.mean(loss) * gain, dict(buffers=buffers)


def d_main_loss(d_params, gen_img, gen_c, real_img, real_c, draws, nets: Nets, gain: float = 1.0):
    """D loss on n fakes (gen_img [n,R,R,C], already generated, no G gradient) and n reals.

    draws: their `DMainDraws`, or a PRNG key. aux: both batches' logits, per-sample loss.
    """
    draws = _drawn(draws, DMainDraws, draw_d_main, real_img.shape[0], nets)
    fake_logits = run_D(nets, d_params, jax.lax.stop_gradient(gen_img), gen_c, draws.fake_aug)
    real_logits = run_D(nets, d_params, real_img, real_c, draws.real_aug)
    loss_fake = jax.nn.softplus(fake_logits)
    loss_real = jax.nn.softplus(-real_logits)
    total = jnp.mean(loss_fake) + jnp.mean(loss_real)
    return total * gain, dict(fake_logits=fake_logits, real_logits=real_logits,
                              loss=loss_fake + loss_real)


def d_r1_loss(d_params, real_img, real_c, draws, nets: Nets, cfg: LossConfig, gain: float = 1.0):
    """R1 penalty gamma/2 * |grad_x sum D(aug(x))|^2 on reals x [n,R,R,C].

    draws: their `R1Draws`, or a PRNG key. aux: penalty [n], logits.
    """
    draws = _drawn(draws, R1Draws, draw_r1, real_img.shape[0], nets)

    def d_sum(x):
        logits = run_D(nets, d_params, x, real_c, draws.real_aug)
        return jnp.sum(logits), logits

    r1_grads, logits = jax.grad(d_sum, has_aux=True)(real_img)
    r1_penalty = jnp.sum(jnp.square(r1_grads), axis=(1, 2, 3))
    loss = r1_penalty * (cfg.r1_gamma / 2)
    return jnp.mean(loss) * gain, dict(r1_penalty=r1_penalty, real_logits=logits)


def phase_grads(loss_fn: Callable, *args, loss_scale: float = 1.0,
                **kwargs) -> Tuple[jnp.ndarray, Any, Dict[str, Any]]:
    """(loss, grads w.r.t. the first argument, aux) of one phase's loss.

    loss_scale: differentiate loss * loss_scale and divide the (float32) gradients
    by it again, so that float16 activation gradients stay above fp16's underflow
    (R1's gradients vanish without it; see tests/stylegan2/test_precision.py).
    Overflow shows as non-finite gradients, which the step then skips.
    """
    if loss_scale == 1.0:
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(*args, **kwargs)
        return loss, grads, aux

    def scaled(*a, **kw):
        value, aux = loss_fn(*a, **kw)
        return value * loss_scale, (value, aux)

    (_, (loss, aux)), grads = jax.value_and_grad(scaled, has_aux=True)(*args, **kwargs)
    return loss, jax.tree_util.tree_map(lambda g: g / loss_scale, grads), aux
