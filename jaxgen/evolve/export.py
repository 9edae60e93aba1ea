"""Evolve latents per class and export an anonymous image-folder dataset (evolve.py's engine).

For each class, repeated GA *rounds* (one jitted ``run_ga`` each) start from a
fresh truncated latent, evolve a population under ``fitness.Scorer``, then the
final population (plus the best-ever genome) is scored once more and the best
candidates that pass every export check are written:

  identity   nearest real training face farther than the embedder's threshold
             (de-identification); a face the embedder cannot embed is rejected. With
             the pixel embedder: its shift-tolerant near-copy distance and threshold
             (calibrated on the real faces), ``ClassTask.near_copy``
  class      (``require_class``) the classifier's top class is the target
  diversity  nearest pixel-feature distance to every image already exported
             for the class (and in this round) above ``min_diversity``
  finite     fitness is not NaN

Layout of ``out``::

  <class>/<class>_00000.png        images (grayscale or RGB as the generator)
  latents/<class>/<class>_00000.npy  the image's w+ styles, float32 [num_ws, w_dim]
                                   (z [z_dim] for a DCGAN)
  metadata.jsonl                   one JSON line per image: file, class, round,
                                   fitness and every term, nearest real identity
                                   (distance, file, embedder, threshold), class
                                   prediction, latent file, generator, seed
  progress.json                    per class: rounds finished (the resume point), images
                                   exported, rejections by reason, GA history per round
  evolve.json                      settings, per-class counts, rejections, histories
  fitness.png, preview.png         GA curves per class; a grid of exported images

Resumable: a round's images, latents and metadata are written before its
``progress.json`` entry; on restart, metadata rows of unfinished rounds are
dropped and those rounds re-run (deterministic: the key of round r of class k
is ``fold_in(fold_in(seed, k), r)``), so an interrupted export ends with the
same files as an uninterrupted one. The folder holds exactly the images (and
latents) metadata.jsonl lists: on resume, pattern files no row lists are removed.
What decides the images (``export_settings``: GA, export settings, per class the
weights' SHA-256, terms, near-copy threshold; evolve.py's config) is stored in the
output marker; a rerun with other settings is refused with one line naming the
difference (``rebuild=True``, evolve.py --rebuild, replaces the export instead);
asking for more images (num_per_class, max_rounds) resumes. Every path is checked
to stay in ``out``.

``out`` must be new, empty, or an export of this command (its
``.jaxgen-output.json`` marker, or the ``progress.json`` of an export made
before the marker): a folder of other files is refused with an ``OutputError``
before anything is written (``jaxgen.utils.outputs``). Each class prints a
progress line (images exported / wanted, rate, ETA) every 30 s and when done.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from PIL import Image

from jaxgen.evolve.export_config import ClassTask, ExportConfig, export_settings
from jaxgen.evolve.export_folder import OpenExport, open_export
from jaxgen.evolve.fitness import Inputs, Scorer, jit_terms
from jaxgen.evolve.ga import GAConfig, run_ga
from jaxgen.identity.pixel_embedder import pixel_features
from jaxgen.evolve.terms import FEATURE_SIZE
from jaxgen.utils.files import inside, save_png_atomic, write_text_atomic
from jaxgen.utils.images import to_uint8
from jaxgen.utils.logger import logger
from jaxgen.utils.progress import Progress


@functools.partial(jax.jit, static_argnames="size")
def _features(img, size: int):
    """Diversity features of images in [-1, 1]: (unit vectors [N, size*size*3], ok [N])."""
    return pixel_features(img, size, scale=0.5)


def _feature_size(scorer: Scorer) -> int:
    """The bank's feature size: the diversity term's (the bank is its input), else the default."""
    return int(getattr(scorer.term("diversity"), "feature_size", FEATURE_SIZE))


def _json_num(x):
    """A float for JSON; NaN (e.g. a face that could not be embedded) -> null."""
    x = float(x)
    return None if math.isnan(x) else x


@dataclasses.dataclass
class _ClassState:
    """Where one class stands: images exported and the pixel features of the first bank_size."""

    task: ClassTask
    prog: dict                         # the class's progress.json entry
    n_done: int
    bank: np.ndarray                   # float32 [bank_size, F]
    bank_ok: np.ndarray                # bool [bank_size]
    cdir: pathlib.Path                 # <out>/<class>
    ldir: pathlib.Path                 # <out>/latents/<class>

    def add(self, feat: np.ndarray) -> None:
        """Count one exported image, its features [F] into the bank while it has room."""
        if self.n_done < len(self.bank):
            self.bank[self.n_done], self.bank_ok[self.n_done] = feat, True
        self.n_done += 1


def _class_state(ex: OpenExport, task: ClassTask) -> _ClassState:
    """The class's folders (checked to stay in `out`) and, on resume, its bank of exported images."""
    cdir = inside(ex.out, ex.out / task.name)
    ldir = inside(ex.out, ex.out / "latents" / task.name)
    cdir.mkdir(parents=True, exist_ok=True)
    ldir.mkdir(parents=True, exist_ok=True)
    prog = ex.progress.setdefault(task.name, dict(rounds=0, exported=0, rejected={}, history=[]))
    size, n = _feature_size(task.scorer), ex.cfg.bank_size
    st = _ClassState(task, prog, 0, np.zeros((n, size ** 2 * 3), np.float32), np.zeros(n, bool),
                     cdir, ldir)
    mine = [r for r in ex.rows if r["class_name"] == task.name]
    for j, r in enumerate(mine[:n]):  # resume: features of the images already exported
        im = np.asarray(Image.open(ex.out / r["file"]), np.float32)
        im = im[..., None] if im.ndim == 2 else im
        st.bank[j], st.bank_ok[j] = np.asarray(_features(im[None] / 127.5 - 1.0, size)[0][0]), True
    st.n_done = len(mine)
    return st


