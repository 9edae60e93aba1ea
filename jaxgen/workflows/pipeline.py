"""The acne paper's hierarchical pipeline as one resumable command.

  python -m jaxgen.workflows.pipeline --gan_config configs/acne.py:tiny \\
      --classifier_config configs/acne_classifier.py:tiny --workdir runs/pipeline_tiny

Steps (each writes into --workdir and is skipped when its `.done` marker exists;
the training steps themselves resume from their checkpoints if interrupted):

  1 base       StyleGAN2-ADA on all classes (the GAN config, conditional)   base/
  2 sorter     classifier on the real training faces                         cls_real/
  3 sort       base G generates --num_sort faces per class; the sorter keeps
               those it assigns to the intended class (confidence >= --min_conf)
               -> sorted/<class>/; finetune_data/<class>/ = real + kept        sorted/, finetune_data/
  4 finetune   one unconditional model per class, transfer from base with
               freeze-D (the config's `finetune` variant settings)          finetune/<class>/
  5 evolve     GA per class over that class's model (class confidence from
               the sorter, D realism, identity distance to every real face,
               diversity) -> the anonymous dataset (healthy is one of the
               classes, as every other)                                     synthetic/
  6 classifier trained on the synthetic dataset only                        cls_synthetic/
  7 evaluate   both classifiers on held-out real faces: accuracy, precision,
               recall, F1, confusion matrices, one comparison table         eval/

The equivalent separate commands are listed in the README ("Hierarchical
pipeline"). Real data: the GAN config's `data` (the demo faces for :tiny);
the real test folder is --test, or, for demo data, a fresh render with another seed.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import pathlib
import shutil
import sys
import time
from typing import Any, List

import numpy as np

from jaxgen.classifiers.sorting import make_latent_classifier
from jaxgen.runs import open_run
from jaxgen.utils.files import save_png_atomic
from jaxgen.utils.images import to_uint8

STEPS = ("base", "sorter", "sort", "finetune", "evolve", "classifier", "evaluate")


def load_config(spec: str):
    """'path/to/config.py[:variant]' -> its get_config(variant) (as config_flags does)."""
    path, _, arg = spec.partition(":")
    p = pathlib.Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    repo = str(p.resolve().parents[1])
    if repo not in sys.path:
        sys.path.insert(0, repo)  # configs import `configs.common`
    mod_spec = importlib.util.spec_from_file_location(f"_cfg_{p.stem}", p)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.get_config(arg) if arg else mod.get_config()


def _done(w: pathlib.Path, step: str) -> bool:
    return (w / f".{step}.done").exists()


def _mark(w: pathlib.Path, step: str, info: dict) -> None:
    (w / f".{step}.done").write_text(json.dumps(info))


def _copy_images(src: pathlib.Path, dst: pathlib.Path, prefix: str) -> int:
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in sorted(src.iterdir()):
        if f.suffix.lower() == ".png":
            shutil.copyfile(f, dst / f"{prefix}{f.name}")
            n += 1
    return n


def sort_generated(base_dir: pathlib.Path, sorter_dir: pathlib.Path, out: pathlib.Path,
                   num_per_class: int, min_conf: float, seed: int, log=print) -> dict:
    """Generate with the conditional base G, keep what the sorter puts in the intended class."""
    g = open_run(base_dir, kinds=("stylegan2",))
    clf = open_run(sorter_dir, kinds=("classifier",))
    classify = make_latent_classifier(g.model, clf.model, clf.resolution, clf.channels)
    kept = {}
    for ci, name in enumerate(g.class_names):
        target = clf.class_names.index(name)
        z = np.random.default_rng([seed, ci]).standard_normal((num_per_class, g.z_dim)).astype(np.float32)
        c = np.zeros((num_per_class, g.num_classes), np.float32)
        c[:, ci] = 1
        pred, conf, _ = classify(g.variables, clf.variables, z, c)
        keep = np.flatnonzero((np.asarray(pred) == target) & (np.asarray(conf) >= min_conf))
        imgs = to_uint8(g.generate(z[keep], np.full(keep.size, ci))) if keep.size else []
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        for i, img in zip(keep, imgs):
            save_png_atomic(d / f"gen_{i:05d}.png", img)
        kept[name] = int(keep.size)
        log(f"pipeline: sort: {name}: kept {keep.size}/{num_per_class} generated faces")
    return kept


def run_pipeline(gan_config: Any, cls_config: Any, workdir: str, test: str = "",
                 num_sort: int = 64, min_conf: float = 0.5, steps: List[str] = STEPS,
                 log=print) -> dict:
    from jaxgen.data import load_dataset
    w = pathlib.Path(workdir)
    w.mkdir(parents=True, exist_ok=True)
    d = gan_config.data
    if d.source not in ("demo", "folder"):
        raise ValueError(f"the pipeline needs an image-folder or demo dataset, got data.source={d.source!r}")
    real = load_dataset(d)  # renders the demo faces if needed
    names = list(real.class_names)
    real_root = pathlib.Path(d.path)
    if not test:
        if d.source != "demo":
            raise ValueError("give --test <held-out real folder> (class sub-folders)")
        from jaxgen.data.demo_faces import write_demo_dataset
        test = str(real_root) + "_test"
        write_demo_dataset(test, int(d.num_per_class) // 2, int(d.resolution), int(d.seed) + 1000)
    t_all = time.time()
    timing = {}

    def step(name, fn):
        if name not in steps:
            return
        if _done(w, name):
            log(f"pipeline: {name}: done before, skipped")
            return
        t0 = time.time()
        log(f"pipeline: === {name} ===")
        info = fn() or {}
        timing[name] = round(time.time() - t0, 1)
        _mark(w, name, dict(info, seconds=timing[name]))

    from jaxgen.stylegan2.train import train_and_evaluate
    from jaxgen.classifiers.train import train_classifier
    from jaxgen.classifiers.evaluate import evaluate_classifiers

    step("base", lambda: train_and_evaluate(gan_config, str(w / "base")) and None)

    def sorter():
        c = copy.deepcopy(cls_config)
        c.data.source, c.data.path = "folder", str(real_root)
        c.data.resolution = int(d.resolution)
        train_classifier(c, str(w / "cls_real"))
    step("sorter", sorter)

    def sort():
        kept = sort_generated(w / "base", w / "cls_real", w / "sorted", num_sort, min_conf,
                              int(gan_config.seed), log)
        for name in names:
            n_real = _copy_images(real_root / name, w / "finetune_data" / name, "real_")
            n_gen = _copy_images(w / "sorted" / name, w / "finetune_data" / name, "sorted_")
            log(f"pipeline: finetune data {name}: {n_real} real + {n_gen} sorted generated")
        return dict(kept=kept)
    step("sort", sort)

    def finetune():
        for name in names:
            c = copy.deepcopy(gan_config)
            c.data.source, c.data.conditional = "folder", False
            c.data.path = str(w / "finetune_data" / name)
            c.data.cache_dir = ""
            c.transfer.init_from = str(w / "base")
            c.transfer.freeze_d = max(int(c.transfer.freeze_d), 4)
            c.train.total_kimg = float(c.train.total_kimg) / 2
            c.metrics.every_ticks = 0
            log(f"pipeline: finetune {name}")
            train_and_evaluate(c, str(w / "finetune" / name))
    step("finetune", finetune)

    def evolve():
        from jaxgen.evolve.run import run_evolve
        c = copy.deepcopy(gan_config)
        e = c.evolve
        e.generator = str(w / "finetune" / "{class}")
        e.classifier = str(w / "cls_real")
        e.real = str(real_root)
        if d.source == "demo" and e.identity == "dlib":
            log("pipeline: demo faces are drawn: dlib cannot tell them apart (see "
                "jaxgen/evolve/identity.py), using the pixel near-copy check instead")
            e.identity = "pixel"
        return dict(classes=run_evolve(c, str(w / "synthetic"), log)["classes"])
    step("evolve", evolve)

    def classifier():
        c = copy.deepcopy(cls_config)
        c.data.source, c.data.path = "folder", str(w / "synthetic")
        c.data.resolution = int(d.resolution)
        train_classifier(c, str(w / "cls_synthetic"))
    step("classifier", classifier)

    def evaluate():
        r = evaluate_classifiers([str(w / "cls_real"), str(w / "cls_synthetic")], test, str(w / "eval"))
        return dict(test=test)
    step("evaluate", evaluate)
    log(f"pipeline: finished in {time.time() - t_all:.0f}s; report in {w / 'eval'}")
    return dict(workdir=str(w), timing=timing, test=test)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gan_config", default="configs/acne.py:tiny")
    p.add_argument("--classifier_config", default="configs/acne_classifier.py:tiny")
    p.add_argument("--workdir", required=True)
    p.add_argument("--test", default="", help="held-out real folder (default: demo render)")
    p.add_argument("--num_sort", type=int, default=64, help="generated faces per class to sort")
    p.add_argument("--min_conf", type=float, default=0.5, help="sorter confidence to keep a face")
    p.add_argument("--steps", default=",".join(STEPS), help=f"subset of {','.join(STEPS)}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a GAN config value, e.g. --set train.total_kimg=4 (repeatable)")
    a = p.parse_args(argv)
    gan = load_config(a.gan_config)
    for kv in a.set:
        k, _, v = kv.partition("=")
        node = gan
        *parents, leaf = k.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = type(node[leaf])(v) if not isinstance(node[leaf], bool) else v.lower() == "true"
    steps = [s for s in a.steps.split(",") if s]
    bad = set(steps) - set(STEPS)
    if bad:
        raise SystemExit(f"unknown step(s) {sorted(bad)}; steps are {','.join(STEPS)}")
    run_pipeline(gan, load_config(a.classifier_config), a.workdir, a.test, a.num_sort,
                 a.min_conf, steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
