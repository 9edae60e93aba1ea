"""The export loop of `jaxgen.workflows.generate`: candidates generated `batch` at a time, each
checked against the real training faces, written as numbered PNGs per class.

Candidate i of class c always comes from the latent seed (seed, c, i) (of the unconditional
stream, (seed, i)), so a rerun reproduces every image and resumes where it stopped. `export_plain`
keeps each class's first candidates that pass the identity check; `export_labelled` (--label_by)
first draws and classifies whole pools and picks the kept candidates, all before anything is
written (acceptance.json records the picking). `write_datasheet` describes the written export.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from jaxgen.errors import ConfigError
from jaxgen.identity.search import IdentityCheck
from jaxgen.runs import Run
from jaxgen.utils.files import inside, png_complete, save_png_atomic, write_text_atomic
from jaxgen.utils.images import to_uint8
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import claim_output
from jaxgen.utils.progress import Progress
from jaxgen.workflows.datasheet import datasheet_for_export
from jaxgen.workflows.generate_checks import Checks
from jaxgen.workflows.generate_labels import LabelRule, Teacher, qualifying, short_message
from jaxgen.workflows.generate_records import (OUTPUT_KIND, legacy_output, remove_unlisted, store_settings,
                                               write_metadata)


@dataclasses.dataclass
class Export:
    """One export's inputs, shared by the plain and the labelled writers."""

    g: Run
    out_dir: pathlib.Path
    picked: List[Tuple[int, str]]
    checks: Checks
    n: int                     # images per class
    psi: float
    seed: int
    batch: int
    progress_every: float
    checkpoint: str
    settings: Dict[str, Any]

    def claim(self) -> None:
        """Create/stamp the output folder with the settings: the first write."""
        claim_output(self.out_dir, OUTPUT_KIND, legacy=legacy_output)
        store_settings(self.out_dir, self.settings)


def export_plain(e: Export, max_tries: float) -> dict:
    """A conditional generator's export: candidate i of class c from seed (seed, c, i), the first
    num_per_class that pass the identity check."""
    e.claim()
    bar = Progress(e.n * len(e.picked), "generate: images", every=e.progress_every)
    records, refused, written = {}, {}, 0
    for ci, name in e.picked:
        w = _Writer(e.g, inside(e.out_dir, e.out_dir / name), name, ci, e.checks.identity, e.psi, e.seed,
                    e.batch)
        got = w.run(e.n, int(np.ceil(max_tries * e.n)), bar)
        records.update(got)
        refused[name], written = w.refused, written + w.new
        logger.info(f"generate: {name}: {e.n} images ({w.new} new), {w.refused} candidates "
                    f"refused within {e.checks.identity.threshold:g} of a real face")
    rows = write_metadata(e.out_dir, e.picked, records, e.psi, e.seed, e.checkpoint)
    return dict(out=str(e.out_dir), written=written, total=len(rows), classes=[n for _, n in e.picked],
                refused=refused)


def write_datasheet(e: Export, net, result: dict) -> dict:
    """The export's datasheet beside its images; logs its privacy numbers."""
    meta = dict(generator=e.checkpoint, psi=e.psi, seed=e.seed, real_train=e.checks.source,
                refused_near_copies=result["refused"])
    if "acceptance" in result:
        meta.update(teacher=e.settings["label_by"], label_rule=e.settings["rule"],
                    kept={n: a["kept"] for n, a in result["acceptance"]["per_class"].items()})
    sheet = datasheet_for_export(e.out_dir, e.checks.train, e.checks.holdout, net, e.checks.identity, meta,
                                 feature_classifier=e.settings["label_by"] or None)
    logger.info(f"generate: datasheet: membership AUC {sheet['privacy']['membership_auc']:.3f}, DCR ratio "
                f"{sheet['privacy']['dcr']['ratio']:.3f} -> {e.out_dir / 'datasheet.md'}")
    return sheet


