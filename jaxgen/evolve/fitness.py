"""Fitness of generator latents for the genetic algorithm: weighted, named, jit-able terms.

What: a genome is a flat vector ``g [num_ws * w_dim]`` in *normalised w+ space*:
the per-layer styles are ``w[l] = w_mean + w_std * g[l]`` where ``w_mean`` /
``w_std`` [w_dim] are the mean and per-dimension spread of the mapping network's
output for the target class (estimated once from random z). The scale makes
one mutation ``sigma`` mean the same thing in every model, and per-layer genomes
let the GA's face-fusion crossover swap coarse/fine styles (``ga.style_mix``).

Every term maps the generated images ``img [pop, R, R, C]`` (in [-1, 1]) and
the data in ``aux`` to one value per individual, higher is better:

  class      classifier softmax probability of the target class            0..1
  realism    sigmoid(D(img, c)) of the GAN's discriminator, or a trained
             real-vs-synthetic detector's probability of its "real" class   0..1
  identity   distance to the NEAREST real training face / threshold,
             capped at ``identity_cap``; 0 when the face cannot be embedded  0..cap
  stats      image statistics of the grayscale image, as the depth-faces
             paper: ``stats_std * std - stats_mean * |mean|``
  diversity  nearest distance (pixel features, 0..2) to the other members of
             the population and to the images already exported           0..2

``fitness = sum_k weight_k * term_k``; terms with weight 0 are not computed.
``Scorer.terms(genomes, aux)`` returns every term plus raw values for the
metadata (identity distance and nearest reference index, predicted class),
``Scorer.fitness(genomes, aux)`` the weighted sum; both are pure functions of
arrays (network weights travel in ``aux``), so the GA compiles them once.

Identity embedders: ``pixel`` runs in JAX (``identity.pixel_features``; NOT an
identity model, for drawn demo faces and tests); ``dlib`` (a real face
descriptor) runs on the host through ``jax.pure_callback`` inside the same
jitted loop, one call per generation with the whole population.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.classifiers.sorting import to_classifier_input
from jaxgen.evolve.identity import pixel_features

TERMS = ("class", "realism", "identity", "stats", "diversity")


@dataclasses.dataclass(frozen=True)
class FitnessConfig:
    """Term weights and parameters (frozen: part of the static jit signature)."""

    w_class: float = 1.0
    w_realism: float = 0.5
    w_identity: float = 1.0
    w_stats: float = 0.0
    w_diversity: float = 0.5
    stats_std: float = 10.0      # depth-faces paper: 10 * std - 5 * |mean|
    stats_mean: float = 5.0
    identity_cap: float = 1.5    # identity term saturates at cap * threshold
    feature_size: int = 16       # pixel-feature size for diversity (and the pixel embedder)
    psi: float = 1.0             # not applied to genomes (they are already scaled); recorded
    noise_mode: str = "const"

    def weight(self, name: str) -> float:
        return float(getattr(self, "w_" + name))


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


def w_statistics(G, g_vars, c_onehot: Optional[np.ndarray], key, num: int = 1024):
    """Mean and per-dimension std [w_dim] of G's mapping output for one class (psi 1)."""
    z = jax.random.normal(key, (num, G.z_dim))
    c = None if not G.c_dim else jnp.broadcast_to(jnp.asarray(c_onehot, jnp.float32), (num, G.c_dim))
    ws = jax.jit(lambda v, z, c: G.apply(v, z, c, method=type(G).map))(g_vars, z, c)
    w = ws[:, 0]
    return jnp.mean(w, 0), jnp.maximum(jnp.std(w, 0), 1e-4)


def seed_genomes(G, g_vars, space: LatentSpace, c_onehot, mean, std, z, psi: float = 1.0):
    """Genomes of given z [n, z_dim] (mapped, truncated towards the class mean by psi)."""
    c = None if not G.c_dim else jnp.broadcast_to(jnp.asarray(c_onehot, jnp.float32), (z.shape[0], G.c_dim))
    ws = G.apply(g_vars, jnp.asarray(z, jnp.float32), c, method=type(G).map)
    return space.from_ws(ws, mean, std) * psi


@dataclasses.dataclass(frozen=True, eq=False)
class StyleGANDecoder:
    """Genome -> image for a StyleGAN2 G: normalised w+ (see module doc); style-mixable."""

    G: Any
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

    @property
    def z_dim(self) -> int:
        return int(self.G.z_dim)

    def images(self, genomes, aux, noise_mode: str = "const"):
        ws = self.space.to_ws(genomes, aux["w_mean"], aux["w_std"])
        return self.G.apply(aux["g_vars"], ws, noise_mode, method=type(self.G).synthesize)

    def seed(self, z, aux, c_onehot, psi: float):
        return seed_genomes(self.G, aux["g_vars"], self.space, c_onehot, aux["w_mean"],
                            aux["w_std"], z, psi)

    def latents(self, genomes, aux) -> np.ndarray:
        """What is saved per image: ws float32 [n, num_ws, w_dim]."""
        return np.asarray(self.space.to_ws(genomes, aux["w_mean"], aux["w_std"]))


