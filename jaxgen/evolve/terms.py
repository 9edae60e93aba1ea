"""The fitness terms of evolve's genetic algorithm: one small frozen dataclass each.

Each term (a ``fitness.Term``) is called as ``term(raw, img, inputs)`` with the
generator's raw output ``raw`` and the same clipped to [-1, 1] ``img`` (the
image as exported; float32 [pop, R, R, C] both) and the ``fitness.Inputs``;
it returns its value under its name, one per individual, higher is better,
plus extras for the export's metadata:

  ClassConfidence  "class"     classifier softmax probability of the class     0..1
                               extra: predicted_class int [pop]
  StyleGANRealism  "realism"   sigmoid(D(raw, c)) of the StyleGAN2 run's D      0..1
  DCGANRealism     "realism"   sigmoid(D(raw, label)) of the DCGAN run's D      0..1
  DetectorRealism  "realism"   a real-vs-synthetic classifier's probability of
                               its "real" class                               0..1
  Identity         "identity"  distance to the NEAREST real face / threshold,
                               capped at ``cap``; 0 when the face cannot be
                               embedded                                       0..cap
                               extras: identity_distance (NaN: not embedded),
                               identity_index (-1), identity_ok
  ImageStats       "stats"     of the grayscale image, as the depth-faces paper:
                               ``stats_std * std - stats_mean * |mean|``
  Diversity        "diversity" nearest pixel-feature distance to the rest of the
                               population and to the exported bank          0..2

Model terms read their network variables from ``inputs.term_vars[name]`` and
raise ConfigError when built with a weight but without a model, naming the
weight to set to 0.

Identity embedders (``Identity.embed``, img -> (emb [pop, E], ok [pop])):
``PixelEmbed`` runs in JAX (``identity.pixel_features``; NOT an identity model,
for drawn demo faces and tests); ``HostEmbed`` runs a host (NumPy) embedder
such as dlib's face descriptor through ``jax.pure_callback`` inside the same
jitted loop, one call per generation with the whole population.

Adding a term: a dataclass here, and one line in ``tasks.fitness_terms``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Dict

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.classifiers.sorting import to_classifier_input
from jaxgen.errors import ConfigError
from jaxgen.evolve.fitness import Inputs, Term
from jaxgen.identity.pixel_embedder import PixelEmbedder, pixel_features

FEATURE_SIZE = 16  # pixel features (size x size x 3) of the diversity term and bank


def _require(term: Term, model: Any, what: str) -> None:
    """A term with a weight needs its model: else one line naming the weight to zero."""
    if term.weight and model is None:
        raise ConfigError(f"fitness weight w_{term.name}={term.weight} but no {what} was given; "
                         f"give one or set --config.w_{term.name}=0")


def _classifier_probs(model, variables, img, resolution: int, channels: int):
    """Softmax [pop, K] of a classifier on images in [-1, 1], resized as in its training."""
    logits = model.apply(variables, to_classifier_input(img, resolution, channels), train=False)
    return jax.nn.softmax(logits.astype(jnp.float32), -1)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class _ClassifierTerm(Term):
    """A term read off a classifier's softmax: ``probs`` [pop, K] of the images resized to its
    ``resolution`` and ``channels``, as in its training. ``what`` names the model in the
    error of a term built with a weight but no model."""

    model: Any
    resolution: int
    channels: int
    what: ClassVar[str] = "classifier"

    def __post_init__(self):
        _require(self, self.model, self.what)

    def probs(self, img, inputs: Inputs) -> jax.Array:
        """Softmax [pop, K] of the images img [pop, R, R, C] in [-1, 1]."""
        return _classifier_probs(self.model, inputs.term_vars[self.name], img,
                                 self.resolution, self.channels)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ClassConfidence(_ClassifierTerm):
    """The classifier's probability of the class (index ``inputs.target`` of its classes)."""

    name: str = "class"

    def __call__(self, raw, img, inputs: Inputs) -> Dict[str, jax.Array]:
        probs = self.probs(img, inputs)
        return {self.name: probs[:, inputs.target], "predicted_class": jnp.argmax(probs, -1)}


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class _DiscriminatorTerm(Term):
    """A term read off a GAN discriminator ``D``: "realism", the sigmoid of its logits."""

    D: Any
    name: str = "realism"

    def __post_init__(self):
        _require(self, self.D, "discriminator")

    def realism(self, logits) -> Dict[str, jax.Array]:
        """{name: sigmoid(logits [pop]) in float32}."""
        return {self.name: jax.nn.sigmoid(logits.astype(jnp.float32))}


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class StyleGANRealism(_DiscriminatorTerm):
    """sigmoid of a StyleGAN2 discriminator's logit on the raw images, conditioned on ``inputs.c``.

    D's minibatch-stddev layer looks at groups of ``mbstd_group_size`` consecutive
    images, as in training: the batch is padded to whole groups with its last images.
    """

    def __call__(self, raw, img, inputs: Inputs) -> Dict[str, jax.Array]:
        n = raw.shape[0]
        g = max(1, int(getattr(self.D, "mbstd_group_size", 1) or 1))
        pad = (-n) % g if n > g else 0
        x = jnp.concatenate([raw, raw[-pad:]]) if pad else raw
        c = None if not self.D.c_dim else jnp.broadcast_to(inputs.c, (x.shape[0], self.D.c_dim))
        return self.realism(self.D.apply(inputs.term_vars[self.name], x, c).reshape(-1)[:n])


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DCGANRealism(_DiscriminatorTerm):
    """sigmoid of the conditional DCGAN discriminator's logit on the raw images of ``inputs.label``."""

    def __call__(self, raw, img, inputs: Inputs) -> Dict[str, jax.Array]:
        n = raw.shape[0]
        logits = self.D.apply(inputs.term_vars[self.name], raw, jnp.broadcast_to(inputs.label, (n,)))
        return self.realism(logits.reshape(n))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DetectorRealism(_ClassifierTerm):
    """A real-vs-synthetic classifier's probability of its real class (index ``real_index``)."""

    real_index: int
    name: str = "realism"
    what: ClassVar[str] = "detector"

    def __call__(self, raw, img, inputs: Inputs) -> Dict[str, jax.Array]:
        return {self.name: self.probs(img, inputs)[:, self.real_index]}


