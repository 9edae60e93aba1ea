"""Build evolve.py's per-class fitness tasks from a config (loading G, D, classifier, identity refs).

The evolve config (configs/evolve_*.py, defaults in jaxgen.config.evolve) names the models:

  generator   training workdir / networks dir / NVIDIA .pkl of a conditional G,
              or a template with ``{class}`` (one unconditional G per class, the
              hierarchical pipeline's fine-tuned models, e.g. runs/acne_{class})
  classifier  classifier workdir (train.py task 'classifier'); '' = no class term
  realism     'discriminator' (the G run's D) | 'detector' (a classifier workdir
              trained on real vs synthetic, `detector`, class `detector_real_class`) | 'none'
  identity    'dlib' (face descriptor, threshold 0.6) | 'pixel' (NOT identity:
              same-picture check for drawn demo faces) | 'none'
  real        folder of the real training faces for the identity term
              ('' = config.data, loaded as for training)

Errors name the setting to fix.
"""
from __future__ import annotations

import pathlib
from typing import Any, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.evolve import fitness as F
from jaxgen.evolve.export import ClassTask, ExportConfig
from jaxgen.evolve.ga import GAConfig
from jaxgen.runs import GENERATOR_KINDS, open_run


def ga_config(e: Any, decoder, log=print) -> GAConfig:
    crossover = e.crossover
    if crossover == "style_mix" and decoder.num_ws < 2:
        log(f"evolve: {type(decoder).__name__} has one latent layer: no style-mix crossover")
        crossover = "none"
    mix = crossover == "style_mix"
    return GAConfig(strategy=e.strategy, popsize=int(e.popsize), generations=int(e.generations),
                    sigma_init=float(e.sigma), elite_ratio=float(e.elite_ratio),
                    crossover=crossover, mix_rate=float(e.mix_rate),
                    num_ws=decoder.num_ws if mix else 0, w_dim=decoder.w_dim if mix else 0)


def export_config(e: Any) -> ExportConfig:
    return ExportConfig(num_per_class=int(e.num_per_class), per_round=int(e.per_round),
                        max_rounds=int(e.max_rounds), psi=float(e.psi), seed=int(e.seed),
                        require_class=bool(e.require_class), min_diversity=float(e.min_diversity),
                        bank_size=int(e.bank_size))


def fitness_config(e: Any) -> F.FitnessConfig:
    return F.FitnessConfig(w_class=float(e.w_class), w_realism=float(e.w_realism),
                           w_identity=float(e.w_identity), w_stats=float(e.w_stats),
                           w_diversity=float(e.w_diversity), stats_std=float(e.stats_std),
                           stats_mean=float(e.stats_mean), psi=float(e.psi))


def _load_gan(path: str, best: bool):
    """(decoder, D module, {'G_ema', 'D'} variables, info) of a StyleGAN2 or DCGAN run."""
    run = open_run(path, "best" if best and (pathlib.Path(path) / "best").is_dir() else "latest",
                   kinds=GENERATOR_KINDS)
    dec = F.DCGANDecoder(run.model) if run.kind == "dcgan" else F.StyleGANDecoder(run.model)
    info = dict(run.info, class_names=list(run.class_names))
    return dec, run.discriminator, dict(G_ema=run.variables, D=run.d_variables), info


def _classifier(path: str):
    """(model, variables, info) of a classifier run."""
    run = open_run(path, kinds=("classifier",))
    return run.model, run.variables, dict(run.info, class_names=list(run.class_names),
                                          resolution=run.resolution, channels=run.channels)


def _num_classes(decoder) -> int:
    G = decoder.G
    return int(getattr(G, "c_dim", 0) or getattr(G, "num_classes", 0) or 0)


def _mesh(popsize: int):
    n = jax.device_count()
    if n < 2:
        return None
    if popsize % n:
        print(f"evolve: population {popsize} is not divisible by {n} devices; running on one")
        return None
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("pop",))


def _identity(e: Any, log):
    """(identity spec, ref_emb, ref_ok, ref_files, name) or Nones when off."""
    if e.identity == "none" or not float(e.w_identity):
        return None, None, None, [], "none"
    from jaxgen.data import load_dataset
    dcfg = e.real
    ds = load_dataset(dcfg)
    imgs = ds.images if ds.images.shape[-1] == 3 else np.repeat(ds.images, 3, -1)
    if e.identity == "pixel":
        from jaxgen.evolve.identity import PixelEmbedder
        emb = PixelEmbedder(16, 0.3 if float(e.identity_threshold) < 0 else float(e.identity_threshold))
        spec = F.pixel_identity(emb.size, emb.threshold)
    elif e.identity == "dlib":
        from jaxgen.evolve.identity import DlibEmbedder
        emb = DlibEmbedder(detect=bool(e.dlib_detect), detect_fallback=e.dlib_fallback or None,
                           threshold=0.6 if float(e.identity_threshold) < 0 else float(e.identity_threshold))
        spec = F.host_identity(emb)
    else:
        raise ValueError(f"--config.identity={e.identity!r}: use 'dlib', 'pixel' or 'none'")
    r = emb.embed_detailed(imgs)
    bad = int((~r.ok).sum())
    log(f"evolve: identity references: {len(imgs)} real faces from {dcfg.path}, "
        f"{len(imgs) - bad} embedded by {emb.name} (threshold {emb.threshold})"
        + (f"; {bad} not embedded and left out: {sorted(set(np.asarray(r.status)[~r.ok]))}" if bad else ""))
    if bad == len(imgs):
        raise ValueError(f"no real face could be embedded by {emb.name}; check --config.real "
                         "or use --config.dlib_fallback=whole")
    return spec, jnp.asarray(r.embeddings), jnp.asarray(r.ok), list(ds.paths), emb.name


