"""Build evolve.py's per-class tasks from the evolve config: open the runs, make the terms.

The evolve config (configs/evolve_*.py, defaults in jaxgen.config.evolve) names the models:

  generator   training workdir / networks dir / NVIDIA .pkl of a conditional G,
              or a template with ``{class}`` (one unconditional G per class, the
              hierarchical pipeline's fine-tuned models, e.g. runs/acne_{class})
  classifier  classifier workdir (train.py task 'classifier'); '' = no class term
  realism     'discriminator' (the G run's D) | 'detector' (a classifier workdir
              trained on real vs synthetic, `detector`, class `detector_real_class`) | 'none'
  identity    'dlib' (face descriptor, threshold 0.6) | 'pixel' (NOT identity:
              same-picture check for drawn demo faces) | 'none'
  real        data config (``jaxgen.data.load_dataset``) of the real training
              faces the identity term compares with

Runs are opened with ``jaxgen.runs.open_run``; the terms of the fitness are
listed, one line each, in ``fitness_terms``. Classes that share a generator
share one scorer (the class is an input), so the GA compiles once for them.
Expected user errors raise ConfigError in one line naming the ``--config.<field>``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.data import load_dataset
from jaxgen.errors import ConfigError
from jaxgen.evolve import terms as T
from jaxgen.evolve.export_config import ClassTask, ExportConfig
from jaxgen.evolve.fitness import Inputs, Scorer, Term, make_scorer
from jaxgen.evolve.ga import GAConfig
from jaxgen.identity.search import IdentityCheck, make_embedder
from jaxgen.evolve.latents import decoder_for, w_statistics
from jaxgen.identity.pixel_embedder import PixelEmbedder
from jaxgen.harness.checkpoint import CheckpointError
from jaxgen.runs import GENERATOR_KINDS, Run, RunError, open_run
from jaxgen.utils.labels import one_hot_labels
from jaxgen.utils.logger import logger


@dataclasses.dataclass(frozen=True)
class IdentityRefs:
    """The identity term's embedder and the real faces it compares with."""

    embedder: Any                      # identity.PixelEmbedder | identity.DlibEmbedder
    emb: jax.Array                     # float32 [M, E] embeddings of the real faces
    ok: jax.Array                      # bool [M]: embedded (the others are left out)
    files: List[str]                   # [M] their files, for the nearest-face metadata
    check: Any = None                  # pixel: the export's shift-tolerant near-copy check (calibrated)


@dataclasses.dataclass(frozen=True)
class Models:
    """What every class shares: the generator (None for a '{class}' template: one per
    class), the classifier, the detector and the identity references (None: off)."""

    generator: Optional[Run]
    classifier: Optional[Run]
    detector: Optional[Run]
    identity: Optional[IdentityRefs]


@contextlib.contextmanager
def _config_field(field: str, value: Any):
    """Re-raise a run that cannot be opened (no such path, wrong kind) as one line naming
    the ``--config.<field>`` to fix."""
    try:
        yield
    except (RunError, CheckpointError) as err:
        raise ConfigError(f"--config.{field}={value!r}: {err}") from None


def ga_config(e: Any, decoder) -> GAConfig:
    """The GA settings; style-mix crossover needs a generator with several latent layers."""
    crossover = e.crossover
    if crossover == "style_mix" and decoder.num_ws < 2:
        logger.info(f"evolve: {type(decoder).__name__} has one latent layer: no style-mix crossover")
        crossover = "none"
    mix = crossover == "style_mix"
    return GAConfig(strategy=e.strategy, popsize=int(e.popsize), generations=int(e.generations),
                    sigma_init=float(e.sigma), elite_ratio=float(e.elite_ratio),
                    crossover=crossover, mix_rate=float(e.mix_rate),
                    num_ws=decoder.num_ws if mix else 0, w_dim=decoder.w_dim if mix else 0)


def export_config(e: Any) -> ExportConfig:
    """The export settings of the evolve config."""
    return ExportConfig(num_per_class=int(e.num_per_class), per_round=int(e.per_round),
                        max_rounds=int(e.max_rounds), psi=float(e.psi), seed=int(e.seed),
                        require_class=bool(e.require_class), min_diversity=float(e.min_diversity),
                        bank_size=int(e.bank_size))


def generator_run(e: Any, path: str) -> Run:
    """The GAN run at `path`: its best checkpoint with --config.best when it has one."""
    which = "best" if e.best and (pathlib.Path(path) / "best").is_dir() else "latest"
    with _config_field("generator", path):
        return open_run(path, which, kinds=GENERATOR_KINDS)


