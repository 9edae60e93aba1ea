"""Genomes of the genetic algorithm and the decoders that turn them into images.

What: a genome is one flat float32 vector per individual, ``[pop, dim]``.

  StyleGAN2  normalised w+ space, ``dim = num_ws * w_dim``: the per-layer styles
             are ``w[l] = w_mean + w_std * g[l]``, where ``w_mean`` / ``w_std``
             [w_dim] are the mean and per-dimension spread of the mapping
             network's output for the target class (``w_statistics``, estimated
             once from random z). The scale makes one mutation ``sigma`` mean the
             same in every model, and per-layer genomes let the GA's face-fusion
             crossover swap coarse/fine styles (``ga.style_mix``).
  DCGAN      the latent z itself, ``dim = z_dim`` (one layer: no style mixing);
             the class label is ``inputs.label``.

A decoder reads the generator's variables (and w statistics, class) from the
fitness inputs (``fitness.Inputs``), so it is a static, hashable part of the
compiled fitness while the arrays stay arguments.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.runs import Run


@dataclasses.dataclass(frozen=True)
class LatentSpace:
    """Normalised w+ genomes of one generator and class: ``w = mean + std * g``."""

    num_ws: int
    w_dim: int

    @property
    def dim(self) -> int:
        return self.num_ws * self.w_dim

    def to_ws(self, genomes, mean, std):
        """[pop, num_ws*w_dim] -> ws [pop, num_ws, w_dim]."""
        g = genomes.reshape(genomes.shape[0], self.num_ws, self.w_dim)
        return mean[None, None, :] + std[None, None, :] * g

    def from_ws(self, ws, mean, std):
        """ws [n, num_ws, w_dim] -> genomes [n, num_ws*w_dim]."""
        return ((ws - mean[None, None, :]) / std[None, None, :]).reshape(ws.shape[0], -1)


def _class_batch(G, c_onehot, n: int):
    """c [c_dim] -> [n, c_dim] for a conditional G, None for an unconditional one."""
    if not G.c_dim:
        return None
    return jnp.broadcast_to(jnp.asarray(c_onehot, jnp.float32), (n, G.c_dim))


def w_statistics(G, g_vars, c_onehot: Optional[np.ndarray], key, num: int = 1024):
    """Mean and per-dimension std [w_dim] of G's mapping output for one class (psi 1).

    c_onehot [c_dim] (ignored, may be None or [0], for an unconditional G); the std
    is floored at 1e-4 so that genomes stay finite.
    """
    z = jax.random.normal(key, (num, G.z_dim))
    ws = jax.jit(lambda v, z, c: G.apply(v, z, c, method=type(G).map))(
        g_vars, z, _class_batch(G, c_onehot, num))
    w = ws[:, 0]
    return jnp.mean(w, 0), jnp.maximum(jnp.std(w, 0), 1e-4)


def seed_genomes(G, g_vars, space: LatentSpace, c_onehot, mean, std, z, psi: float = 1.0):
    """Genomes [n, dim] of given z [n, z_dim] (mapped, truncated towards the class mean by psi)."""
    ws = G.apply(g_vars, jnp.asarray(z, jnp.float32), _class_batch(G, c_onehot, z.shape[0]),
                 method=type(G).map)
    return space.from_ws(ws, mean, std) * psi


@dataclasses.dataclass(frozen=True, eq=False)
class _Decoder:
    """A decoder's generator ``G`` (a Flax module; its variables are ``inputs.g_vars``)."""

    G: Any

    @property
    def z_dim(self) -> int:
        return int(self.G.z_dim)