def _latents(z_dim: int, seed: int, ci: Optional[int], ids: Sequence[int]) -> np.ndarray:
    """Latents float32 [len(ids), z_dim]: candidate i of class ci from the seed (seed, ci, i), of the
    unconditional stream (ci None) from (seed, i); re-runs reproduce every image."""
    key = (lambda i: [seed, i]) if ci is None else (lambda i: [seed, ci, i])
    return np.stack([np.random.default_rng(key(i)).standard_normal(z_dim) for i in ids]).astype(np.float32)


def _draw_pool(e: Export, teacher: Teacher, ci: Optional[int], size: int, bar: Progress) -> np.ndarray:
    """Teacher probabilities float32 [size, K] of candidates 0..size-1 of one latent stream (class ci,
    or the unconditional one for None), generated `batch` at a time; the images are dropped."""
    probs = np.zeros((size, len(teacher.names)), np.float32)
    for s in range(0, size, e.batch):
        ids = list(range(s, min(s + e.batch, size)))
        imgs = to_uint8(e.g.generate(_latents(e.g.z_dim, e.seed, ci, ids), np.full(len(ids), ci or 0), e.psi))
        probs[s:s + len(ids)] = teacher.probs(imgs)
        bar.update(len(ids))
    return probs


def export_labelled(e: Export, teacher: Teacher, rule: LabelRule) -> dict:
    """--label_by: draw and classify the pool(s), pick each class's kept candidates (identity
    check included) and check that every class is filled, all before anything is written; then
    write the kept images, metadata.jsonl and acceptance.json."""
    uncond, k_all = not e.g.num_classes, len(teacher.names)
    size = int(np.ceil(rule.pool_multiple * e.n * (k_all if uncond else 1)))
    bar = Progress(size * (1 if uncond else len(e.picked)), "generate: candidates", every=e.progress_every)
    pools = {None: _draw_pool(e, teacher, None, size, bar)} if uncond else \
        {ci: _draw_pool(e, teacher, ci, size, bar) for ci, _ in e.picked}
    orders = {ci: qualifying(pools[None if uncond else ci], ci, rule) for ci, _ in e.picked}
    for ci, name in e.picked:
        if len(orders[ci]) < e.n and not rule.allow_short:
            raise ConfigError(short_message(name, len(orders[ci]), size, e.n, rule))
    bar = Progress(sum(min(e.n, len(o)) for o in orders.values()), "generate: identity-checked images",
                   every=e.progress_every)
    writers, kept = {}, {}
    for ci, name in e.picked:
        writers[ci] = _LabelWriter(e, teacher, name, None if uncond else ci)
        kept[ci] = writers[ci].select(orders[ci], e.n, bar)
        if len(kept[ci]) < e.n and not rule.allow_short:
            raise ConfigError(short_message(name, len(kept[ci]), size, e.n, rule, writers[ci].refused))
    e.claim()
    bar = Progress(sum(len(k) for k in kept.values()), "generate: writing images", every=e.progress_every)
    records, acceptance = {}, {}
    for ci, name in e.picked:
        got = writers[ci].write(kept[ci], bar)
        records.update(got)
        pool = pools[None if uncond else ci]
        acceptance[name] = _acceptance_row(pool, ci, orders[ci], got, writers[ci], e.n, teacher.names)
    rows = write_metadata(e.out_dir, e.picked, records, e.psi, e.seed, e.checkpoint, teacher.path)
    report = _write_acceptance(e, teacher, rule, size, acceptance)
    return dict(out=str(e.out_dir), written=sum(a["new"] for a in acceptance.values()), total=len(rows),
                classes=[n for _, n in e.picked], acceptance=report,
                refused={n: a["refused_identity"] for n, a in acceptance.items()},
                short={n: a["kept"] for n, a in acceptance.items() if a["short"]})