def classifier_run(e: Any) -> Optional[Run]:
    """The classifier of the class term; None when w_class is 0 or no classifier is given."""
    if not float(e.w_class):
        return None
    if not e.classifier:
        logger.info("evolve: no --config.classifier: the class-confidence term is off")
        return None
    with _config_field("classifier", e.classifier):
        return open_run(e.classifier, kinds=("classifier",))


def detector_run(e: Any) -> Optional[Run]:
    """The real-vs-synthetic classifier of realism='detector' (None for the other realisms)."""
    if e.realism not in ("discriminator", "detector", "none"):
        raise ConfigError(f"--config.realism={e.realism!r}: use 'discriminator', 'detector' or 'none'")
    if e.realism != "detector" or not float(e.w_realism):
        return None
    if not e.detector:
        raise ConfigError("--config.realism=detector needs --config.detector=<classifier workdir>")
    with _config_field("detector", e.detector):
        run = open_run(e.detector, kinds=("classifier",))
    if e.detector_real_class not in run.class_names:
        raise ConfigError(f"--config.detector_real_class={e.detector_real_class!r}: the detector "
                         f"{e.detector} has classes {list(run.class_names)}")
    return run


def identity_embedder(e: Any):
    """The (host-side) identity embedder of --config.identity; None when the term is off."""
    if e.identity == "none" or not float(e.w_identity):
        return None
    if e.identity not in ("dlib", "pixel"):
        raise ConfigError(f"--config.identity={e.identity!r}: use 'dlib', 'pixel' or 'none'")
    return make_embedder(e.identity, float(e.identity_threshold), bool(e.dlib_detect), e.dlib_fallback)


def identity_refs(e: Any) -> Optional[IdentityRefs]:
    """The real faces of --config.real, embedded for the identity term (None: term off)."""
    emb = identity_embedder(e)
    if emb is None:
        return None
    ds = load_dataset(e.real)
    imgs = ds.images if ds.images.shape[-1] == 3 else np.repeat(ds.images, 3, -1)
    r = emb.embed_detailed(imgs)
    bad = int((~r.ok).sum())
    check = IdentityCheck(emb, imgs, list(ds.paths)) if isinstance(emb, PixelEmbedder) and bad < len(imgs) else None
    logger.info(f"evolve: identity references: {len(imgs)} real faces from {e.real.path}, "
                f"{len(imgs) - bad} embedded by {emb.name} (threshold {check.threshold if check else emb.threshold:g})"
                + (f"; {bad} not embedded and left out: {sorted(set(np.asarray(r.status)[~r.ok]))}" if bad else ""))
    if bad == len(imgs):
        raise ConfigError(f"no real face could be embedded by {emb.name}; check --config.real "
                         "or use --config.dlib_fallback=whole")
    return IdentityRefs(emb, jnp.asarray(r.embeddings), jnp.asarray(r.ok), list(ds.paths), check)


def open_models(e: Any) -> Models:
    """Open what every class shares (see ``Models``); errors name the config field."""
    if not e.generator:
        raise ConfigError("--config.generator is needed: a GAN workdir, networks dir or NVIDIA "
                         ".pkl ('{class}' in it: one generator per class)")
    shared = None if "{class}" in e.generator else generator_run(e, e.generator)
    return Models(shared, classifier_run(e), detector_run(e), identity_refs(e))


def class_names(e: Any, models: Models) -> List[str]:
    """--config.classes, else the conditional generator's classes, else the classifier's."""
    names = [s for s in e.classes.split(",") if s]
    if not names and models.generator is not None and models.generator.num_classes:
        names = list(models.generator.class_names)
    elif not names and models.classifier is not None:
        names = list(models.classifier.class_names)
    if not names:
        raise ConfigError("--config.classes is needed: the generator has no class names (or is a "
                         "'{class}' template) and there is no classifier to take them from")
    return names


def realism_term(e: Any, gen: Run, detector: Optional[Run]) -> Optional[Tuple[Term, Any]]:
    """(realism term, its variables): the detector's, else the generator run's D; None if off."""
    if e.realism == "none" or not float(e.w_realism):
        return None
    w = float(e.w_realism)
    if detector is not None:
        real = detector.class_names.index(e.detector_real_class)
        return T.DetectorRealism(model=detector.model, resolution=detector.resolution,
                                 channels=detector.channels, real_index=real, weight=w), detector.variables
    if gen.discriminator is None or gen.d_variables is None:
        raise ConfigError(f"--config.realism: {gen.path} has no discriminator weights; use "
                         "--config.realism=none or --config.realism=detector")
    term = T.DCGANRealism if gen.kind == "dcgan" else T.StyleGANRealism
    return term(D=gen.discriminator, weight=w), gen.d_variables


