"""Evolve latents per class and export an anonymous image-folder dataset (evolve.py's engine).

For each class, repeated GA *rounds* (one jitted ``run_ga`` each) start from a
fresh truncated latent, evolve a population under ``fitness.Scorer``, then the
final population (plus the best-ever genome) is scored once more and the best
candidates that pass every export check are written:

  identity   nearest real training face farther than the embedder's threshold
             (de-identification); a face the embedder cannot embed is rejected
  class      (``require_class``) the classifier's top class is the target
  diversity  nearest pixel-feature distance to every image already exported
             for the class (and in this round) above ``min_diversity``
  finite     fitness is not NaN

Layout of ``out``::

  <class>/<class>_00000.png        images (grayscale or RGB as the generator)
  latents/<class>/<class>_00000.npy  the image's w+ styles, float32 [num_ws, w_dim]
  metadata.jsonl                   one JSON line per image: file, class, round,
                                   fitness and every term, nearest real identity
                                   (distance, file, embedder, threshold), class
                                   prediction, latent file, generator, seed
  progress.json                    rounds finished per class (resume point)
  evolve.json                      settings, per-class counts, rejections, histories
  fitness.png, preview.png         GA curves per class; a grid of exported images

Resumable: a round's images, latents and metadata are written before its
``progress.json`` entry; on restart, metadata rows of unfinished rounds are
dropped and those rounds re-run (deterministic: the key of round r of class k
is ``fold_in(fold_in(seed, k), r)``). Every path is checked to stay in ``out``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time
from typing import Any, Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxgen.evolve import fitness as F
from jaxgen.evolve.ga import GAConfig, run_ga
from jaxgen.evolve.identity import pixel_features
from jaxgen.utils.files import inside as _inside
from jaxgen.utils.images import to_uint8


@dataclasses.dataclass
class ClassTask:
    """Everything the export needs for one class (built by ``jaxgen.evolve.tasks``)."""

    name: str
    scorer: F.Scorer
    aux: Dict[str, Any]               # fitness data (weights, refs); 'bank' is added here
    c_onehot: Optional[np.ndarray]     # generator label, None if unconditional
    target: Optional[int]              # classifier index of this class (None: no classifier)
    generator: str                     # where G came from (for the metadata)
    ref_files: List[str]               # identity references, for nearest-face metadata
    identity_name: str = ""            # the identity embedder's name, for the metadata


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    num_per_class: int = 16
    per_round: int = 4
    max_rounds: int = 0               # 0: 4 * ceil(num_per_class / per_round)
    psi: float = 0.7                  # truncation of each round's starting latent
    seed: int = 0
    require_class: bool = True
    min_diversity: float = 0.05
    bank_size: int = 1024


@functools.partial(jax.jit, static_argnames="size")
def _features(img, size: int):
    """Diversity features of images in [-1, 1]: (unit vectors [N, size*size*3], ok [N])."""
    return pixel_features(img, size, scale=0.5)


def _atomic_write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _read_jsonl(path: pathlib.Path) -> List[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: its round is redone
                pass
    return rows


def _save_png(path: pathlib.Path, img: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(tmp)
    tmp.replace(path)


def _json_num(x):
    x = float(x)
    return None if math.isnan(x) else x


def evolve_dataset(tasks: List[ClassTask], ga_cfg: GAConfig, cfg: ExportConfig, out: str,
                   settings: Optional[dict] = None, log: Callable[[str], None] = print) -> dict:
    """Run the GA rounds for every class task and export; returns the summary (evolve.json)."""
    out_dir = pathlib.Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path, prog_path = out_dir / "metadata.jsonl", out_dir / "progress.json"
    progress = json.loads(prog_path.read_text()) if prog_path.exists() else {}
    rows = [r for r in _read_jsonl(meta_path)
            if r.get("round", 0) < progress.get(r.get("class_name"), {}).get("rounds", 0)]
    _atomic_write(meta_path, "".join(json.dumps(r) + "\n" for r in rows))
    max_rounds = cfg.max_rounds or 4 * math.ceil(cfg.num_per_class / cfg.per_round)
    summary = dict(settings=settings or {}, classes={}, out=str(out_dir))
    for ci, task in enumerate(tasks):
        cdir = _inside(out_dir, out_dir / task.name)
        ldir = _inside(out_dir, out_dir / "latents" / task.name)
        cdir.mkdir(parents=True, exist_ok=True)
        ldir.mkdir(parents=True, exist_ok=True)
        mine = [r for r in rows if r["class_name"] == task.name]
        prog = progress.setdefault(task.name, dict(rounds=0, exported=0, rejected={}, history=[]))
        feat_fn = functools.partial(_features, size=task.scorer.cfg.feature_size)
        bank = np.zeros((cfg.bank_size, task.scorer.cfg.feature_size ** 2 * 3), np.float32)
        bank_ok = np.zeros(cfg.bank_size, bool)
        for j, r in enumerate(mine[:cfg.bank_size]):  # resume: features of exported images
            im = np.asarray(Image.open(out_dir / r["file"]), np.float32)
            im = im[..., None] if im.ndim == 2 else im
            bank[j] = np.asarray(feat_fn(im[None] / 127.5 - 1.0)[0][0])
            bank_ok[j] = True
        n_done = len(mine)
        terms_fn = F.jit_terms(task.scorer)
        t_class = time.time()
        while n_done < cfg.num_per_class and prog["rounds"] < max_rounds:
            rnd = prog["rounds"]
            t0 = time.time()
            key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), ci), rnd)
            k_z, k_ga = jax.random.split(key)
            aux = dict(task.aux, bank=jnp.asarray(bank), bank_ok=jnp.asarray(bank_ok))
            dec = task.scorer.decoder
            z = jax.random.normal(k_z, (1, dec.z_dim))
            x0 = dec.seed(z, aux, task.c_onehot, cfg.psi)[0]
            if task.scorer.mesh is not None:  # replicate the inputs over the population's mesh
                rep = jax.sharding.NamedSharding(task.scorer.mesh, jax.sharding.PartitionSpec())
                x0, k_ga, aux = jax.device_put((x0, k_ga, aux), rep)
            res = run_ga(task.scorer.fitness, x0, k_ga, ga_cfg, aux)
            cand = jnp.concatenate([res["best_x"][None], res["final_population"]])
            terms, imgs = terms_fn(cand, aux)
            terms = {k: np.asarray(v) for k, v in terms.items()}
            fit = np.asarray(task.scorer.total(terms))
            imgs = np.clip(np.asarray(imgs, np.float32), -1.0, 1.0)
            feats = np.asarray(feat_fn(imgs)[0])
            accepted, reasons = [], {}
            for i in np.argsort(-np.nan_to_num(fit, nan=-np.inf), kind="stable"):
                if len(accepted) >= min(cfg.per_round, cfg.num_per_class - n_done):
                    break
                why = _reject_reason(i, fit, terms, task, cfg, feats, bank, bank_ok, accepted)
                if why:
                    reasons[why] = reasons.get(why, 0) + 1
                else:
                    accepted.append(int(i))
            new_rows = []
            ws = dec.latents(cand[np.asarray(accepted, int)], aux) if accepted else []
            for rank, (i, w) in enumerate(zip(accepted, ws)):
                stem = f"{task.name}_{n_done:05d}"
                _save_png(_inside(out_dir, cdir / f"{stem}.png"), to_uint8(imgs[i]))
                np.save(_inside(out_dir, ldir / f"{stem}.npy"), w.astype(np.float32))
                new_rows.append(_row(task, stem, rnd, rank, i, fit, terms, ga_cfg, cfg))
                if n_done < cfg.bank_size:
                    bank[n_done], bank_ok[n_done] = feats[i], True
                n_done += 1
            with open(meta_path, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in new_rows))
            rows.extend(new_rows)
            h = {k: np.asarray(v).tolist() for k, v in res["history"].items()}
            prog.update(rounds=rnd + 1, exported=n_done)
            prog["history"].append(dict(round=rnd, **h))
            for k, v in reasons.items():
                prog["rejected"][k] = prog["rejected"].get(k, 0) + v
            _atomic_write(prog_path, json.dumps(progress))
            log(f"evolve: {task.name} round {rnd}: best fitness {float(res['best_fitness']):.4f} "
                f"(gen 0 max {h['max'][0]:.4f}), exported {len(accepted)} -> {n_done}/"
                f"{cfg.num_per_class}, rejected {reasons or 'none'} [{time.time() - t0:.1f}s]")
        if n_done < cfg.num_per_class:
            log(f"evolve: WARNING {task.name}: only {n_done}/{cfg.num_per_class} images after "
                f"{prog['rounds']} rounds (max_rounds={max_rounds}); rejections: {prog['rejected']}. "
                "Raise --config.max_rounds or relax the checks.")
        summary["classes"][task.name] = dict(exported=n_done, rounds=prog["rounds"],
                                             rejected=prog["rejected"],
                                             seconds=round(time.time() - t_class, 1))
    _atomic_write(out_dir / "evolve.json", json.dumps(summary, indent=1))
    _plots(out_dir, progress, rows, [t.name for t in tasks])
    return summary


def _reject_reason(i, fit, terms, task: ClassTask, cfg: ExportConfig, feats, bank, bank_ok,
                   accepted) -> str:
    if not np.isfinite(fit[i]):
        return "fitness_not_finite"
    if "identity_ok" in terms:
        if not terms["identity_ok"][i]:
            return "identity_not_embedded"
        if not terms["identity_distance"][i] > task.scorer.identity[2]:
            return "identity_too_close_to_real"
    if cfg.require_class and task.target is not None and "predicted_class" in terms:
        if int(terms["predicted_class"][i]) != task.target:
            return "classifier_disagrees"
    others = [bank[bank_ok]] + ([feats[np.asarray(accepted, int)]] if accepted else [])
    others = np.concatenate(others) if others else np.zeros((0, feats.shape[1]), np.float32)
    if len(others) and np.min(np.linalg.norm(others - feats[i], axis=1)) <= cfg.min_diversity:
        return "too_similar_to_exported"
    return ""


def _row(task: ClassTask, stem: str, rnd: int, rank: int, i: int, fit, terms, ga_cfg: GAConfig,
         cfg: ExportConfig) -> dict:
    r = dict(file=f"{task.name}/{stem}.png", class_name=task.name, round=rnd, rank=rank,
             fitness=_json_num(fit[i]),
             terms={k: _json_num(terms[k][i]) for k in F.TERMS if k in terms},
             latent=f"latents/{task.name}/{stem}.npy", latent_space=task.scorer.decoder.latent_space,
             generator=task.generator, seed=cfg.seed, start_psi=cfg.psi,
             ga=dict(strategy=ga_cfg.strategy, popsize=ga_cfg.popsize,
                     generations=ga_cfg.generations, crossover=ga_cfg.crossover))
    if "identity_ok" in terms:
        j = int(terms["identity_index"][i])
        r["identity"] = dict(nearest_real_distance=_json_num(terms["identity_distance"][i]),
                             nearest_real_file=task.ref_files[j] if 0 <= j < len(task.ref_files) else None,
                             threshold=float(task.scorer.identity[2]),
                             embedder=task.identity_name or task.scorer.identity[0])
    if "predicted_class" in terms:
        r["classifier"] = dict(target=task.target, predicted=int(terms["predicted_class"][i]),
                               confidence=_json_num(terms["class"][i]))
    return r


def _plots(out_dir: pathlib.Path, progress: dict, rows: List[dict], names: List[str]) -> None:
    import matplotlib
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
    cols = max(1, max((sum(r["class_name"] == n for r in rows) for n in names), default=1))
    cols = min(cols, 16)
    grid = []
    for n in names:
        files = [r["file"] for r in rows if r["class_name"] == n][:cols]
        ims = [np.asarray(Image.open(out_dir / f)) for f in files]
        if not ims:
            continue
        ims = [im[..., None] if im.ndim == 2 else im for im in ims]
        while len(ims) < cols:
            ims.append(np.zeros_like(ims[0]))
        grid.append(np.concatenate(ims, axis=1))
    if grid:
        img = np.concatenate(grid, axis=0)
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(out_dir / "preview.png")