def _acceptance_row(probs: np.ndarray, k: int, order: np.ndarray, got: Dict[str, dict], w: "_LabelWriter",
                    want: int, names: Sequence[str]) -> dict:
    """One class's acceptance: candidates drawn, their argmax counts per class, how many had argmax k,
    qualified, were kept (and wanted), the mean p_k of the kept, refused by the identity check."""
    kept_conf = [rec["teacher_probs"][k] for rec in got.values()]
    counts = np.bincount(probs.argmax(-1), minlength=len(names))
    return dict(drawn=int(len(probs)), argmax_counts={n: int(c) for n, c in zip(names, counts)},
                argmax=int(counts[k]), qualifying=int(len(order)), kept=len(got), wanted=int(want),
                mean_conf_kept=float(np.mean(kept_conf)) if kept_conf else None,
                refused_identity=int(w.refused), new=int(w.new), short=len(got) < want)


def _write_acceptance(e: Export, teacher: Teacher, rule: LabelRule, size: int, per_class: dict) -> dict:
    """Log one acceptance line per class and write acceptance.json into the export root."""
    for name, a in per_class.items():
        conf = "-" if a["mean_conf_kept"] is None else f"{a['mean_conf_kept']:.3f}"
        logger.info(f"generate: acceptance {name}: {a['drawn']} drawn, argmax {a['argmax']}, qualifying "
                    f"{a['qualifying']}, kept {a['kept']}/{a['wanted']} (mean confidence {conf}), "
                    f"{a['refused_identity']} refused by the identity check"
                    + (" -- SHORT (--allow_short)" if a["short"] else ""))
    report = dict(teacher=teacher.path, generator=e.checkpoint, unconditional=not e.g.num_classes,
                  class_names=list(teacher.names), pool_per_stream=size, **dataclasses.asdict(rule),
                  per_class=per_class)
    old = e.out_dir / "acceptance.json"   # classes of an earlier call with other --classes stay listed
    try:
        report["per_class"] = {**json.loads(old.read_text()).get("per_class", {}), **per_class}
    except (OSError, ValueError, AttributeError):
        pass
    write_text_atomic(old, json.dumps(report, indent=1) + "\n")
    return report


class _Writer:
    """Candidates i = 0, 1, ... of one class, `batch` at a time, until `want` pass the identity
    check: a file already there is re-checked (and removed if it fails), a new one generated.
    ci None: the unconditional stream (latent seed (seed, i))."""

    def __init__(self, g: Run, cdir: pathlib.Path, name: str, ci: Optional[int], check: IdentityCheck,
                 psi: float, seed: int, batch: int):
        self.g, self.cdir, self.name, self.ci, self.check = g, cdir, name, ci, check
        self.psi, self.seed, self.batch = psi, seed, batch
        self.new = self.refused = 0

    def _images(self, ids: List[int]) -> Tuple[np.ndarray, set]:
        """(uint8 [len(ids), H, W, C], positions read from disk): the PNG on disk where complete,
        else generated now."""
        paths = [self.cdir / f"{self.name}_{i:05d}.png" for i in ids]
        todo = [k for k, p in enumerate(paths) if not png_complete(p)]
        out = [None] * len(ids)
        if todo:
            z = _latents(self.g.z_dim, self.seed, self.ci, [ids[k] for k in todo])
            labels = np.full(len(todo), self.ci or 0)
            for k, img in zip(todo, to_uint8(self.g.generate(z, labels, self.psi))):
                out[k] = img
        for k, p in enumerate(paths):
            if out[k] is None:
                with Image.open(p) as im:
                    a = np.asarray(im)
                out[k] = a[..., None] if a.ndim == 2 else a
        return np.stack(out), {k for k in range(len(ids)) if k not in todo}

    def run(self, want: int, most: int, bar: Progress) -> Dict[str, dict]:
        """{file: identity record} of the first `want` candidates that pass; ConfigError when
        `most` candidates leave fewer. The class folder then holds exactly these images: files of
        an earlier run at candidate numbers not reached now, or written before a crash and never
        listed, are removed (`remove_unlisted`)."""
        self.cdir.mkdir(exist_ok=True)
        records: Dict[str, dict] = {}
        i = 0
        while len(records) < want:
            if i >= most:
                raise ConfigError(
                    f"generate: {self.name}: only {len(records)} of {i} candidates passed the identity "
                    f"check ({self.refused} within {self.check.threshold:g} of a training face by "
                    f"{self.check.name}): this generator reproduces its training faces. Retrain it "
                    "(more faces, fewer kimg, ADA) or raise --max_tries to keep drawing")
            ids = list(range(i, min(i + self.batch, most)))
            imgs, on_disk = self._images(ids)
            result, before = self.check.check(imgs), len(records)
            for k, idx in enumerate(ids):
                path = self.cdir / f"{self.name}_{idx:05d}.png"
                if not result["passed"][k]:
                    self.refused += 1
                    path.unlink(missing_ok=True)    # a kept file that no longer passes
                elif len(records) < want:
                    if k not in on_disk:
                        save_png_atomic(path, imgs[k])
                        self.new += 1
                    records[f"{self.name}/{path.name}"] = dict(self.check.record(result, k), latent_index=idx)
            bar.update(len(records) - before)
            i = ids[-1] + 1
        remove_unlisted(self.cdir, self.name, [f.split("/", 1)[1] for f in records])
        return records


