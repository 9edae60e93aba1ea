"""`make demo`: the product's main job on the embedded demo faces: a labelled synthetic dataset
from a tiny StyleGAN2-ADA, and how far a classifier that did not pick it agrees with its labels.

  python -m jaxgen demo --workdir runs/demo [--set train.total_kimg=4]

Steps (each resumes; a finished one is skipped):

  gan, sorter, export   `jaxgen.workflows.labelled` with the :tiny configs: an unconditional
                        GAN on the real demo faces (gan/, its networks in snapshots/), a
                        classifier of the same real faces (cls_real/, the sorter), and 128
                        faces per class, the sorter's most confident of an 8x pool, each past
                        the near-copy check, with metadata.jsonl and a datasheet   synthetic/
  judge                 a second classifier, trained on other real demo faces (rendered
                        with seed + 2000, never seen by the GAN or the sorter)      judge/
  fidelity              the share of each class's exported faces the judge puts in that
                        class (chance 1/4): fidelity.json, fidelity.md, samples.png

Why an unconditional GAN labelled by a classifier: on a few hundred faces per class a
conditional GAN of this size draws its healthy faces with a reddish centre that a classifier
of the real faces reads as mild (bench/RESULTS.md, issue 27 study: class fidelity 0.57 at
16 kimg, healthy 0.16), while the labelled method's exports train better classifiers. The
judge is not the sorter, so the fidelity is not true by construction.
"""
from __future__ import annotations

import copy
import json
import pathlib
from typing import Any, Dict, Optional, Sequence

import numpy as np

from jaxgen.classifiers.evaluate import predict
from jaxgen.classifiers.sorting import fidelity_from_probs
from jaxgen.classifiers.train import train_classifier
from jaxgen.config import load_config
from jaxgen.data import load_image_folder
from jaxgen.runs import open_run
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.images import save_grid
from jaxgen.utils.logger import logger
from jaxgen.workflows.labelled import run_labelled

OUTPUT_KIND = "demo-labelled"      # runs/demo of the conditional demo (kind 'demo') is refused
# Candidates per kept face: at 16 kimg about 1 in 16 samples is labelled healthy (125 of a
# 4x pool of 2048 in a fresh-clone run, 128 wanted), as in the utility benchmark's pool of 8x.
REPO = pathlib.Path(__file__).resolve().parents[2]
GAN, CLASSIFIER = f"{REPO}/configs/acne.py:tiny", f"{REPO}/configs/acne_classifier.py:tiny"
JUDGE_SEED_OFFSET = 2000


def fidelity_table(fid: Dict[str, Any]) -> str:
    """Markdown: per class, the share of exported faces the judge puts in it, and its votes."""
    names = list(fid["per_class"])
    lines = ["| exported as | judged as that class | mean confidence | " + " | ".join(names) + " |",
             "| --- | ---: | ---: |" + " ---: |" * len(names)]
    for n, r in fid["per_class"].items():
        votes = " | ".join(str(r["predicted"].get(m, 0)) for m in names)
        lines.append(f"| {n} | {r['accuracy']:.3f} | {r['mean_conf']:.3f} | {votes} |")
    lines.append(f"| **mean** | **{fid['accuracy']:.3f}** (chance {fid['chance']:.3f}) | | " + " | " * (len(names) - 1) + "|")
    return "\n".join(lines) + "\n"


def judge_config(cls_cfg: Any, gan_cfg: Any) -> Any:
    """The classifier config on another render of the real demo faces: the GAN's data settings
    with `<path>_judge` and seed + JUDGE_SEED_OFFSET, so the judge shares no face with the GAN's
    training set, the sorter's, or the held-out `_test` render (seed + 1000)."""
    c = copy.deepcopy(cls_cfg)
    for k in ("source", "resolution", "num_per_class", "demo_version", "classes"):
        if k in gan_cfg.data:
            c.data[k] = gan_cfg.data[k]
    c.data.path = f"{gan_cfg.data.path}_judge"
    c.data.seed = int(gan_cfg.data.seed) + JUDGE_SEED_OFFSET
    return c


def judge_export(judge_dir: pathlib.Path, export_dir: pathlib.Path, out: pathlib.Path, cols: int = 8) -> Dict[str, Any]:
    """The judge's fidelity on every exported face (fidelity.json / .md) and samples.png: the
    first `cols` exported faces of each class, labelled with their class's fidelity."""
    judge = open_run(str(judge_dir), kinds=("classifier",))
    ds = load_image_folder(str(export_dir), judge.resolution, judge.channels, require_labels=True, cache_dir=None)
    probs = predict(judge.model, judge.variables, ds.images)
    fid = fidelity_from_probs(probs, np.asarray(ds.labels), list(ds.class_names), list(judge.class_names))
    fid.update(judge=str(judge_dir), export=str(export_dir), num_images=int(len(ds.labels)))
    write_text_atomic(out / "fidelity.json", json.dumps(fid, indent=1))
    write_text_atomic(out / "fidelity.md", "# Class fidelity of the demo's synthetic faces\n\nThe exported "
                      "faces of each class, classified by a judge trained on other real demo faces (not the "
                      "sorter that labelled them).\n\n" + fidelity_table(fid))
    rows, labels = [], []
    for ci, name in enumerate(ds.class_names):
        rows.append(ds.images[np.asarray(ds.labels) == ci][:cols])
        labels.append(f"{name} {fid['per_class'][name]['accuracy']:.0%}")
    save_grid(np.concatenate(rows), out / "samples.png", cols=cols, drange=(0, 255), row_labels=labels)
    return fid


def run_demo(workdir: str, overrides: Sequence[str] = (), gan: str = GAN,
             classifier: str = CLASSIFIER, classifier_overrides: Sequence[str] = (),
             pool_multiple: float = 8.0, sorter: str = "", classes: Optional[Sequence[str]] = None
             ) -> Dict[str, Any]:
    """The steps of the module docstring; returns the fidelity dict (fidelity.json). For tests:
    the config specs, a given `sorter` run, and `classes` (a subset of the demo's severities)."""
    gan_cfg = load_config(gan, overrides)
    cls_cfg = load_config(classifier, classifier_overrides)
    if classes is not None:
        gan_cfg.data.classes = tuple(classes)
    r = run_labelled(gan_cfg, cls_cfg, workdir, pool_multiple=pool_multiple, sorter=sorter, kind=OUTPUT_KIND)
    w = pathlib.Path(r["workdir"])
    train_classifier(judge_config(cls_cfg, gan_cfg), str(w / "judge"))     # resumes, or returns when done
    fid = judge_export(w / "judge", pathlib.Path(r["synthetic"]), w)
    logger.info("demo: how a classifier of other real demo faces sees the exported synthetic faces:\n"
                + fidelity_table(fid))
    logger.info(f"demo: dataset {r['synthetic']} (datasheet.md beside the images); sample grid {w / 'samples.png'}; "
                f"training grids in {w / 'gan' / 'samples'}")
    return fid


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen demo
    import runpy
    runpy.run_module("jaxgen.commands.demo", run_name="__main__")