def evolve_dataset(tasks: List[ClassTask], ga_cfg: GAConfig, cfg: ExportConfig, out: str,
                   settings: Optional[dict] = None, rebuild: bool = False, config: Optional[dict] = None) -> dict:
    """Run the GA rounds for every class task and export; returns the summary (evolve.json).

    A rerun into `out` resumes it when its settings (`export_settings`, and `config`: evolve.py's
    config as `config_settings` keeps it) are those of the export there, and is refused
    (OutputError) when not; rebuild=True replaces that export instead (`clear_export`)."""
    now = dict(export=export_settings(tasks, ga_cfg, cfg), **({"config": config} if config is not None else {}))
    ex = open_export(pathlib.Path(out), ga_cfg, cfg, now, rebuild)
    summary = dict(settings=settings or {}, classes={}, out=str(ex.out))
    for ci, task in enumerate(tasks):
        summary["classes"][task.name] = _export_class(ex, ci, task)
    write_text_atomic(ex.out / "evolve.json", json.dumps(summary, indent=1))
    names = [t.name for t in tasks]
    _plot_fitness(ex.out, ex.progress, names)
    _write_preview(ex.out, ex.rows, names)
    return summary


def _export_class(ex: OpenExport, ci: int, task: ClassTask) -> dict:
    """Rounds of class number `ci` until it has num_per_class images or max_rounds; its summary."""
    st, t0, cfg = _class_state(ex, task), time.time(), ex.cfg
    bar = Progress(cfg.num_per_class, f"evolve: {task.name}", every=30.0, done=st.n_done,
                   unit="images")
    while st.n_done < cfg.num_per_class and st.prog["rounds"] < cfg.rounds:
        before = st.n_done
        _export_round(ex, ci, st)
        bar.update(st.n_done - before)
    if st.n_done < cfg.num_per_class:
        logger.warning(f"evolve: WARNING {task.name}: only {st.n_done}/{cfg.num_per_class} images after "
                       f"{st.prog['rounds']} rounds (max_rounds={cfg.rounds}); rejections: "
                       f"{st.prog['rejected']}. Raise --config.max_rounds or relax the checks.")
    return dict(exported=st.n_done, rounds=st.prog["rounds"], rejected=st.prog["rejected"],
                seconds=round(time.time() - t0, 1))


@dataclasses.dataclass
class _Candidates:
    """One round's GA result and its final candidates, scored (n = 1 + popsize)."""

    genomes: jax.Array                 # [n, dim]: the best-ever genome, then the final population
    values: Dict[str, np.ndarray]      # every term's values and extras [n]
    fitness: np.ndarray                # [n]
    images: np.ndarray                 # float32 [n, R, R, C], clipped to [-1, 1]
    feats: np.ndarray                  # float32 [n, F], pixel features (diversity check)
    inputs: Inputs                     # the fitness inputs of the round
    ga: dict                           # run_ga's result (history, best_fitness)