class _LabelWriter(_Writer):
    """One class of a --label_by export. `select` tries the qualifying candidates in order (a PNG
    on disk re-checked, else rendered again from its seed) and keeps the first `want` that pass the
    identity check, writing nothing; `write` then saves them (rendered once more) with the teacher's
    softmax of the written image."""

    def __init__(self, e: Export, teacher: Teacher, name: str, ci: Optional[int]):
        super().__init__(e.g, inside(e.out_dir, e.out_dir / name), name, ci, e.checks.identity, e.psi, e.seed,
                         e.batch)
        self.teacher = teacher

    def select(self, order: Sequence[int], want: int, bar: Progress) -> Dict[int, dict]:
        """{candidate id: identity record} of the kept candidates (<= want), in the order tried."""
        kept: Dict[int, dict] = {}
        for s in range(0, len(order), self.batch):
            if len(kept) >= want:
                break
            ids = [int(i) for i in order[s:s + self.batch]]
            result, before = self.check.check(self._images(ids)[0]), len(kept)
            for k, idx in enumerate(ids):
                if len(kept) >= want:
                    break
                if result["passed"][k]:
                    kept[idx] = self.check.record(result, k)
                else:
                    self.refused += 1
            bar.update(len(kept) - before)
        return kept

    def write(self, kept: Dict[int, dict], bar: Progress) -> Dict[str, dict]:
        """Save the kept candidates missing on disk (other numbered PNGs of the class, left by an
        interrupted run, are removed); {file: record (identity, latent_seed, teacher_probs)}."""
        self.cdir.mkdir(exist_ok=True)
        records: Dict[str, dict] = {}
        ids = sorted(kept)
        for s in range(0, len(ids), self.batch):
            part = ids[s:s + self.batch]
            imgs, on_disk = self._images(part)
            probs = self.teacher.probs(imgs)
            for k, idx in enumerate(part):
                path = self.cdir / f"{self.name}_{idx:05d}.png"
                if k not in on_disk:
                    save_png_atomic(path, imgs[k])
                    self.new += 1
                seed = [self.seed, idx] if self.ci is None else [self.seed, self.ci, idx]
                records[f"{self.name}/{path.name}"] = dict(kept[idx], latent_seed=seed,
                                                           teacher_probs=[float(p) for p in probs[k]])
            bar.update(len(part))
        remove_unlisted(self.cdir, self.name, [f.split("/", 1)[1] for f in records])
        return records
