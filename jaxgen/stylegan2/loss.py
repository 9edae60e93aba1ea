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
the scalar exactly as in the reference. Augmentation of everything D sees is a
function argument (`augment_fn(img, rng, part) -> img`), identity when ADA is off.

Nothing here is stateful: the new G buffers (w_avg) and the new pl_mean are
returned in `aux` and the caller puts them into the train state.

Gradient accumulation (`jaxgen.stylegan2.step`, batch_gpu): a phase can run
its batch in rounds; `part` (a `Part`: round `index` of `count`) then says
which rows of the full batch the given samples are, and every per-sample
random number drawn here (style-mixing latents, path-length noise, and, in the
step's augment_fn, ADA's transforms) is drawn for the full batch and sliced,
so a round sees the numbers the full batch would. Synthesis noise is the
exception: the generator draws it with the round's shape, from a key folded
with the round index. `g_pl_round_loss` is the path-length loss of one round
whose gradient, averaged over the rounds, is g_pl_loss's gradient.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxgen.stylegan2.discriminator import Discriminator
from jaxgen.stylegan2.generator import Generator


class Part(NamedTuple):
    """Round `index` (int32 scalar, may be traced) of `count` (static) accumulation rounds.

    Its samples are rows index, index + count, index + 2 count, ... of the full
    batch: strided, so that minibatch-std groups ({j, j + N/G, ...}) of a round
    are groups of the full batch, and a batch sharded over devices in contiguous
    blocks gives every device its share of each round without moving data.
    """
    index: Any
    count: int

    def take(self, x: jnp.ndarray) -> jnp.ndarray:
        """This round's rows of x [N, ...]: [N / count, ...]."""
        y = x.reshape((x.shape[0] // self.count, self.count) + x.shape[1:])
        return lax.dynamic_index_in_dim(y, self.index, axis=1, keepdims=False)


AugmentFn = Callable[[jnp.ndarray, jax.Array, Optional[Part]], jnp.ndarray]


def no_augment(img: jnp.ndarray, rng: jax.Array, part: Optional[Part] = None) -> jnp.ndarray:
    del rng, part
    return img


def normal_rows(rng: jax.Array, shape: Tuple[int, ...], part: Optional[Part] = None,
                dtype: Any = jnp.float32) -> jnp.ndarray:
    """N(0, 1) of `shape` [n, ...]: with a part, its rows of the full batch's draw [n * count, ...]."""
    if part is None:
        return jax.random.normal(rng, shape, dtype)
    return part.take(jax.random.normal(rng, (shape[0] * part.count,) + tuple(shape[1:]), dtype))


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
    """The two modules and how D's inputs are augmented."""
    G: Generator
    D: Discriminator
    augment_fn: AugmentFn = no_augment


def map_with_mixing(nets: Nets, g_params: Any, g_buffers: Any, z: jnp.ndarray, c: jnp.ndarray,
                    rng: jax.Array, cfg: LossConfig, part: Optional[Part] = None) -> Tuple[jnp.ndarray, Any]:
    """Training-mode mapping: updates w_avg and applies style mixing.

    With probability `style_mixing_prob` the ws from a cutoff (uniform in
    [1, num_ws), one per batch) onwards come from a second, independent z
    (with a `part`: its rows of the full batch's second z).
    Returns (ws [N, num_ws, w_dim], new buffers).
    """
    G = nets.G
    k_mix, k_cut, k_z = jax.random.split(rng, 3)
    ws, mutated = G.apply({"params": g_params, "buffers": g_buffers}, z, c, update_w_avg=True,
                          method=Generator.map, mutable=["buffers"])
    buffers = mutated["buffers"]
    if cfg.style_mixing_prob > 0:
        num_ws = ws.shape[1]
        cutoff = jax.random.randint(k_cut, (), 1, num_ws)
        cutoff = jnp.where(jax.random.uniform(k_mix, ()) < cfg.style_mixing_prob, cutoff, num_ws)
        ws2 = G.apply({"params": g_params, "buffers": buffers}, normal_rows(k_z, z.shape, part), c,
                      method=Generator.map)
        ws = jnp.where(jnp.arange(num_ws)[None, :, None] < cutoff, ws, ws2)
    return ws, buffers


def run_G(nets: Nets, g_params: Any, g_buffers: Any, z: jnp.ndarray, c: jnp.ndarray,
          rng: jax.Array, cfg: LossConfig,
          part: Optional[Part] = None) -> Tuple[jnp.ndarray, jnp.ndarray, Any]:
    """Map (with style mixing and w_avg update) and synthesise in training mode.

    Returns (img [N,R,R,C], ws [N,num_ws,w_dim], new buffers).
    """
    k_map, k_noise = jax.random.split(rng)
    ws, buffers = map_with_mixing(nets, g_params, g_buffers, z, c, k_map, cfg, part)
    img = synthesize(nets, g_params, buffers, ws, _noise_key(k_noise, part), cfg)
    return img, ws, buffers


def _noise_key(rng: jax.Array, part: Optional[Part]) -> jax.Array:
    """The synthesis-noise key: `rng`, folded with the round index for a part (the generator
    draws noise with the round's shape, so rounds must not share a key)."""
    return rng if part is None else jax.random.fold_in(rng, part.index)


def synthesize(nets: Nets, g_params: Any, g_buffers: Any, ws: jnp.ndarray, rng: jax.Array,
               cfg: LossConfig) -> jnp.ndarray:
    """Training-mode synthesis (non-fused modconv), noise per `cfg.noise_mode`."""
    return nets.G.apply({"params": g_params, "buffers": g_buffers}, ws, cfg.noise_mode, False,
                        method=Generator.synthesize, rngs={"noise": rng})


def run_D(nets: Nets, d_params: Any, img: jnp.ndarray, c: jnp.ndarray, rng: jax.Array,
          part: Optional[Part] = None) -> jnp.ndarray:
    """Augment (img [N,R,R,C], c [N,K]) then discriminate: logits [N, 1]."""
    return nets.D.apply({"params": d_params}, nets.augment_fn(img, rng, part), c)


def g_main_loss(g_params, g_buffers, d_params, z, c, rng, nets: Nets, cfg: LossConfig,
                gain: float = 1.0, part: Optional[Part] = None):
    """Non-saturating generator loss. aux: logits, per-sample loss, new buffers."""
    k_g, k_d = jax.random.split(rng)
    img, _, buffers = run_G(nets, g_params, g_buffers, z, c, k_g, cfg, part)
    logits = run_D(nets, d_params, img, c, k_d, part)
    loss = jax.nn.softplus(-logits)
    return jnp.mean(loss) * gain, dict(logits=logits, loss=loss, buffers=buffers, img=img)


def pl_lengths(g_params, g_buffers, z, c, rng, nets: Nets, cfg: LossConfig,
               pl_noise_randn: Optional[jnp.ndarray] = None, part: Optional[Part] = None):
    """Path lengths a = |J_w^T y| [n] of the samples z [n, z_dim], c [n, K] (all of them).

    Returns (a [n], new buffers, img [n,R,R,C]); `pl_noise_randn` as in g_pl_loss.
    """
    k_map, k_noise, k_pl = jax.random.split(rng, 3)
    ws, buffers = map_with_mixing(nets, g_params, g_buffers, z, c, k_map, cfg, part)
    k_noise = _noise_key(k_noise, part)
    # img and d<img, y>/dws in one forward + one VJP (differentiable again for the params).
    img, vjp_fn = jax.vjp(lambda w: synthesize(nets, g_params, buffers, w, k_noise, cfg), ws)
    if pl_noise_randn is None:
        pl_noise_randn = normal_rows(k_pl, img.shape, part, img.dtype)
    pl_noise = pl_noise_randn / jnp.sqrt(float(img.shape[1] * img.shape[2]))
    (pl_grads,) = vjp_fn(pl_noise)
    return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(pl_grads), axis=2), axis=1)), buffers, img