def _candidates(ex: OpenExport, ci: int, rnd: int, st: _ClassState) -> _Candidates:
    """Run round `rnd` of class `ci`'s GA from its starting latent; score the final candidates."""
    scorer = st.task.scorer
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(ex.cfg.seed), ci), rnd)
    k_z, k_ga = jax.random.split(key)
    inputs = st.task.inputs.replace(bank=jnp.asarray(st.bank), bank_ok=jnp.asarray(st.bank_ok))
    dec = scorer.decoder
    x0 = dec.seed(jax.random.normal(k_z, (1, dec.z_dim)), inputs, ex.cfg.psi)[0]
    if scorer.mesh is not None:  # replicate the inputs over the population's mesh
        rep = NamedSharding(scorer.mesh, PartitionSpec())
        x0, k_ga, inputs = jax.device_put((x0, k_ga, inputs), rep)
    res = run_ga(scorer.fitness, x0, k_ga, ex.ga_cfg, inputs)
    cand = jnp.concatenate([res["best_x"][None], res["final_population"]])
    values, raw = jit_terms(scorer)(cand, inputs)
    values = {k: np.asarray(v) for k, v in values.items()}
    imgs = np.clip(np.asarray(raw, np.float32), -1.0, 1.0)
    if st.task.near_copy is not None and "identity_distance" in values:
        values.update(_near_copy_values(st.task.near_copy, imgs))
    return _Candidates(cand, values, np.asarray(scorer.total(values)), imgs,
                       np.asarray(_features(imgs, _feature_size(scorer))[0]), inputs, res)


def _near_copy_values(check: Any, imgs: np.ndarray) -> Dict[str, np.ndarray]:
    """The identity extras of the candidates (images [n, R, R, C] in [-1, 1]) by the export's
    near-copy check: the shift-tolerant distance to the nearest real face (NaN: not embedded),
    its index and ok; they replace the fitness term's plain-pixel ones for the checks and rows."""
    r = check.check(to_uint8(imgs))
    ok = ~np.isnan(r["distance"])
    return dict(identity_distance=r["distance"], identity_index=np.where(ok, r["index"], -1),
                identity_ok=ok)


def _identity_threshold(task: ClassTask) -> float:
    """The distance a candidate must exceed: the near-copy check's (calibrated), else the term's."""
    return float(task.near_copy.threshold if task.near_copy is not None else task.scorer.term("identity").threshold)


def _export_round(ex: OpenExport, ci: int, st: _ClassState) -> None:
    """One round: GA, checks, files, metadata, then progress.json (the resume point)."""
    rnd, t0 = st.prog["rounds"], time.time()
    c = _candidates(ex, ci, rnd, st)
    accepted, reasons = _select(ex.cfg, st, c)
    new_rows = _write_accepted(ex, st, c, rnd, accepted)
    with open(ex.meta_path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in new_rows))
    ex.rows.extend(new_rows)
    h = {k: np.asarray(v).tolist() for k, v in c.ga["history"].items()}
    st.prog.update(rounds=rnd + 1, exported=st.n_done)
    st.prog["history"].append(dict(round=rnd, **h))
    for k, v in reasons.items():
        st.prog["rejected"][k] = st.prog["rejected"].get(k, 0) + v
    write_text_atomic(ex.prog_path, json.dumps(ex.progress))
    if h["max"]:
        best, gen0 = float(c.ga["best_fitness"]), f"gen 0 max {h['max'][0]:.4f}"
    else:  # generations 0: the initial population only (a filter of the starting latents)
        best, gen0 = float(np.max(np.nan_to_num(c.fitness, nan=-np.inf))), "0 generations"
    logger.info(f"evolve: {st.task.name} round {rnd}: best fitness {best:.4f} "
                f"({gen0}), exported {len(accepted)} -> {st.n_done}/"
                f"{ex.cfg.num_per_class}, rejected {reasons or 'none'} [{time.time() - t0:.1f}s]")


def _select(cfg: ExportConfig, st: _ClassState, c: _Candidates) -> Tuple[List[int], Dict[str, int]]:
    """The candidates to export, best fitness first (at most per_round), and why others were not."""
    want = min(cfg.per_round, cfg.num_per_class - st.n_done)
    accepted: List[int] = []
    reasons: Dict[str, int] = {}
    for i in np.argsort(-np.nan_to_num(c.fitness, nan=-np.inf), kind="stable"):
        if len(accepted) >= want:
            break
        why = _reject_reason(int(i), c, st, cfg, accepted)
        if why:
            reasons[why] = reasons.get(why, 0) + 1
        else:
            accepted.append(int(i))
    return accepted, reasons


