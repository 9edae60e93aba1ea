"""The acne paper's hierarchical pipeline as one resumable command.

  python -m jaxgen pipeline --workdir runs/pipeline_tiny    # the :tiny configs below
  python -m jaxgen pipeline --gan_config configs/acne.py --classifier_config \\
      configs/acne_classifier.py --evolve_config configs/evolve_acne.py --workdir runs/pipeline

Steps (each writes into --workdir and is skipped when its `.done` marker exists;
the training steps themselves resume from their checkpoints if interrupted):

  1 base       StyleGAN2-ADA on all classes (the GAN config, conditional)   base/
  2 sorter     classifier on the real training faces                         cls_real/
  3 sort       base G generates --num_sort faces per class; the sorter keeps
               those it assigns to the intended class (confidence >= --min_conf)
               -> sorted/<class>/ and sorted/acceptance.json (kept and the
               sorter's votes per class); a class kept below --min_accept
               (10%) stops the run with the fix; finetune_data/<class>/ =
               real + kept                                                   sorted/, finetune_data/
  4 finetune   one model per class, transfer from base with freeze-D, still
               conditional with every image labelled its class (the base's
               mapping and label embeddings are kept; the GAN config file's
               `finetune` variant with data.fixed_label)                      finetune/<class>/
  5 evolve     GA per class over that class's model (class confidence from
               the sorter, D realism, identity distance to every real face,
               diversity) -> the anonymous dataset (healthy is one of the
               classes, as every other)                                     synthetic/
  6 classifier trained on the synthetic dataset only                        cls_synthetic/
  7 evaluate   both classifiers on held-out real faces: accuracy, precision,
               recall, F1, confusion matrices, one comparison table         eval/
  8 datasheet  the synthetic dataset against the real training and held-out
               faces: fidelity, diversity, privacy, identity matches, the
               step-7 accuracies (jaxgen/metrics/datasheet.py)              datasheet/

The equivalent separate commands are listed in the README ("Hierarchical
pipeline"). Real data: the GAN config's `data` (the demo faces for :tiny);
the real test folder is --test, or, for demo data, a fresh render with another seed.
Configs are loaded with `jaxgen.config.load_config`; `--set key=value` overrides
the GAN config (base and fine-tune runs alike).

--workdir must be new, empty or a pipeline workdir (its `.jaxgen-output.json`
marker, or the `.<step>.done` markers of a workdir made before it); a folder of
other files is refused before anything is loaded or trained
(`jaxgen.utils.outputs`). There is no progress.json here: the `.<step>.done`
files (JSON: the step's summary, seconds and the settings it was computed from)
are the resume points. A rerun whose settings differ for a finished step is
refused before anything runs, naming the step, the change and the finished steps
that would be recomputed (and the folders to delete for that).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
import shutil
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from jaxgen.classifiers.evaluate import evaluate_classifiers
from jaxgen.classifiers.sorting import make_latent_classifier
from jaxgen.classifiers.train import train_classifier
from jaxgen.config import load_config
from jaxgen.data import load_dataset
from jaxgen.data.demo_faces import write_demo_holdout
from jaxgen.errors import ConfigError, InputMissing, OutputError
from jaxgen.evolve.export_config import settings_diff
from jaxgen.runs import open_run
from jaxgen.stylegan2.train import train_and_evaluate
from jaxgen.utils.files import save_png_atomic, write_text_atomic
from jaxgen.utils.images import to_uint8
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.workflows.datasheet import datasheet_for_folders
from jaxgen.workflows.evolve import run_evolve

STEPS = ("base", "sorter", "sort", "finetune", "evolve", "classifier", "evaluate", "datasheet")
DEFAULTS = dict(gan="configs/acne.py:tiny", classifier="configs/acne_classifier.py:tiny",
                evolve="configs/evolve_acne.py:tiny")
OUTPUT_KIND = "pipeline"
STEP_DIRS = dict(base=("base",), sorter=("cls_real",), sort=("sorted", "finetune_data"), finetune=("finetune",),
                 evolve=("synthetic",), classifier=("cls_synthetic",), evaluate=("eval",), datasheet=("datasheet",))


def _legacy_workdir(folder: pathlib.Path) -> bool:
    """True for a pipeline workdir made before the output marker: it has a `.<step>.done` file."""
    return any((folder / f".{step}.done").is_file() for step in STEPS)


def run_marked_step(runner: Any, name: str, prefix: str, settings: Optional[Dict[str, Any]] = None) -> None:
    """Run `runner.step_<name>()` unless `runner.w/.<name>.done` says it finished before; the
    marker then holds the step's summary dict and its seconds (also in runner.timing), and
    `settings` (what the step was computed from) when given. The resume points of the
    multi-step workflows (this pipeline, `jaxgen.workflows.labelled`)."""
    marker = runner.w / f".{name}.done"
    if marker.exists():
        logger.info(f"{prefix}: {name}: done before, skipped")
        return
    t0 = time.time()
    logger.info(f"{prefix}: === {name} ===")
    info = getattr(runner, "step_" + name)() or {}
    runner.timing[name] = round(time.time() - t0, 1)
    extra = {} if settings is None else dict(settings=settings)
    write_text_atomic(marker, json.dumps(dict(info, seconds=runner.timing[name], **extra)))


@dataclasses.dataclass
class Configs:
    """The four configs of a pipeline run: base GAN, its per-class fine-tune variant,
    classifier (sorter and synthetic-trained), evolve."""

    gan: Any
    finetune: Any
    classifier: Any
    evolve: Any

    @classmethod
    def load(cls, gan: str, classifier: str, evolve: str, overrides: Sequence[str] = (),
             classifier_overrides: Sequence[str] = (), evolve_overrides: Sequence[str] = (),
             finetune_overrides: Sequence[str] = ()) -> "Configs":
        """From 'file.py[:variants]' specs; the fine-tune config is the GAN file's `finetune`
        variant (added to the GAN spec's variants); `overrides` apply to both GAN configs,
        `finetune_overrides` after them to the fine-tune config only."""
        path, _, variants = gan.partition(":")
        ft = f"{path}:{variants + ',' if variants else ''}finetune"
        return cls(load_config(gan, overrides), load_config(ft, list(overrides) + list(finetune_overrides)),
                   load_config(classifier, classifier_overrides), load_config(evolve, evolve_overrides))


def _copy_images(src: pathlib.Path, dst: pathlib.Path, prefix: str) -> int:
    """Copy the PNGs of `src` into `dst` with a name prefix; returns how many."""
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in sorted(src.iterdir()):
        if f.suffix.lower() == ".png":
            shutil.copyfile(f, dst / f"{prefix}{f.name}")
            n += 1
    return n


def sort_generated(base_dir: pathlib.Path, sorter_dir: pathlib.Path, out: pathlib.Path,
                   num_per_class: int, min_conf: float, seed: int) -> dict:
    """Generate with the conditional base G, keep what the sorter puts in the intended class.

    Returns {class: dict(kept, generated, accept (kept / generated), mean_conf (the sorter's
    confidence in the intended class over all generated faces), predicted (how many the
    sorter put in each class))}, also written to out/acceptance.json."""
    g = open_run(base_dir, kinds=("stylegan2",))
    clf = open_run(sorter_dir, kinds=("classifier",))
    classify = make_latent_classifier(g.model, clf.model, clf.resolution, clf.channels)
    report = {}
    for ci, name in enumerate(g.class_names):
        target = clf.class_names.index(name)
        z = np.random.default_rng([seed, ci]).standard_normal((num_per_class, g.z_dim)).astype(np.float32)
        c = np.zeros((num_per_class, g.num_classes), np.float32)
        c[:, ci] = 1
        pred, conf, probs = (np.asarray(a) for a in classify(g.variables, clf.variables, z, c))
        keep = np.flatnonzero((pred == target) & (conf >= min_conf))
        imgs = to_uint8(g.generate(z[keep], np.full(keep.size, ci))) if keep.size else []
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        for i, img in zip(keep, imgs):
            save_png_atomic(d / f"gen_{i:05d}.png", img)
        counts = np.bincount(pred, minlength=len(clf.class_names))
        report[name] = dict(kept=int(keep.size), generated=int(num_per_class),
                            accept=round(keep.size / num_per_class, 4),
                            mean_conf=round(float(probs[:, target].mean()), 4),
                            predicted={n: int(k) for n, k in zip(clf.class_names, counts)})
        logger.info(f"pipeline: sort: {name}: kept {keep.size}/{num_per_class} generated faces "
                    f"(sorter: {', '.join(f'{n} {k}' for n, k in report[name]['predicted'].items())})")
    write_text_atomic(out / "acceptance.json", json.dumps(report, indent=1))
    return report


def check_acceptance(report: dict, min_accept: float) -> None:
    """ConfigError naming the classes the sorter accepted less than `min_accept` of: the
    base generator does not render them, and their fine-tunes would learn from real faces
    only (or, with no real faces, from nothing)."""
    low = {n: r for n, r in report.items() if r["accept"] < min_accept}
    if low:
        which = ", ".join(f"{n} {r['kept']}/{r['generated']}" for n, r in low.items())
        raise ConfigError(f"the sorter accepted too few generated faces ({which}; need "
                          f"{min_accept:.0%}): the base generator does not yet render these classes. "
                          "Train the base longer (--set train.total_kimg=...), or lower --min_accept "
                          "/ --min_conf to go on anyway")


class Pipeline:
    """One pipeline run in `workdir`: each step a method, each skipped once its marker exists."""

    def __init__(self, configs: Configs, workdir: str, test: str = "", num_sort: int = 64,
                 min_conf: float = 0.5, min_accept: float = 0.1):
        d = configs.gan.data
        if d.source not in ("demo", "folder"):
            raise ConfigError(f"the pipeline needs an image-folder or demo dataset, got "
                              f"data.source={d.source!r}; set --set data.source=folder")
        if not test and d.source != "demo":
            raise ConfigError("give --test <held-out real folder> (class sub-folders)")
        if test and not pathlib.Path(test).is_dir():
            raise InputMissing(f"--test {test} is not a folder; give the held-out real images "
                               "(class sub-folders)")
        self.w = check_output(workdir, OUTPUT_KIND, "--workdir", legacy=_legacy_workdir)
        self.c, self.test_arg = configs, test
        self.num_sort, self.min_conf, self.min_accept = int(num_sort), float(min_conf), float(min_accept)
        self.real_root = pathlib.Path(d.path)
        self.test = test or str(self.real_root) + "_test"
        self.names: List[str] = []
        self.timing: Dict[str, float] = {}

    def prepare(self) -> None:
        """Load (render, for the demo) the real training set; render the demo test set."""
        d = self.c.gan.data
        self.names = list(load_dataset(d).class_names)
        if d.source == "demo":   # idempotent: finishes a half-written render
            self.test = write_demo_holdout(d, self.names)
        claim_output(self.w, OUTPUT_KIND, "--workdir", legacy=_legacy_workdir)

    def run_step(self, name: str) -> None:
        """Run step `name` unless its `.name.done` marker says it finished before."""
        run_marked_step(self, name, "pipeline", self.step_settings(name))

    def step_settings(self, name: str) -> Dict[str, Any]:
        """What step `name` itself is computed from (its config, flags), JSON-normalised; stored
        in its .done marker. A step also depends on the steps before it (checked in order)."""
        c = self.c
        own = dict(base=lambda: dict(gan=c.gan.to_dict()),
                   sorter=lambda: dict(classifier=c.classifier.to_dict(), data=c.gan.data.to_dict()),
                   sort=lambda: dict(num_sort=self.num_sort, min_conf=self.min_conf, min_accept=self.min_accept,
                                     seed=int(c.gan.seed)),
                   finetune=lambda: dict(finetune=c.finetune.to_dict()),
                   evolve=lambda: dict(evolve=c.evolve.to_dict(), identity=self._evolve_identity()),
                   classifier=lambda: dict(classifier=c.classifier.to_dict()),
                   evaluate=lambda: dict(test=self.test_arg),
                   datasheet=lambda: dict(metrics=c.gan.metrics.to_dict(), identity=self._evolve_identity()))
        return json.loads(json.dumps(own[name](), default=str))

    def check_done_steps(self) -> None:
        """OutputError (one line, before anything runs) when a finished step's .done marker records
        other settings than this run's: it names the step, what changed, and the finished steps
        that would have to be recomputed (their folders would mix old and new results). Markers
        written before the settings were recorded are taken as they are."""
        for i, name in enumerate(STEPS):
            try:
                stored = json.loads((self.w / f".{name}.done").read_text()).get("settings")
            except (OSError, ValueError, AttributeError):
                continue
            diff = settings_diff(stored, self.step_settings(name), name) if isinstance(stored, dict) else []
            if diff:
                later = [s for s in STEPS[i:] if (self.w / f".{s}.done").exists()]
                files = " ".join([f"{d}/" for s in later for d in STEP_DIRS[s]] + [f".{s}.done" for s in later])
                more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
                raise OutputError(
                    f"--workdir {self.w}: step {name} was done with other settings ({'; '.join(diff[:3])}{more}); "
                    f"nothing was run: rerun with its settings to resume, choose a new --workdir, or delete "
                    f"{files} in it to recompute {', '.join(later)}")

    def step_base(self) -> None:
        """1: StyleGAN2-ADA on all classes, conditional."""
        train_and_evaluate(self.c.gan, str(self.w / "base"))

    def _classifier_config(self, path: pathlib.Path):
        c = copy.deepcopy(self.c.classifier)
        c.data.source, c.data.path = "folder", str(path)
        c.data.resolution = int(self.c.gan.data.resolution)
        return c

    def step_sorter(self) -> None:
        """2: the sorter, a classifier trained on the real training faces."""
        train_classifier(self._classifier_config(self.real_root), str(self.w / "cls_real"))

    def step_sort(self) -> dict:
        """3: sort generated faces; per-class fine-tune data = real + kept generated."""
        kept = sort_generated(self.w / "base", self.w / "cls_real", self.w / "sorted", self.num_sort,
                              self.min_conf, int(self.c.gan.seed))
        check_acceptance(kept, self.min_accept)
        for name in self.names:
            n_real = _copy_images(self.real_root / name, self.w / "finetune_data" / name, "real_")
            n_gen = _copy_images(self.w / "sorted" / name, self.w / "finetune_data" / name, "sorted_")
            logger.info(f"pipeline: finetune data {name}: {n_real} real + {n_gen} sorted generated")
        return dict(kept=kept)

    def step_finetune(self) -> None:
        """4: one model per class from the base run (the config file's finetune variant)."""
        for name in self.names:
            c = copy.deepcopy(self.c.finetune)
            c.data.path = str(self.w / "finetune_data" / name)
            c.data.fixed_label = name       # the base's conditional G and D, this class only
            c.transfer.init_from = str(self.w / "base")
            logger.info(f"pipeline: finetune {name}")
            train_and_evaluate(c, str(self.w / "finetune" / name))

    def step_evolve(self) -> dict:
        """5: GA per class over that class's model -> the anonymous dataset."""
        e = copy.deepcopy(self.c.evolve)
        e.generator = str(self.w / "finetune" / "{class}")
        e.classifier = str(self.w / "cls_real")
        e.real = copy.deepcopy(self.c.gan.data)
        if self._evolve_identity() != e.identity:
            logger.info("pipeline: demo faces are drawn: dlib cannot tell them apart (see "
                        "jaxgen/identity/dlib_embedder.py), using the pixel near-copy check instead")
            e.identity = self._evolve_identity()
        return dict(classes=run_evolve(e, str(self.w / "synthetic"))["classes"])

    def step_classifier(self) -> None:
        """6: a classifier trained on the synthetic dataset only."""
        train_classifier(self._classifier_config(self.w / "synthetic"), str(self.w / "cls_synthetic"))

    def step_evaluate(self) -> dict:
        """7: both classifiers on the held-out real faces, one comparison table."""
        reports = evaluate_classifiers([str(self.w / "cls_real"), str(self.w / "cls_synthetic")], self.test,
                                       str(self.w / "eval"))
        return dict(test=self.test, accuracy={n: float(m["accuracy"]) for n, m in reports.items()})

    def _evolve_identity(self) -> str:
        e = self.c.evolve
        return "pixel" if self.c.gan.data.source == "demo" and e.identity == "dlib" else str(e.identity)

    def step_datasheet(self) -> dict:
        """8: the datasheet of the synthetic dataset (features as the GAN config's metrics), with
        step 7's accuracies as its utility section."""
        m = self.c.gan.metrics
        acc = json.loads((self.w / ".evaluate.done").read_text()).get("accuracy", {})
        one = {k: None if acc.get(k) is None else dict(mean=acc[k], half_width=None)
               for k in ("cls_real", "cls_synthetic")}
        gap = None if None in one.values() else dict(mean=acc["cls_real"] - acc["cls_synthetic"], half_width=None)
        utility = dict(classifier=str(self.c.classifier.get("name", "")) or "the pipeline's classifier config",
                       seeds=1, test=self.test, report=str(self.w / "eval"), real_train_acc=one["cls_real"],
                       synthetic_train_acc=one["cls_synthetic"], real_plus_synthetic_acc=None, gap=gap)
        meta = dict(generator=f"{self.w / 'finetune'}/<class> (per-class fine-tunes of {self.w / 'base'})",
                    gan_config=str(self.c.gan.get("name", "")), evolve_seed=int(self.c.evolve.seed),
                    gan_seed=int(self.c.gan.seed))
        sheet = datasheet_for_folders(str(self.w / "synthetic"), str(self.real_root), self.test,
                                      str(self.w / "datasheet"), str(m.inception_weights),
                                      str(m.feature_net) or "random_inception", self._evolve_identity(),
                                      meta=meta, utility=utility, feature_classifier=str(self.w / "cls_real"))
        logger.info(f"pipeline: datasheet: membership AUC {sheet['privacy']['membership_auc']:.3f}, "
                    f"DCR ratio {sheet['privacy']['dcr']['ratio']:.3f} -> {self.w / 'datasheet'}/datasheet.md")
        return dict(membership_auc=sheet["privacy"]["membership_auc"], dcr_ratio=sheet["privacy"]["dcr"]["ratio"])


def run_pipeline(configs: Configs, workdir: str, test: str = "", num_sort: int = 64,
                 min_conf: float = 0.5, steps: Sequence[str] = STEPS,
                 min_accept: float = 0.1) -> dict:
    """Run (or resume) the pipeline's `steps` into `workdir`; returns timings and paths."""
    bad = set(steps) - set(STEPS)
    if bad:
        raise ConfigError(f"--steps: unknown step(s) {sorted(bad)}; steps are {','.join(STEPS)}")
    p = Pipeline(configs, workdir, test, num_sort, min_conf, min_accept)
    p.check_done_steps()
    p.prepare()
    t0 = time.time()
    for name in STEPS:
        if name in steps:
            p.run_step(name)
    logger.info(f"pipeline: finished in {time.time() - t0:.0f}s; report in {p.w / 'eval'}")
    return dict(workdir=str(p.w), timing=p.timing, test=p.test)


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen pipeline
    import runpy
    runpy.run_module("jaxgen.commands.pipeline", run_name="__main__")