def g_pl_loss(g_params, g_buffers, z, c, rng, pl_mean, nets: Nets, cfg: LossConfig,
              gain: float = 1.0, pl_noise_randn: Optional[jnp.ndarray] = None):
    """Path-length regulariser on the first N // pl_batch_shrink samples.

    `pl_noise_randn` ([n,R,R,C] standard normal) can be given to reproduce a
    reference run; otherwise it is drawn from `rng`.
    aux: pl_penalty [n], new pl_mean, new buffers.
    """
    n = max(z.shape[0] // cfg.pl_batch_shrink, 1)
    a, buffers, img = pl_lengths(g_params, g_buffers, z[:n], c[:n], rng, nets, cfg, pl_noise_randn)
    new_pl_mean = pl_mean + cfg.pl_decay * (jnp.mean(a) - pl_mean)
    pl_penalty = jnp.square(a - new_pl_mean)
    loss = pl_penalty * cfg.pl_weight
    aux = dict(pl_penalty=pl_penalty, pl_mean=jax.lax.stop_gradient(new_pl_mean), buffers=buffers,
               img=img)
    return jnp.mean(loss) * gain, aux


def g_pl_round_loss(g_params, g_buffers, z, c, rng, new_pl_mean, mean_offset, nets: Nets,
                    cfg: LossConfig, part: Part, gain: float = 1.0):
    """One round's path-length loss whose gradient, averaged over the rounds, is g_pl_loss's.

    g_pl_loss's penalty (a_i - m')^2 couples the samples through m' = pl_mean +
    pl_decay (mean(a) - pl_mean), which carries gradient. Its gradient is
    2 w / n sum_i [(a_i - m') - pl_decay mean_k(a_k - m')] da_i, w = pl_weight,
    i.e. the gradient of mean_i [(a_i - sg m')^2 - 2 pl_decay sg(mean_k(a_k - m')) a_i] w
    (sg: no gradient), which splits over rounds. `new_pl_mean` (m') and
    `mean_offset` (mean_k(a_k - m')) are scalars from a first pass over all rounds.
    z [n, z_dim], c [n, K]: the round's samples of the path-length batch.
    aux: new buffers. The value is not the penalty; take that from the first pass.
    """
    a, buffers, _ = pl_lengths(g_params, g_buffers, z, c, rng, nets, cfg, part=part)
    m, off = lax.stop_gradient(new_pl_mean), lax.stop_gradient(mean_offset)
    loss = (jnp.square(a - m) - 2 * cfg.pl_decay * off * a) * cfg.pl_weight
    return jnp.mean(loss) * gain, dict(buffers=buffers)


def d_main_loss(d_params, gen_img, gen_c, real_img, real_c, rng, nets: Nets, gain: float = 1.0,
                part: Optional[Part] = None):
    """D loss on fakes (already generated, no G gradient) and reals."""
    k_f, k_r = jax.random.split(rng)
    fake_logits = run_D(nets, d_params, jax.lax.stop_gradient(gen_img), gen_c, k_f, part)
    real_logits = run_D(nets, d_params, real_img, real_c, k_r, part)
    loss_fake = jax.nn.softplus(fake_logits)
    loss_real = jax.nn.softplus(-real_logits)
    total = jnp.mean(loss_fake) + jnp.mean(loss_real)
    return total * gain, dict(fake_logits=fake_logits, real_logits=real_logits,
                              loss=loss_fake + loss_real)


def d_r1_loss(d_params, real_img, real_c, rng, nets: Nets, cfg: LossConfig, gain: float = 1.0,
              part: Optional[Part] = None):
    """R1 penalty gamma/2 * |grad_x sum D(aug(x))|^2 on reals. aux: penalty [N], logits."""
    def d_sum(x):
        logits = run_D(nets, d_params, x, real_c, rng, part)
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