@dataclasses.dataclass(frozen=True, eq=False)
class StyleGANDecoder(_Decoder):
    """Genome -> image for a StyleGAN2 G: normalised w+ (see module doc); style-mixable."""

    noise_mode: str = "const"
    latent_space = "w+ [num_ws, w_dim]"

    @property
    def space(self) -> LatentSpace:
        return LatentSpace(int(self.G.num_ws), int(self.G.w_dim))

    @property
    def dim(self) -> int:
        return self.space.dim

    @property
    def num_ws(self) -> int:
        return int(self.G.num_ws)

    @property
    def w_dim(self) -> int:
        return int(self.G.w_dim)

    def images(self, genomes, inputs):
        """genomes [pop, dim] -> images [pop, R, R, C], G's raw output (about [-1, 1])."""
        ws = self.space.to_ws(genomes, inputs.w_mean, inputs.w_std)
        return self.G.apply(inputs.g_vars, ws, self.noise_mode, method=type(self.G).synthesize)

    def seed(self, z, inputs, psi: float):
        """z [n, z_dim] -> genomes [n, dim] of the class in ``inputs.c``, truncated by psi."""
        return seed_genomes(self.G, inputs.g_vars, self.space, inputs.c, inputs.w_mean,
                            inputs.w_std, z, psi)

    def latents(self, genomes, inputs) -> np.ndarray:
        """What is saved per image: ws float32 [n, num_ws, w_dim]."""
        return np.asarray(self.space.to_ws(genomes, inputs.w_mean, inputs.w_std))


@dataclasses.dataclass(frozen=True, eq=False)
class DCGANDecoder(_Decoder):
    """Genome -> image for the conditional DCGAN (jaxgen.dcgan): the genome is z [z_dim];
    the class label is ``inputs.label`` (int32 scalar). One layer: no style mixing.

    ``max_z_rms`` (> 0): G sees ``cap_z_rms(genome, max_z_rms)``, the genome scaled back
    onto the sphere of root-mean-square ``max_z_rms`` when it lies outside it (1.0: the
    radius sqrt(z_dim) where G's training prior N(0, I) has its mass). The GA's mutations
    are a random walk (each generation adds N(0, sigma^2) per coordinate to a parent), so
    without the cap z leaves the prior: 20 generations at sigma 0.5 end near rms 2.3, where
    G was never trained (the depth study). 0: off (z as evolved).
    """

    max_z_rms: float = 0.0
    latent_space = "z [z_dim]"
    num_ws = 1

    @property
    def dim(self) -> int:
        """The genome is z: its size, z_dim, is also the one layer's (``w_dim``)."""
        return self.z_dim

    w_dim = dim

    def z(self, genomes):
        """The z [pop, z_dim] that G sees for genomes [pop, z_dim] (capped by ``max_z_rms``)."""
        return cap_z_rms(genomes, self.max_z_rms) if self.max_z_rms > 0 else genomes

    def images(self, genomes, inputs):
        """genomes [pop, z_dim] -> images [pop, R, R, C] of class ``inputs.label``."""
        labels = jnp.broadcast_to(inputs.label, (genomes.shape[0],))
        return self.G.apply(inputs.g_vars, self.z(genomes), labels)

    def seed(self, z, inputs, psi: float):
        """The genome of z [n, z_dim] is z itself, scaled by psi."""
        return jnp.asarray(z, jnp.float32) * psi

    def latents(self, genomes, inputs) -> np.ndarray:
        """What is saved per image: the z float32 [n, z_dim] that G saw (``z``)."""
        return np.asarray(self.z(jnp.asarray(genomes, jnp.float32)))


def cap_z_rms(z, max_rms: float):
    """z [n, d] with each row whose root-mean-square exceeds max_rms scaled onto that sphere."""
    rms = jnp.sqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True))
    return z * jnp.minimum(1.0, max_rms / jnp.maximum(rms, 1e-12))


def decoder_for(run: Run, max_z_rms: float = 0.0):
    """The decoder of a generator run (StyleGAN2 or DCGAN; ``max_z_rms``: the DCGAN's z cap,
    see ``DCGANDecoder``)."""
    return DCGANDecoder(run.model, float(max_z_rms)) if run.kind == "dcgan" else StyleGANDecoder(run.model)
