"""Genetic-algorithm core: jit-compiled ask -> evaluate -> tell over generator latents.

What: ``run_ga(fitness_fn, x0_or_dim, key, cfg)`` optimises flat genomes ``x`` of
shape ``[dim]`` (e.g. a w-space latent flattened to ``num_ws * w_dim``) with any
evosax 0.3.2 strategy, picked by name (``SimpleGA`` default, ``CMA_ES``,
``Open_ES``, ...).  ``fitness_fn(x[pop, dim]) -> [pop]`` is a pure JAX function
to MAXIMISE; evosax minimises, so it is told ``-fitness``.

Why one jit: the generations loop is a ``jax.lax.scan``, and ``run_ga`` is
jitted with ``fitness_fn`` and ``cfg`` static, so the (expensive) generator
inside ``fitness_fn`` is traced and compiled exactly once, whatever the number
of generations.  ``fitness_fn`` always receives the whole population batch, so
a caller may shard that batch over devices inside ``fitness_fn``.

Initialisation: distribution-based strategies start with mean ``x0``.
Population-based strategies start from ``x0 + sigma_init * noise`` (member 0
is ``x0`` itself) marked unevaluated (evosax fitness ``+inf``), so the first
``ask`` breeds from it without a separate, second trace of ``fitness_fn``.

Face fusion (``crossover="style_mix"``): after the strategy's ``ask`` a fraction
``mix_rate`` of the children is replaced by a StyleGAN style mix of two distinct
parents drawn from the elites (top ``elite_ratio`` share) of the previous
evaluated generation: layers ``< cutoff`` come from parent a, layers
``>= cutoff`` from parent b, ``cutoff ~ U{1, ..., num_ws - 1}``.  Mixed children
carry no extra noise; mutation stays the strategy's own Gaussian sampling.
Composition with ask/tell: the population actually evaluated (mixed children
included) is the one passed to ``tell``.  For ``SimpleGA`` (and other
population-based GAs) ``tell`` stores it, so mixed genomes become parents and
are mutated in later generations.  For distribution-based ES (CMA-ES, ...)
``tell`` recomputes steps from the given population, so mixed children act as
injected solutions; they pull the mean towards good fusions but may disturb
step-size adaptation, so keep ``mix_rate`` moderate there.  Generation 0 is
never mixed (no evaluated elites exist yet).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from evosax.algorithms import algorithms as _ALGORITHMS
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm

from jaxgen.errors import ConfigError

__all__ = ["GAConfig", "make_strategy", "style_mix", "run_ga"]


@dataclasses.dataclass(frozen=True)
class GAConfig:
    """GA settings.  Frozen/hashable: it is a static argument of the jitted loop."""

    strategy: str = "SimpleGA"  # key of evosax.algorithms.algorithms
    popsize: int = 64
    generations: int = 50
    sigma_init: float = 0.5  # mutation scale (std_schedule / std_init) and init spread
    elite_ratio: float | None = 0.5  # set on strategies that use it; None = evosax default
    crossover: str = "none"  # "none" | "style_mix"
    mix_rate: float = 0.5  # fraction of each generation replaced by style-mixed children
    num_ws: int = 0  # layers of the w-space genome (style_mix only)
    w_dim: int = 0  # width of each layer (style_mix only)
    strategy_kwargs: tuple = ()  # extra constructor kwargs as ((name, value), ...)


def make_strategy(cfg: GAConfig, x0: jax.Array):
    """Build the evosax strategy and its params from ``cfg`` (sigma/elite ratio applied)."""
    if cfg.strategy not in _ALGORITHMS:
        raise ConfigError(f"unknown evosax strategy {cfg.strategy!r}; have {sorted(_ALGORITHMS)}")
    cls = _ALGORITHMS[cfg.strategy]
    kwargs = dict(cfg.strategy_kwargs)
    if "std_schedule" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("std_schedule", optax.constant_schedule(cfg.sigma_init))
    strategy = cls(population_size=cfg.popsize, solution=x0, **kwargs)
    if cfg.elite_ratio is not None:
        strategy.elite_ratio = cfg.elite_ratio  # read lazily via `num_elites`
    params = strategy.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=jnp.asarray(cfg.sigma_init, jnp.float32))
    return strategy, params


def style_mix(key, parents_a, parents_b, num_ws: int, w_dim: int):
    """Per-layer StyleGAN mix of flat genomes ``[n, num_ws*w_dim]`` -> (children, cutoff[n]).

    Child layer ``l`` is parent a's for ``l < cutoff`` and parent b's otherwise.
    """
    n = parents_a.shape[0]
    cutoff = jax.random.randint(key, (n,), 1, num_ws)  # in [1, num_ws)
    a = parents_a.reshape(n, num_ws, w_dim)
    b = parents_b.reshape(n, num_ws, w_dim)
    from_a = jnp.arange(num_ws)[None, :, None] < cutoff[:, None, None]
    return jnp.where(from_a, a, b).reshape(n, num_ws * w_dim), cutoff


def _mix_population(key, population, prev_pop, prev_fit, cfg: GAConfig, n_elite: int):
    """Replace a ``mix_rate`` share of ``population`` with style mixes of previous elites."""
    pop = population.shape[0]
    k_sel, k_a, k_b, k_mix = jax.random.split(key, 4)
    _, elite_idx = jax.lax.top_k(prev_fit, n_elite)  # maximisation: highest fitness
    ia = jax.random.randint(k_a, (pop,), 0, n_elite)
    if n_elite > 1:  # b != a: shift by 1..n_elite-1
        ib = (ia + jax.random.randint(k_b, (pop,), 1, n_elite)) % n_elite
    else:
        ib = ia
    children, _ = style_mix(k_mix, prev_pop[elite_idx[ia]], prev_pop[elite_idx[ib]],
                            cfg.num_ws, cfg.w_dim)
    replace = jax.random.uniform(k_sel, (pop,)) < cfg.mix_rate
    return jnp.where(replace[:, None], children, population)


@functools.partial(jax.jit, static_argnames=("fitness_fn", "cfg"))
def _run_ga_jit(fitness_fn: Callable, x0: jax.Array, key: jax.Array, cfg: GAConfig, aux=None):
    strategy, params = make_strategy(cfg, x0)
    pop, dim = cfg.popsize, x0.shape[0]
    is_pop_based = isinstance(strategy, PopulationBasedAlgorithm)
    n_elite = max(1, min(pop, int(round((cfg.elite_ratio or 0.5) * pop))))
    if cfg.crossover == "style_mix" and (cfg.num_ws < 2 or cfg.num_ws * cfg.w_dim != dim):
        raise ValueError("style_mix needs num_ws >= 2 and num_ws * w_dim == genome dim")
    if cfg.crossover not in ("none", "style_mix"):
        raise ConfigError(f"unknown crossover {cfg.crossover!r}")

    key, k_init, k_pop = jax.random.split(key, 3)
    init_pop = x0[None] + cfg.sigma_init * jax.random.normal(k_pop, (pop, dim), x0.dtype)
    init_pop = init_pop.at[0].set(x0)
    if is_pop_based:  # unevaluated seed population: evosax fitness +inf (worst)
        state = strategy.init(k_init, init_pop, jnp.full((pop,), jnp.inf), params)
    else:
        state = strategy.init(k_init, x0, params)

    def generation(carry, inp):
        state, prev_pop, prev_fit, best_x, best_f = carry
        gen, k = inp
        k_ask, k_mix, k_tell = jax.random.split(k, 3)
        population, state = strategy.ask(k_ask, state, params)
        if cfg.crossover == "style_mix":
            mixed = _mix_population(k_mix, population, prev_pop, prev_fit, cfg, n_elite)
            population = jnp.where(gen > 0, mixed, population)
        # whole batch -> [pop]; maximised
        fitness = fitness_fn(population) if aux is None else fitness_fn(population, aux)
        fit = jnp.where(jnp.isnan(fitness), -jnp.inf, fitness)
        state, _ = strategy.tell(k_tell, population, -fit, state, params)
        i = jnp.argmax(fit)
        better = fit[i] > best_f
        best_x = jnp.where(better, population[i], best_x)
        best_f = jnp.where(better, fit[i], best_f)
        stats = dict(mean=jnp.mean(fit), max=fit[i], min=jnp.min(fit), best=best_f)
        return (state, population, fit, best_x, best_f), stats

    carry0 = (state, init_pop, jnp.full((pop,), -jnp.inf), x0, jnp.asarray(-jnp.inf, x0.dtype))
    keys = jax.random.split(key, cfg.generations)
    (state, last_pop, last_fit, best_x, best_f), hist = jax.lax.scan(
        generation, carry0, (jnp.arange(cfg.generations), keys))
    return dict(best_x=best_x, best_fitness=best_f, history=hist,
                final_population=last_pop, final_fitness=last_fit)


def run_ga(fitness_fn: Callable, x0_or_dim, key: jax.Array, cfg: GAConfig = GAConfig(),
           aux=None) -> dict:
    """Run the GA; maximises ``fitness_fn``.

    Args:
      fitness_fn: pure JAX ``[pop, dim] -> [pop]`` (higher is better).  Must be
        hashable (a function or ``functools.partial``); it is a static jit argument,
        so pass the same object to reuse the compiled program.
      x0_or_dim: initial genome ``[dim]`` or an int ``dim`` (start at zeros).
      key: PRNG key; the run is deterministic given (key, cfg, x0, aux).
      aux: optional pytree of arrays passed as ``fitness_fn(population, aux)``:
        data the fitness reads (network weights, reference embeddings, the bank
        of already-exported images) without being baked into the compiled
        program, so new values reuse the same compilation.
    Returns:
      dict(best_x [dim], best_fitness [], history=dict(mean, max, min, best: [generations]),
      final_population [pop, dim], final_fitness [pop]) -- fitness in the
      maximisation sense (NaN fitness counts as -inf).
    """
    if isinstance(x0_or_dim, int):
        x0 = jnp.zeros((x0_or_dim,), jnp.float32)
    else:
        x0 = jnp.asarray(x0_or_dim, jnp.float32).reshape(-1)
    return _run_ga_jit(fitness_fn, x0, key, cfg, aux)
