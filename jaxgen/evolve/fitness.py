"""Fitness of generator latents for the genetic algorithm: a weighted tuple of typed terms.

What: ``Scorer(decoder, terms)`` maps genomes ``[pop, dim]`` (see ``latents``) to
images and scores them with each term (``jaxgen.evolve.terms``):

    fitness = sum_k terms[k].weight * value_k        [pop], higher is better

A term is a small frozen dataclass (``Term``): a name, a weight, an optional
threshold and ``term(raw, img, inputs) -> {name: [pop], extras...}``. Terms
with weight 0 are simply not in the tuple, so they cost nothing.

Everything the terms read besides the genomes travels in ONE pytree,
``Inputs`` (generator variables, w statistics, class, the variables of each
model term keyed by its name, identity references, the diversity bank): the
scorer and its terms are static (hashable by identity), the inputs are jit
arguments, so the GA compiles the fitness once and reuses it for new values
(the next round's bank, another class of the same generator: the class
enters only through ``Inputs.c`` / ``label`` / ``target``).

``Scorer.evaluate`` returns every value and extra (identity distance and
nearest reference index, predicted class: the export's metadata) plus the raw
images; ``Scorer.fitness`` the weighted sum, what ``ga.run_ga`` maximises.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from jaxgen.errors import ConfigError
from jaxgen.evolve.latents import DCGANDecoder, StyleGANDecoder


@flax.struct.dataclass
class Inputs:
    """The arrays the fitness reads (a pytree; shapes for a population of pop images R x R x C).

      g_vars     generator variables (StyleGAN2 G_ema; the DCGAN's EMA teacher)
      w_mean     float32 [w_dim]  mean of G's mapping output for the class ([0]: DCGAN)
      w_std      float32 [w_dim]  its per-dimension spread ([0]: DCGAN)
      c          float32 [c_dim]  the class one-hot ([0]: unconditional G)
      label      int32 []         the generator's index of the class (the DCGAN's label)
      target     int32 []         the classifier's index of the class (``ClassConfidence``)
      term_vars  {term name: variables} of the model terms (classifier, D, detector)
      ref_emb    float32 [M, E]   identity embeddings of the real faces ([0, 0]: none)
      ref_ok     bool [M]         which real faces could be embedded
      bank       float32 [B, F]   pixel features of the images already exported
                                  (``terms.Diversity``; [0, 0]: none)
      bank_ok    bool [B]         which bank rows are filled
    """

    g_vars: Any
    w_mean: jax.Array
    w_std: jax.Array
    c: jax.Array
    label: jax.Array
    target: jax.Array
    term_vars: Dict[str, Any]
    ref_emb: jax.Array
    ref_ok: jax.Array
    bank: jax.Array
    bank_ok: jax.Array

    @classmethod
    def create(cls, g_vars, *, w_mean=None, w_std=None, c=None, label=0, target=0,
               term_vars: Optional[Dict[str, Any]] = None, ref_emb=None, ref_ok=None,
               bank=None, bank_ok=None) -> "Inputs":
        """Inputs with empty arrays for what is not given (see the class doc for shapes)."""
        def arr(x, shape, dtype):
            return jnp.zeros(shape, dtype) if x is None else jnp.asarray(x, dtype)
        return cls(g_vars=g_vars, w_mean=arr(w_mean, [0], jnp.float32),
                   w_std=arr(w_std, [0], jnp.float32), c=arr(c, [0], jnp.float32),
                   label=jnp.asarray(label, jnp.int32), target=jnp.asarray(target, jnp.int32),
                   term_vars=dict(term_vars or {}),
                   ref_emb=arr(ref_emb, [0, 0], jnp.float32), ref_ok=arr(ref_ok, [0], bool),
                   bank=arr(bank, [0, 0], jnp.float32), bank_ok=arr(bank_ok, [0], bool))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Term:
    """One fitness term (subclasses in ``jaxgen.evolve.terms``). Hashable by identity.

    name       its value's key, its model variables' key in ``Inputs.term_vars``
               and its key in the export's metadata
    weight     its factor in the fitness
    threshold  a pass/fail line the export checks (identity), else None

    ``term(raw, img, inputs)`` gets the generator's raw output ``raw`` and the
    same clipped to [-1, 1] ``img`` (both float32 [pop, R, R, C]) and returns
    ``{name: float32 [pop]}`` (higher is better) plus any extras [pop] for the
    metadata.
    """

    name: str
    weight: float = 1.0
    threshold: Optional[float] = None

    def __call__(self, raw, img, inputs: Inputs) -> Dict[str, jax.Array]:
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        """Its class and scalar settings (weight, threshold, sizes), for evolve.json."""
        scalars = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name != "name" and isinstance(getattr(self, f.name), (int, float, str))}
        return dict(term=type(self).__name__, **scalars)


@dataclasses.dataclass(frozen=True, eq=False)
class Scorer:
    """Jit-able fitness of one (generator, class): a decoder and a tuple of terms.

    Build it with ``make_scorer``. ``mesh``: shard the population over this 1-D
    mesh (axis "pop") inside the compiled fitness.
    """

    decoder: Any                       # latents.StyleGANDecoder | latents.DCGANDecoder
    terms: Tuple[Term, ...]
    mesh: Any = None

    @property
    def G(self):
        return self.decoder.G

    @property
    def space(self):
        return self.decoder.space

    @property
    def names(self) -> Tuple[str, ...]:
        """The names of the terms that enter the fitness, in order."""
        return tuple(t.name for t in self.terms)

    def term(self, name: str) -> Optional[Term]:
        """The term called `name`, or None when it is not in the fitness."""
        return next((t for t in self.terms if t.name == name), None)

    def images(self, genomes, inputs: Inputs):
        """genomes [pop, dim] -> the generator's raw images [pop, R, R, C]."""
        if self.mesh is not None:
            genomes = jax.lax.with_sharding_constraint(
                genomes, NamedSharding(self.mesh, PartitionSpec("pop")))
        return self.decoder.images(genomes, inputs)

    def evaluate(self, genomes, inputs: Inputs):
        """(every term's values and extras {key: [pop]}, raw images [pop, R, R, C])."""
        raw = self.images(genomes, inputs).astype(jnp.float32)
        img = jnp.clip(raw, -1.0, 1.0)  # as exported (PNG); a GAN's D sees the raw output
        values: Dict[str, jax.Array] = {}
        for term in self.terms:
            values.update(term(raw, img, inputs))
        return values, raw

    def values(self, genomes, inputs: Inputs) -> Dict[str, jax.Array]:
        """Every term's values and extras, {key: [pop]}."""
        return self.evaluate(genomes, inputs)[0]

    def total(self, values: Dict[str, Any]):
        """sum of weight * value over the terms [pop] (JAX or NumPy values)."""
        return sum(t.weight * values[t.name] for t in self.terms)

    def fitness(self, genomes, inputs: Inputs):
        """The fitness [pop] that the GA maximises."""
        return self.total(self.values(genomes, inputs))


def make_scorer(generator, terms: Sequence[Term], mesh=None) -> Scorer:
    """Scorer of `terms` (those with weight 0 left out) for a generator.

    generator: a decoder (``latents.StyleGANDecoder`` / ``DCGANDecoder``) or a
    StyleGAN2 Generator module (w+ genomes of its num_ws x w_dim).
    """
    decoder = generator if isinstance(generator, (StyleGANDecoder, DCGANDecoder)) \
        else StyleGANDecoder(generator)
    terms = tuple(t for t in terms if t.weight)
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"fitness terms need distinct names, got {names}")
    if not terms:
        raise ConfigError("every fitness term is off (all weights 0 or the models missing)")
    return Scorer(decoder, terms, mesh)


@functools.lru_cache(maxsize=32)
def jit_terms(scorer: Scorer) -> Callable:
    """jit(scorer.evaluate): (values, raw images) of genomes [n, dim], for export-time
    scoring of the final candidates (one compiled function per scorer, reused across
    rounds and calls)."""
    return jax.jit(scorer.evaluate)