def _reject_reason(i: int, c: _Candidates, st: _ClassState, cfg: ExportConfig,
                   accepted: List[int]) -> str:
    """'' when candidate i passes every export check, else the name of the first it fails."""
    if not np.isfinite(c.fitness[i]):
        return "fitness_not_finite"
    identity = st.task.scorer.term("identity")
    if identity is not None:
        if not c.values["identity_ok"][i]:
            return "identity_not_embedded"
        if not c.values["identity_distance"][i] > _identity_threshold(st.task):
            return "identity_too_close_to_real"
    if cfg.require_class and st.task.target is not None and "predicted_class" in c.values:
        if int(c.values["predicted_class"][i]) != st.task.target:
            return "classifier_disagrees"
    others = [st.bank[st.bank_ok]] + ([c.feats[np.asarray(accepted, int)]] if accepted else [])
    others = np.concatenate(others)
    if len(others) and np.min(np.linalg.norm(others - c.feats[i], axis=1)) <= cfg.min_diversity:
        return "too_similar_to_exported"
    return ""


def _write_accepted(ex: OpenExport, st: _ClassState, c: _Candidates, rnd: int,
                    accepted: List[int]) -> List[dict]:
    """Write the accepted candidates' PNGs and latents; their metadata rows."""
    task, rows = st.task, []
    ws = task.scorer.decoder.latents(c.genomes[np.asarray(accepted, int)], c.inputs) if accepted else []
    for rank, (i, w) in enumerate(zip(accepted, ws)):
        stem = f"{task.name}_{st.n_done:05d}"
        save_png_atomic(inside(ex.out, st.cdir / f"{stem}.png"), to_uint8(c.images[i]))
        np.save(inside(ex.out, st.ldir / f"{stem}.npy"), w.astype(np.float32))
        rows.append(_row(task, stem, rnd, rank, i, c, ex.ga_cfg, ex.cfg))
        st.add(c.feats[i])
    return rows


def _row(task: ClassTask, stem: str, rnd: int, rank: int, i: int, c: _Candidates,
         ga_cfg: GAConfig, cfg: ExportConfig) -> dict:
    """The metadata.jsonl row of candidate i, exported as <class>/<stem>.png."""
    r = dict(file=f"{task.name}/{stem}.png", class_name=task.name, round=rnd, rank=rank,
             fitness=_json_num(c.fitness[i]),
             terms={t.name: _json_num(c.values[t.name][i]) for t in task.scorer.terms},
             latent=f"latents/{task.name}/{stem}.npy", latent_space=task.scorer.decoder.latent_space,
             generator=task.generator, seed=cfg.seed, start_psi=cfg.psi,
             ga=dict(strategy=ga_cfg.strategy, popsize=ga_cfg.popsize,
                     generations=ga_cfg.generations, crossover=ga_cfg.crossover))
    identity = task.scorer.term("identity")
    if identity is not None:
        j = int(c.values["identity_index"][i])
        r["identity"] = dict(nearest_real_distance=_json_num(c.values["identity_distance"][i]),
                             nearest_real_file=task.ref_files[j] if 0 <= j < len(task.ref_files) else None,
                             threshold=_identity_threshold(task),
                             embedder=task.identity_name or identity.embedder_name)
        if task.near_copy is not None and task.near_copy.calibration is not None:
            r["identity"]["calibration"] = task.near_copy.calibration_summary()
    if "predicted_class" in c.values:
        r["classifier"] = dict(target=task.target, predicted=int(c.values["predicted_class"][i]),
                               confidence=_json_num(c.values["class"][i]))
    return r


def _plot_fitness(out_dir: pathlib.Path, progress: Dict[str, Any], names: List[str]) -> None:
    """fitness.png: per class, the max (-) and mean (--) fitness per generation of every round."""
    import matplotlib  # heavy, optional: only here
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4 * max(1, len(names)), 3.2),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        for h in progress.get(name, {}).get("history", []):
            line, = ax.plot(h["max"], lw=1)
            ax.plot(h["mean"], lw=0.8, ls="--", color=line.get_color())
        ax.set_title(f"{name}: max (-) / mean (--) per round", fontsize=9)
        ax.set_xlabel("generation")
        ax.set_ylabel("fitness")
    fig.tight_layout()
    fig.savefig(out_dir / "fitness.png", dpi=90)
    plt.close(fig)


def _write_preview(out_dir: pathlib.Path, rows: List[dict], names: List[str]) -> None:
    """preview.png: one row per class of its first exported images (at most 16 columns)."""
    cols = max(1, max((sum(r["class_name"] == n for r in rows) for n in names), default=1))
    cols = min(cols, 16)
    grid = []
    for n in names:
        files = [r["file"] for r in rows if r["class_name"] == n][:cols]
        ims = [np.asarray(Image.open(out_dir / f)) for f in files]
        if not ims:
            continue
        ims = [im[..., None] if im.ndim == 2 else im for im in ims]
        ims += [np.zeros_like(ims[0])] * (cols - len(ims))
        grid.append(np.concatenate(ims, axis=1))
    if grid:
        save_png_atomic(out_dir / "preview.png", np.concatenate(grid, axis=0))
