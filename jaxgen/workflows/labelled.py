"""An unconditional GAN whose samples a classifier of the real faces labels: the acne paper's
sorting step as the whole method, with snapshots for the utility curve.

  python -m jaxgen labelled --workdir runs/labelled_tiny              # the :tiny configs
  python -m jaxgen labelled --workdir runs/labelled --multiple 4 --curve 0.25,0.5 \\
      --gan_config configs/acne.py --classifier_config configs/acne_classifier.py

Why: a conditional GAN on a few hundred faces per class tends to draw near-identical faces
within a class, and more samples of the same faces do not help a classifier trained on them
(Shahbazi et al., ICLR 2022, "Collapse by Conditioning"). An unconditional GAN draws diverse
faces; labelling them with the classifier trained on the real faces (the hierarchical
pipeline's sorter) and keeping the most confident per class gives a labelled set that grows
with the number of samples. `jaxgen.workflows.pipeline` (base, per-class fine-tunes, GA) stays
the acne paper's full method; bench/utility.py compares the two.

Steps (each writes into --workdir and is skipped when its `.done` marker exists; the
training steps resume from their checkpoints):

  gan      the GAN config with data.conditional=False, trained in stages: after each
           fraction of train.total_kimg in --curve, and after all of it, its networks
           are frozen in snapshots/kimg<k>/ (a networks directory open_run opens)   gan/, snapshots/
  sorter   the classifier config on the real training faces (or --sorter, a classifier
           run trained on them elsewhere: one teacher shared by the methods compared)  cls_real/
  export   the last snapshot's samples labelled by the sorter (`generate --label_by`,
           keep 'top'): --multiple x the real images per class, from a pool of
           --pool_multiple x that; every image passes the identity check, metadata.jsonl
           carries the sorter's probabilities (teacher_probs), acceptance.json, and the
           datasheet with the sorter's feature space                               synthetic/
  curve    the same export at 1x (no datasheet) from every earlier snapshot         curve/kimg<k>/

--workdir must be new, empty or a run of this command (its `.jaxgen-output.json` marker).
"""
from __future__ import annotations

import copy
import pathlib
from typing import Any, Dict, List, Sequence

import numpy as np

from jaxgen.classifiers.train import train_classifier
from jaxgen.data import load_dataset
from jaxgen.data.demo_faces import write_demo_holdout
from jaxgen.errors import ConfigError, InputMissing
from jaxgen.runs import snapshot_networks
from jaxgen.stylegan2.train import train_and_evaluate
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.workflows.generate import export_dataset
from jaxgen.workflows.pipeline import run_marked_step

STEPS = ("gan", "sorter", "export", "curve")
DEFAULTS = dict(gan="configs/acne.py:tiny", classifier="configs/acne_classifier.py:tiny")
OUTPUT_KIND = "labelled"


def parse_fractions(value: str) -> List[float]:
    """Sorted fractions in (0, 1) of '0.25,0.5' ('' = none); a ConfigError names the flag."""
    try:
        out = sorted({float(v) for v in str(value).split(",") if v.strip()})
    except ValueError:
        out = [-1.0]
    if any(not 0 < f < 1 for f in out):
        raise ConfigError(f"--curve {value}: fractions of the GAN's total_kimg strictly between 0 and 1, "
                          "e.g. 0.25,0.5")
    return out


def kimg_name(kimg: float) -> str:
    """A snapshot's folder name: 'kimg9', 'kimg4.5'."""
    return f"kimg{kimg:g}"