def fitness_terms(e: Any, gen: Run, models: Models) -> List[Tuple[Term, Any]]:
    """(term, its network variables or None) of the config, in fitness order, weight-0 terms
    left out. Adding a term to evolve.py = one line here."""
    clf, ident = models.classifier, models.identity
    pairs = [
        (T.ClassConfidence(model=clf.model, resolution=clf.resolution, channels=clf.channels,
                           weight=float(e.w_class)), clf.variables) if clf else None,
        realism_term(e, gen, models.detector),
        (T.Identity(embed=T.jit_embed(ident.embedder), threshold=float((ident.check or ident.embedder).threshold),
                    embedder_name=ident.embedder.name, weight=float(e.w_identity)), None) if ident else None,
        (T.ImageStats(stats_std=float(e.stats_std), stats_mean=float(e.stats_mean),
                      weight=float(e.w_stats)), None),
        (T.Diversity(weight=float(e.w_diversity)), None),
    ]
    return [p for p in pairs if p is not None and p[0].weight]


def generator_scorer(e: Any, gen: Run, models: Models, mesh) -> Tuple[Scorer, Dict[str, Any]]:
    """(scorer, term variables keyed by term name) of one generator, shared by its classes."""
    pairs = fitness_terms(e, gen, models)
    decoder = decoder_for(gen, float(e.get("max_z_rms", 0.0)))  # a DCGAN's z cap (latents.DCGANDecoder)
    scorer = make_scorer(decoder, [t for t, _ in pairs], mesh)
    return scorer, {t.name: v for t, v in pairs if v is not None}


def class_indices(name: str, path: str, gen: Run, clf: Optional[Run]):
    """(generator one-hot [c_dim] or None if unconditional, classifier index or None)."""
    c = target = None
    if gen.num_classes:
        if name not in gen.class_names:
            raise ConfigError(f"--config.classes: {name!r} is not a class of the generator {path} "
                             f"(it has {list(gen.class_names)})")
        c = one_hot_labels([gen.class_names.index(name)], gen.num_classes)[0]
    if clf is not None:
        if name not in clf.class_names:
            raise ConfigError(f"--config.classes: {name!r} is not a class of the classifier "
                             f"{clf.path} (it has {list(clf.class_names)})")
        target = clf.class_names.index(name)
    return c, target


def class_inputs(e: Any, gen: Run, c: Optional[np.ndarray], target: Optional[int],
                 term_vars: Dict[str, Any], ident: Optional[IdentityRefs]) -> Inputs:
    """The fitness inputs of one class (see ``fitness.Inputs``)."""
    w = {}
    if gen.kind == "stylegan2":  # normalised w+ genomes: the class's w statistics
        w["w_mean"], w["w_std"] = w_statistics(gen.model, gen.variables, c,
                                               jax.random.PRNGKey(int(e.seed)))
    return Inputs.create(gen.variables, **w, c=c, label=int(np.argmax(c)) if c is not None else 0,
                         target=target or 0, term_vars=term_vars,
                         ref_emb=ident.emb if ident else None, ref_ok=ident.ok if ident else None)


def _mesh(popsize: int):
    """A 1-D mesh ("pop") over every device to shard the population on; None on one device."""
    n = jax.device_count()
    if n < 2:
        return None
    if popsize % n:
        logger.warning(f"evolve: population {popsize} is not divisible by {n} devices; running on one")
        return None
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("pop",))


def build_tasks(config: Any) -> tuple:
    """(tasks, GAConfig, ExportConfig, settings dict) for ``export.evolve_dataset``."""
    e = config
    models = open_models(e)
    mesh = _mesh(int(e.popsize))
    scorers: Dict[str, Tuple[Scorer, Dict[str, Any]]] = {}
    tasks = []
    for name in class_names(e, models):
        path = e.generator.replace("{class}", name)
        gen = models.generator or generator_run(e, path)
        if path not in scorers:
            scorers[path] = generator_scorer(e, gen, models, mesh)
        scorer, term_vars = scorers[path]
        c, target = class_indices(name, path, gen, models.classifier)
        ident = models.identity
        tasks.append(ClassTask(name, scorer, class_inputs(e, gen, c, target, term_vars, ident),
                               target, path, ident.files if ident else [],
                               ident.embedder.name if ident else "none", near_copy=ident.check if ident else None))
    settings = dict(evolve=e.to_dict(), devices=jax.device_count(),
                    fitness={t.name: t.describe() for t in tasks[0].scorer.terms},
                    identity_embedder=tasks[0].identity_name)
    return tasks, ga_config(e, tasks[0].scorer.decoder), export_config(e), settings