@dataclasses.dataclass(frozen=True, eq=False)
class DCGANDecoder:
    """Genome -> image for the conditional DCGAN (jaxgen.dcgan): the genome is z [z_dim];
    the class label is ``aux["label"]`` (int scalar). One layer: no style mixing."""

    G: Any
    latent_space = "z [z_dim]"
    num_ws = 1

    @property
    def dim(self) -> int:
        return int(self.G.z_dim)

    @property
    def w_dim(self) -> int:
        return int(self.G.z_dim)

    @property
    def z_dim(self) -> int:
        return int(self.G.z_dim)

    def images(self, genomes, aux, noise_mode: str = "const"):
        labels = jnp.broadcast_to(aux["label"], (genomes.shape[0],))
        return self.G.apply(aux["g_vars"], genomes, labels)

    def seed(self, z, aux, c_onehot, psi: float):
        return jnp.asarray(z, jnp.float32) * psi

    def latents(self, genomes, aux) -> np.ndarray:
        return np.asarray(genomes)


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


def _host_embedder_callback(embedder, dim: int):
    """A jit-compatible wrapper of a host (numpy) identity embedder, e.g. dlib."""

    def host(img_uint8):
        emb, ok = embedder.embed(np.asarray(img_uint8))
        return np.asarray(emb, np.float32).reshape(-1, dim), np.asarray(ok, bool)

    def call(img):
        u8 = jnp.clip(jnp.round((img + 1.0) * 127.5), 0, 255).astype(jnp.uint8)
        if u8.shape[-1] == 1:
            u8 = jnp.repeat(u8, 3, -1)
        shapes = (jax.ShapeDtypeStruct((img.shape[0], dim), jnp.float32),
                  jax.ShapeDtypeStruct((img.shape[0],), jnp.bool_))
        return jax.pure_callback(host, shapes, u8, vmap_method="expand_dims")
    return call