@dataclasses.dataclass(frozen=True, eq=False)
class PixelEmbed:
    """img [pop, R, R, C] in [-1, 1] -> (PixelEmbedder vectors [pop, size*size*3], ok [pop]), in JAX."""

    size: int = 16

    def __call__(self, img):
        return pixel_features(img, self.size, scale=0.5)


@dataclasses.dataclass(frozen=True, eq=False)
class HostEmbed:
    """A host (NumPy) identity embedder, e.g. ``identity.DlibEmbedder``, made jit-compatible.

    img [pop, R, R, C] in [-1, 1] -> uint8 RGB on the host -> ``embedder.embed`` ->
    (float32 [pop, embedder.dim], ok bool [pop]), through ``jax.pure_callback``.
    """

    embedder: Any

    def _host(self, img_uint8):
        emb, ok = self.embedder.embed(np.asarray(img_uint8))
        return np.asarray(emb, np.float32).reshape(-1, int(self.embedder.dim)), np.asarray(ok, bool)

    def __call__(self, img):
        u8 = jnp.clip(jnp.round((img + 1.0) * 127.5), 0, 255).astype(jnp.uint8)
        if u8.shape[-1] == 1:
            u8 = jnp.repeat(u8, 3, -1)
        shapes = (jax.ShapeDtypeStruct((img.shape[0], int(self.embedder.dim)), jnp.float32),
                  jax.ShapeDtypeStruct((img.shape[0],), jnp.bool_))
        return jax.pure_callback(self._host, shapes, u8, vmap_method="expand_dims")