class Labelled:
    """One run in `workdir`: each step a method, each skipped once its marker exists."""

    def __init__(self, gan: Any, classifier: Any, workdir: str, multiple: int = 1,
                 curve: Sequence[float] = (), pool_multiple: float = 4.0, test: str = "",
                 sorter: str = "", kind: str = OUTPUT_KIND):
        d = gan.data
        if d.source not in ("demo", "folder"):
            raise ConfigError(f"needs an image-folder or demo dataset, got data.source={d.source!r}")
        if not test and d.source != "demo":
            raise ConfigError("give --test <held-out real folder> (class sub-folders)")
        if test and not pathlib.Path(test).is_dir():
            raise InputMissing(f"--test {test} is not a folder; give the held-out real images (class sub-folders)")
        if int(multiple) < 1 or float(pool_multiple) < 1:
            raise ConfigError(f"--multiple {multiple} and --pool_multiple {pool_multiple}: give at least 1")
        if sorter and not pathlib.Path(sorter).is_dir():
            raise InputMissing(f"--sorter {sorter} is not a folder; give a classifier run trained on the real faces")
        self.kind = kind                    # the workdir's marker kind (`make demo` runs this workflow too)
        self.w = check_output(workdir, kind, "--workdir")
        self.sorter = pathlib.Path(sorter).absolute() if sorter else self.w / "cls_real"
        self.gan, self.cls = copy.deepcopy(gan), copy.deepcopy(classifier)
        self.gan.data.conditional = False
        self.multiple, self.pool = int(multiple), float(pool_multiple)
        self.fractions = list(curve) + [1.0]
        self.real_root, self.test = pathlib.Path(d.path), test or str(d.path) + "_test"
        self.per_class: Dict[str, int] = {}
        self.timing: Dict[str, float] = {}

    @property
    def stages(self) -> List[float]:
        """The kimg at which a snapshot is frozen: each fraction of total_kimg, then all of it."""
        return [round(f * float(self.gan.train.total_kimg), 3) for f in self.fractions]

    def prepare(self) -> None:
        """Load (render, for the demo) the real faces and count them; the demo's held-out render."""
        ds = load_dataset(self.gan.data)
        counts = np.bincount(ds.labels, minlength=len(ds.class_names))
        self.per_class = {n: int(k) for n, k in zip(ds.class_names, counts)}
        if self.gan.data.source == "demo":
            self.test = write_demo_holdout(self.gan.data, list(ds.class_names))
        claim_output(self.w, self.kind, "--workdir")

    def run_step(self, name: str) -> None:
        """Run step `name` unless its `.name.done` marker says it finished before."""
        run_marked_step(self, name, "labelled")

    def step_gan(self) -> dict:
        """1: the unconditional GAN, stage by stage, each stage's networks frozen in snapshots/."""
        for kimg in self.stages:
            snap = self.w / "snapshots" / kimg_name(kimg)
            if snap.exists():
                continue
            c = copy.deepcopy(self.gan)
            c.train.total_kimg = kimg
            train_and_evaluate(c, str(self.w / "gan"))
            snapshot_networks(self.w / "gan", snap)
            logger.info(f"labelled: generator at {kimg:g} kimg frozen in {snap}")
        return dict(snapshots={kimg_name(k): k for k in self.stages})

    def step_sorter(self) -> dict:
        """2: the sorter, a classifier trained on the real training faces (unless given)."""
        if self.sorter != self.w / "cls_real":
            return dict(sorter=str(self.sorter))
        c = copy.deepcopy(self.cls)
        for k in ("source", "path", "resolution", "num_per_class", "seed", "demo_version", "classes"):
            if k in self.gan.data:
                c.data[k] = self.gan.data[k]     # the classifier learns the GAN's real faces
        train_classifier(c, str(self.w / "cls_real"))
        return dict(sorter=str(self.sorter))

    def _export(self, kimg: float, out: pathlib.Path, multiple: int, datasheet: bool) -> dict:
        m = self.gan.metrics
        r = export_dataset(str(self.w / "snapshots" / kimg_name(kimg)), str(out),
                           multiple * max(self.per_class.values()), seed=int(self.gan.seed),
                           real=str(self.real_root), holdout=self.test, identity=self._identity(),
                           datasheet=datasheet, feature_net=str(m.feature_net) or "random_inception",
                           inception_weights=str(m.inception_weights), label_by=str(self.sorter),
                           keep="top", pool_multiple=self.pool)
        return {n: a["kept"] for n, a in r["acceptance"]["per_class"].items()}

    def _identity(self) -> str:
        """The pixel near-copy check for the drawn demo faces (dlib cannot tell them apart), else dlib."""
        return "pixel" if self.gan.data.source == "demo" else "dlib"

    def step_export(self) -> dict:
        """3: the labelled export of the last snapshot, with its datasheet."""
        return dict(kept=self._export(self.stages[-1], self.w / "synthetic", self.multiple, True))

    def step_curve(self) -> dict:
        """4: a 1x labelled export of each earlier snapshot."""
        return {kimg_name(k): self._export(k, self.w / "curve" / kimg_name(k), 1, False) for k in self.stages[:-1]}


def run_labelled(gan: Any, classifier: Any, workdir: str, multiple: int = 1, curve: Sequence[float] = (),
                 pool_multiple: float = 4.0, test: str = "", sorter: str = "",
                 kind: str = OUTPUT_KIND) -> dict:
    """Run (or resume) every step into `workdir` (marker `kind`); returns the paths the utility
    benchmark reads: workdir, test, synthetic, per_class (real images per class), curve
    {kimg: export folder}."""
    r = Labelled(gan, classifier, workdir, multiple, curve, pool_multiple, test, sorter, kind)
    r.prepare()
    for name in STEPS:
        r.run_step(name)
    curve_dirs = {k: str(r.w / "curve" / kimg_name(k)) for k in r.stages[:-1]}
    return dict(workdir=str(r.w), test=r.test, synthetic=str(r.w / "synthetic"), per_class=r.per_class,
                sorter=str(r.sorter),
                curve=curve_dirs, final_kimg=r.stages[-1], timing=r.timing)


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen labelled
    import runpy
    runpy.run_module("jaxgen.commands.labelled", run_name="__main__")