@dataclasses.dataclass(frozen=True, eq=False)
class Scorer:
    """Jit-able fitness terms for one (generator, class). Hashable by identity.

    Build with ``make_scorer``; call ``terms(genomes, aux)`` / ``fitness(genomes, aux)``.
    aux keys: g_vars, w_mean, w_std, c [c_dim] and, for enabled terms, clf_vars,
    d_vars, det_vars, ref_emb [M, D] + ref_ok [M], bank [B, F] + bank_ok [B].
    """

    decoder: Any                           # StyleGANDecoder | DCGANDecoder
    cfg: FitnessConfig
    classifier: Optional[tuple] = None     # (model, resolution, channels, target index)
    realism: Optional[tuple] = None        # ("discriminator", D) | ("detector", model, res, ch, idx)
    identity: Optional[tuple] = None       # ("pixel", size, threshold) | ("host", callback, threshold)
    mesh: Any = None                       # shard the population over this 1-D mesh ("pop")

    def images(self, genomes, aux):
        if self.mesh is not None:
            from jax.sharding import NamedSharding, PartitionSpec as P
            genomes = jax.lax.with_sharding_constraint(genomes, NamedSharding(self.mesh, P("pop")))
        return self.decoder.images(genomes, aux, self.cfg.noise_mode)

    @property
    def G(self):
        return self.decoder.G

    @property
    def space(self) -> LatentSpace:
        return self.decoder.space

    def terms(self, genomes, aux) -> Dict[str, jnp.ndarray]:
        cfg = self.cfg
        raw = self.images(genomes, aux).astype(jnp.float32)
        img = jnp.clip(raw, -1.0, 1.0)  # as exported (PNG); D alone sees the raw output, as in training
        n = img.shape[0]
        out: Dict[str, jnp.ndarray] = {}
        if self.classifier is not None:
            model, res, ch, target = self.classifier
            logits = model.apply(aux["clf_vars"], to_classifier_input(img, res, ch), train=False)
            probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
            out["class"] = probs[:, target]
            out["predicted_class"] = jnp.argmax(probs, -1)
        if self.realism is not None:
            if self.realism[0] == "discriminator":
                # D's minibatch-stddev layer looks at groups of `mbstd_group_size`
                # consecutive images, as in training; pad the batch to whole groups.
                D = self.realism[1]
                g = max(1, int(getattr(D, "mbstd_group_size", 1) or 1))
                pad = (-n) % g if n > g else 0
                x = jnp.concatenate([raw, raw[-pad:]]) if pad else raw
                c = None if not D.c_dim else jnp.broadcast_to(aux["c"], (x.shape[0], D.c_dim))
                logits = D.apply(aux["d_vars"], x, c).reshape(-1)[:n]
                out["realism"] = jax.nn.sigmoid(logits.astype(jnp.float32))
            elif self.realism[0] == "dcgan_discriminator":
                labels = jnp.broadcast_to(aux["label"], (n,))
                logits = self.realism[1].apply(aux["d_vars"], raw, labels)
                out["realism"] = jax.nn.sigmoid(logits.reshape(n).astype(jnp.float32))
            else:
                _, model, res, ch, idx = self.realism
                logits = model.apply(aux["det_vars"], to_classifier_input(img, res, ch), train=False)
                out["realism"] = jax.nn.softmax(logits.astype(jnp.float32), -1)[:, idx]
        if self.identity is not None:
            if self.identity[0] == "pixel":
                emb, ok = pixel_features(img, self.identity[1], scale=0.5)
            else:
                emb, ok = self.identity[1](img)
            thr = self.identity[2]
            d2 = (jnp.sum(emb * emb, 1)[:, None] + jnp.sum(aux["ref_emb"] ** 2, 1)[None, :]
                  - 2.0 * emb @ aux["ref_emb"].T)
            d2 = jnp.where(aux["ref_ok"][None, :], jnp.maximum(d2, 0.0), jnp.inf)
            idx = jnp.argmin(d2, 1)
            dist = jnp.where(ok, jnp.linalg.norm(emb - aux["ref_emb"][idx], axis=1), 0.0)
            out["identity"] = jnp.minimum(dist / thr, cfg.identity_cap)
            out["identity_distance"] = jnp.where(ok, dist, jnp.nan)
            out["identity_index"] = jnp.where(ok, idx, -1)
            out["identity_ok"] = ok
        if cfg.w_stats:
            gray = jnp.mean(img, -1)
            out["stats"] = (cfg.stats_std * jnp.std(gray, (1, 2))
                            - cfg.stats_mean * jnp.abs(jnp.mean(gray, (1, 2))))
        if cfg.w_diversity:
            f, _ = pixel_features(img, cfg.feature_size, scale=0.5)
            d = _min_offdiag_dist(f) if n > 1 else jnp.full((n,), 2.0)
            if "bank" in aux:
                d = jnp.minimum(d, _min_bank_dist(f, aux["bank"], aux["bank_ok"]))
            out["diversity"] = jnp.minimum(d, 2.0)
        return out

    def active_terms(self):
        """Names of the terms that enter the fitness (weight != 0 and model present)."""
        have = dict(**{"class": self.classifier is not None, "realism": self.realism is not None,
                       "identity": self.identity is not None}, stats=True, diversity=True)
        return [k for k in TERMS if self.cfg.weight(k) and have[k]]

    def total(self, terms: Dict[str, jnp.ndarray]) -> jnp.ndarray:
        parts = [self.cfg.weight(k) * terms[k] for k in TERMS if k in terms and self.cfg.weight(k)]
        if not parts:
            raise ValueError("every fitness term is off (all weights 0 or the models missing)")
        return sum(parts)

    def fitness(self, genomes, aux):
        return self.total(self.terms(genomes, aux))


def make_scorer(G, cfg: FitnessConfig, classifier=None, realism=None, identity=None,
                mesh=None) -> Scorer:
    """Scorer for a generator: a StyleGAN2 Generator module (w+ genomes of its
    num_ws x w_dim) or a decoder (StyleGANDecoder, DCGANDecoder)."""
    decoder = G if isinstance(G, (StyleGANDecoder, DCGANDecoder)) else StyleGANDecoder(G)
    for name, spec in (("class", classifier), ("realism", realism), ("identity", identity)):
        if cfg.weight(name) and spec is None:
            raise ValueError(f"fitness weight w_{name}={cfg.weight(name)} but no {name} model "
                             "was given; give one or set the weight to 0")
    return Scorer(decoder, cfg, classifier if cfg.w_class else None,
                  realism if cfg.w_realism else None, identity if cfg.w_identity else None, mesh)


def host_identity(embedder) -> tuple:
    """Identity spec for a host (numpy) embedder such as DlibEmbedder, called via pure_callback."""
    return ("host", _host_embedder_callback(embedder, int(embedder.dim)), float(embedder.threshold))


def pixel_identity(size: int = 16, threshold: float = 0.3) -> tuple:
    return ("pixel", int(size), float(threshold))


@functools.lru_cache(maxsize=32)
def jit_terms(scorer: Scorer) -> Callable:
    """jit(scorer.terms) plus the images, for export-time scoring of final candidates
    (one compiled function per scorer, reused across rounds and calls)."""
    return jax.jit(lambda g, aux: (scorer.terms(g, aux), scorer.images(g, aux)))