def jit_embed(embedder) -> Callable:
    """The jit-able form of an identity embedder: PixelEmbed for a PixelEmbedder (pure JAX,
    same vectors), HostEmbed (pure_callback) for any other, e.g. dlib."""
    return PixelEmbed(embedder.size) if isinstance(embedder, PixelEmbedder) else HostEmbed(embedder)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Identity(Term):
    """Distance of each face to the nearest embedded real face (``inputs.ref_emb`` [M, E],
    ``ref_ok`` [M]) over ``threshold``, capped at ``cap``; 0 for a face ``embed`` cannot embed."""

    embed: Callable            # PixelEmbed | HostEmbed: img -> (emb [pop, E], ok [pop])
    threshold: float           # same-identity distance of the embedder (export rejects <=)
    cap: float = 1.5           # the value saturates at cap (cap * threshold away)
    embedder_name: str = ""    # for the metadata
    name: str = "identity"

    def __call__(self, raw, img, inputs: Inputs) -> Dict[str, jax.Array]:
        emb, ok = self.embed(img)
        ref = inputs.ref_emb
        d2 = (jnp.sum(emb * emb, 1)[:, None] + jnp.sum(ref ** 2, 1)[None, :] - 2.0 * emb @ ref.T)
        d2 = jnp.where(inputs.ref_ok[None, :], jnp.maximum(d2, 0.0), jnp.inf)
        idx = jnp.argmin(d2, 1)
        dist = jnp.where(ok, jnp.linalg.norm(emb - ref[idx], axis=1), 0.0)
        return {self.name: jnp.minimum(dist / self.threshold, self.cap),
                "identity_distance": jnp.where(ok, dist, jnp.nan),
                "identity_index": jnp.where(ok, idx, -1), "identity_ok": ok}


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ImageStats(Term):
    """Image statistics of the grayscale image (depth-faces paper): stats_std * std - stats_mean * |mean|."""

    stats_std: float = 10.0
    stats_mean: float = 5.0
    name: str = "stats"

    def __call__(self, raw, img, inputs: Inputs) -> Dict[str, jax.Array]:
        gray = jnp.mean(img, -1)
        return {self.name: (self.stats_std * jnp.std(gray, (1, 2))
                            - self.stats_mean * jnp.abs(jnp.mean(gray, (1, 2))))}


def _min_offdiag_dist(f):
    """Nearest-other-member distance within a batch of unit vectors f [n, d] -> [n]."""
    d2 = jnp.maximum(2.0 - 2.0 * f @ f.T, 0.0)
    d2 = jnp.where(jnp.eye(f.shape[0], dtype=bool), jnp.inf, d2)
    return jnp.sqrt(jnp.min(d2, axis=1))


def _min_bank_dist(f, bank, mask):
    """Nearest distance from f [n, d] to the valid rows of bank [m, d] -> [n] (inf if none)."""
    d2 = jnp.maximum(2.0 - 2.0 * f @ bank.T, 0.0)
    d2 = jnp.where(mask[None, :], d2, jnp.inf)
    return jnp.sqrt(jnp.min(d2, axis=1))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Diversity(Term):
    """Nearest pixel-feature distance (unit vectors, 0..2) to the other members of the
    population and to the exported images in ``inputs.bank`` [B, F], ``bank_ok`` [B]."""

    feature_size: int = FEATURE_SIZE
    name: str = "diversity"

    def __call__(self, raw, img, inputs: Inputs) -> Dict[str, jax.Array]:
        f, _ = pixel_features(img, self.feature_size, scale=0.5)
        n = img.shape[0]
        d = _min_offdiag_dist(f) if n > 1 else jnp.full((n,), 2.0)
        if inputs.bank.shape[0]:
            d = jnp.minimum(d, _min_bank_dist(f, inputs.bank, inputs.bank_ok))
        return {self.name: jnp.minimum(d, 2.0)}