def build_tasks(config: Any, log=print) -> tuple:
    """(tasks, GAConfig, ExportConfig, settings dict) for evolve_dataset."""
    e = config
    fcfg = fitness_config(e)
    clf = None
    if e.classifier and fcfg.w_class:
        clf = _classifier(e.classifier)
    elif fcfg.w_class:
        log("evolve: no --config.classifier: the class-confidence term is off")
        fcfg = F.FitnessConfig(**{**fcfg.__dict__, "w_class": 0.0})
    det = None
    if e.realism == "detector" and fcfg.w_realism:
        if not e.detector:
            raise ValueError("--config.realism=detector needs --config.detector=<workdir>")
        det = _classifier(e.detector)
        if e.detector_real_class not in det[2]["class_names"]:
            raise ValueError(f"detector {e.detector} has classes {det[2]['class_names']}, no "
                             f"{e.detector_real_class!r} (--config.detector_real_class)")
    elif e.realism == "none" or not fcfg.w_realism:
        fcfg = F.FitnessConfig(**{**fcfg.__dict__, "w_realism": 0.0})
    elif e.realism != "discriminator":
        raise ValueError(f"--config.realism={e.realism!r}: 'discriminator', 'detector' or 'none'")
    id_spec, ref_emb, ref_ok, ref_files, id_name = _identity(e, log)
    if id_spec is None:
        fcfg = F.FitnessConfig(**{**fcfg.__dict__, "w_identity": 0.0})

    per_class = "{class}" in e.generator
    names: Optional[List[str]] = [s for s in e.classes.split(",") if s] or None
    shared = None if per_class else _load_gan(e.generator, bool(e.best))
    if names is None:
        if shared is not None and _num_classes(shared[0]):
            names = list(shared[3].get("class_names") or [])
        elif clf is not None:
            names = list(clf[2]["class_names"])
        if not names:
            raise ValueError("--config.classes is needed: the generator has no class names")
    tasks, ga_cfg = [], None
    mesh = None
    for name in names:
        gpath = e.generator.replace("{class}", name)
        dec, D, nets, info = _load_gan(gpath, bool(e.best)) if per_class else shared
        dcgan = isinstance(dec, F.DCGANDecoder)
        c, k = None, _num_classes(dec)
        if k:
            gnames = list(info.get("class_names") or [])
            if name not in gnames:
                raise ValueError(f"class {name!r} is not one of the generator's {gnames}")
            c = np.eye(k, dtype=np.float32)[gnames.index(name)]
        target = None
        clf_spec = None
        if clf is not None:
            if name not in clf[2]["class_names"]:
                raise ValueError(f"class {name!r} is not one of the classifier's {clf[2]['class_names']}")
            target = clf[2]["class_names"].index(name)
            clf_spec = (clf[0], int(clf[2]["resolution"]), int(clf[2].get("channels", 3)), target)
        real_spec = None
        if fcfg.w_realism:
            if det is None and nets.get("D") is None:
                raise ValueError(f"{gpath} has no discriminator weights: use "
                                 "--config.realism=none or a detector")
            kind = "dcgan_discriminator" if dcgan else "discriminator"
            real_spec = (kind, D) if det is None else (
                "detector", det[0], int(det[2]["resolution"]), int(det[2].get("channels", 3)),
                det[2]["class_names"].index(e.detector_real_class))
        ga_cfg = ga_config(e, dec, log)
        mesh = _mesh(ga_cfg.popsize) if mesh is None else mesh
        scorer = F.make_scorer(dec, fcfg, clf_spec, real_spec, id_spec, mesh)
        aux = dict(g_vars=nets["G_ema"],
                   c=jnp.asarray(c if c is not None else np.zeros([0], np.float32)))
        if dcgan:
            aux["label"] = jnp.asarray(int(np.argmax(c)) if c is not None else 0, jnp.int32)
        else:
            aux["w_mean"], aux["w_std"] = F.w_statistics(dec.G, nets["G_ema"], c,
                                                         jax.random.PRNGKey(int(e.seed)))
        if clf_spec is not None:
            aux["clf_vars"] = clf[1]
        if real_spec is not None:
            if det is None:
                aux["d_vars"] = nets["D"]
            else:
                aux["det_vars"] = det[1]
        if id_spec is not None:
            aux.update(ref_emb=ref_emb, ref_ok=ref_ok)
        tasks.append(ClassTask(name, scorer, aux, c, target, gpath, ref_files, id_name))
    settings = dict(evolve=e.to_dict(), fitness=fcfg.__dict__, devices=jax.device_count(),
                    identity_embedder=id_name)
    return tasks, ga_cfg, export_config(e), settings
