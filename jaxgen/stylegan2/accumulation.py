"""Gradient accumulation: a training phase's batch in rounds (NVIDIA's --batch-gpu).

With StepConfig.batch_gpu > 0 every phase of `jaxgen.stylegan2.step` runs its
batch in R = batch_size / batch_gpu rounds (`run_rounds`: lax.scan, so memory
is that of one round), averages the rounds' gradients and makes ONE optimizer
step, which equals the step on the whole batch up to float round-off. Round r
holds rows r, r + R, r + 2R, ... of the batch (`Part`); the step draws its
random numbers for the whole batch before any round runs, and each round takes
its rows (`take_round`). batch_gpu counts examples of the global batch: with
the batch sharded over D devices each holds batch_gpu / D of a round (so
NVIDIA's per-GPU --batch-gpu=b on D GPUs is batch_gpu = b * D here).

What could differ from the whole batch at once, and how:
  * minibatch-std groups form within a round (as within a GPU's batch in
    NVIDIA's code): batch_gpu must be a multiple of mbstd_group_size, and with
    strided rounds a round's groups are exactly the whole batch's groups;
  * latents, labels, ADA's per-sample transforms, the style-mixing latents and
    the path-length noise are drawn for the whole batch and sliced: identical;
  * G's w_avg update is linear in the mean w of a forward pass: each round
    updates from the phase's starting buffers and the phase keeps the mean of
    the rounds' changes (`buffer_change`, `buffers_after`), which is the whole
    batch's update (NVIDIA updates it once per round, R times per phase);
  * synthesis noise (noise_mode 'random') is drawn by the generator with the
    round's shape, from the round's key (`round_keys`): same distribution, not
    the same numbers; 'const' noise is identical;
  * path length: pl_batch_shrink applies to the global batch (its first
    n = batch_size // pl_batch_shrink samples, run in `pl_rounds(n, R)`
    rounds), and the penalty's mean term (pl_mean' = lerp(pl_mean, mean a,
    pl_decay), which carries gradient) is over those n, as without
    accumulation. This costs a first pass that computes all path lengths
    without the parameter gradient (see `loss.g_pl_round_loss`). NVIDIA shrinks
    each round's batch and updates pl_mean once per round; jaxgen keeps the
    update independent of batch_gpu, which only trades memory for time;
  * NVIDIA SUMS the rounds' mean gradients (R times the batch's gradient; Adam
    is nearly invariant to that scale, all but its epsilon); jaxgen AVERAGES
    them, so the update does not depend on batch_gpu at all.
Cost: one scan per phase (R sequential rounds; pass 1 of Greg is extra); with
batch_gpu = 0, or = batch_size, a phase is the whole-batch program.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxgen.stylegan2 import loss as L


class Part(NamedTuple):
    """Round `index` (int32 scalar, may be traced) of `count` (static) accumulation rounds.

    Its samples are rows index, index + count, index + 2 count, ... of the whole
    batch: strided, so that minibatch-std groups ({j, j + N/G, ...}) of a round
    are groups of the whole batch, and a batch sharded over devices in contiguous
    blocks gives every device its share of each round without moving data.
    """
    index: Any
    count: int

    def take(self, x: jnp.ndarray) -> jnp.ndarray:
        """This round's rows of x [N, ...]: [N / count, ...] (x itself for a single round)."""
        if self.count == 1:
            return x
        y = x.reshape((x.shape[0] // self.count, self.count) + x.shape[1:])
        return lax.dynamic_index_in_dim(y, self.index, axis=1, keepdims=False)


WHOLE = Part(0, 1)  # the whole batch as one round


def pl_rounds(n: int, rounds: int) -> int:
    """Rounds for the n-sample path-length batch: the largest divisor of n up to `rounds`."""
    return max(d for d in range(1, min(n, rounds) + 1) if n % d == 0)


def round_keys(key: jax.Array, count: int) -> jax.Array:
    """One synthesis-noise key per round [count]: `key` itself for a single round, else
    fold_in(key, r) for round r (the generator draws noise with a round's shape, so rounds
    must not share a key)."""
    if count == 1:
        return jnp.stack([key])
    return jnp.stack([jax.random.fold_in(key, r) for r in range(count)])


def take_round(tree: Any, part: Part) -> Any:
    """A round's share of a phase's inputs and draws: the rows of every per-sample leaf
    [N, ...] -> [N / count, ...]; of each `loss.GDraws`, its z2 rows, the round's noise key
    (of the per-round keys [count]) and the style-mixing cutoff (one per batch) as it is."""
    def one(x):
        if isinstance(x, L.GDraws):
            return L.GDraws(L.Mixing(x.mixing.cutoff, part.take(x.mixing.z2)), x.noise[part.index])
        return part.take(x)
    return jax.tree_util.tree_map(one, tree, is_leaf=lambda x: isinstance(x, L.GDraws))


def run_rounds(fn: Callable[[Part], Tuple[Any, Any]], count: int) -> Tuple[Any, Any]:
    """Run a phase in `count` accumulation rounds, with the memory of one round (lax.scan).

    fn(part) -> (mean_tree, rows_tree): mean_tree (gradients, round means; float
    leaves) is averaged over the rounds; rows_tree leaves [n, ...] (per-sample
    values) are concatenated to [count * n, ...] in round order, not batch order.
    count == 1: fn(WHOLE), the whole batch in one go.
    """
    if count == 1:
        return fn(WHOLE)
    shapes = jax.eval_shape(lambda: fn(Part(jnp.int32(0), count))[0])
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(total, r):
        mean_tree, rows = fn(Part(r, count))
        return jax.tree_util.tree_map(jnp.add, total, mean_tree), rows

    total, rows = jax.lax.scan(body, zeros, jnp.arange(count, dtype=jnp.int32))
    return (jax.tree_util.tree_map(lambda t: t / count, total),
            jax.tree_util.tree_map(lambda y: y.reshape((-1,) + y.shape[2:]), rows))


def buffer_change(new: Any, old: Any, count: int) -> Any:
    """What a round contributes of G's buffers: the new ones (a single round) or their change."""
    return new if count == 1 else jax.tree_util.tree_map(jnp.subtract, new, old)


def buffers_after(mean_change: Any, old: Any, count: int) -> Any:
    """G's buffers after a phase: the whole batch's, or old + the rounds' mean change, which
    is the whole batch's w_avg update (it is linear in the batch mean of w)."""
    return mean_change if count == 1 else jax.tree_util.tree_map(jnp.add, old, mean_change)
