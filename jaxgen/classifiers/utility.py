"""The utility benchmark: does a synthetic dataset train classifiers that work on real images?

Protocol (the Classification Accuracy Score of Ravuri & Vinyals 2019, the seeds'
"synthetic-train / real-test"): one classifier config, one schedule, trained on

  real            the real training images
  synthetic       the synthetic dataset, subsampled to the same number of images per class
  real+synthetic  both together

each with `seeds` classifier seeds (init, validation split and batch order), all
tested on held-out real images that the GAN, the sorter and the GA never saw.
Validation (the best checkpoint) uses a split of each arm's own training folder, so
the synthetic arm never sees a real image before the test.

  python evaluate.py --utility --real_train data/acne --synthetic runs/pipeline/synthetic \\
      --test data/acne_test --classifier_config configs/acne_classifier.py:tiny --out runs/utility

Writes into `out` (new, empty or an earlier utility run; checked before anything is
loaded): `utility.json` (per arm: accuracy and macro-F1 with mean, std and a 95%
Student-t interval over the seeds, per-class recall, the summed confusion matrix,
every seed's numbers; the paired gap real - synthetic with its interval),
`utility.md` (the tables), `confusion_<arm>.png`, `samples.png` (per class: real
training images, then synthetic ones), `data/<arm>/<class>/` (the images each arm
trained on, hard links where possible) and `runs/<arm>/seed<k>/` (the classifier
workdirs). Each finished (arm, seed) leaves `runs/<arm>/seed<k>.test.json`; a
rerun of the same command skips those and resumes the rest.
"""
from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import time
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import scipy.stats
from PIL import Image

from jaxgen.classifiers.evaluate import predict
from jaxgen.classifiers.metrics import classification_metrics
from jaxgen.classifiers.report import plot_confusion_matrix
from jaxgen.classifiers.train import train_classifier
from jaxgen.config import load_config
from jaxgen.data import load_image_folder
from jaxgen.data.folder import DatasetError, prepare_image, scan_image_folder
from jaxgen.errors import ConfigError, OutputError
from jaxgen.runs import open_run
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.images import save_grid
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.utils.progress import format_duration

OUTPUT_KIND = "utility"
ARMS = ("real", "synthetic", "real+synthetic")


def interval(values: Sequence[float], level: float = 0.95) -> Dict[str, Any]:
    """Mean, sample std and the Student-t `level` interval of the mean of `values`.

    With one value the interval is that value (std 0, half-width reported as None)."""
    v = np.asarray(values, np.float64)
    mean = float(v.mean())
    if v.size < 2:
        return dict(mean=mean, std=0.0, lo=mean, hi=mean, half_width=None, n=int(v.size))
    std = float(v.std(ddof=1))
    h = float(scipy.stats.t.ppf(0.5 + level / 2, v.size - 1) * std / np.sqrt(v.size))
    return dict(mean=mean, std=std, lo=mean - h, hi=mean + h, half_width=h, n=int(v.size))


def _class_files(root: str, flag: str) -> Dict[str, List[str]]:
    """{class name: sorted image paths} of a class-folder dataset (DatasetError names the flag)."""
    try:
        items, names = scan_image_folder(root)
    except DatasetError as e:
        raise DatasetError(f"{flag}: {e}") from None
    files: Dict[str, List[str]] = {n: [] for n in names}
    for path, label in items:
        files[names[label]].append(str(path))
    return files


def plan_data(real_train: str, synthetic: str, test: str) -> Dict[str, Any]:
    """Check the three folders and choose each arm's files; nothing is written.

    The synthetic arm takes, per class, as many synthetic images as the real folder has
    (a fixed random subset); a class with fewer synthetic images is a one-line error."""
    real = _class_files(real_train, "--real_train")
    syn = _class_files(synthetic, "--synthetic")
    tst = _class_files(test, "--test")
    names = list(real)
    if len(names) < 2:
        raise DatasetError(f"--real_train {real_train} needs >= 2 class sub-folders, found {names}")
    for flag, other in (("--synthetic " + synthetic, syn), ("--test " + test, tst)):
        if list(other) != names:
            raise DatasetError(f"{flag} has classes {list(other)}, --real_train {names}; all three "
                               "folders need the same class sub-folders")
    rng = np.random.default_rng(0)
    picked = {}
    for n in names:
        if len(syn[n]) < len(real[n]):
            raise DatasetError(f"--synthetic {synthetic}/{n} has {len(syn[n])} images, the real "
                               f"training class {len(real[n])}; the protocol trains on the same "
                               f"number per class: export at least {len(real[n])} per class")
        picked[n] = sorted(rng.choice(syn[n], len(real[n]), replace=False).tolist())
    arms = {"real": real, "synthetic": picked,
            "real+synthetic": {n: real[n] + picked[n] for n in names}}
    return dict(class_names=names, arms=arms, test_counts={n: len(tst[n]) for n in names})


def _link(src: str, dst: pathlib.Path) -> None:
    """Hard link `src` at `dst` (a copy across file systems); an existing `dst` is kept."""
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def materialise(arm_files: Dict[str, List[str]], root: pathlib.Path) -> None:
    """`root/<class>/<i>_<name>`: the arm's image folder (idempotent)."""
    for name, files in arm_files.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            _link(f, d / f"{i:05d}_{pathlib.Path(f).name}")


def _classifier_config(spec: Any, data_path: pathlib.Path, seed: int, resolution: int):
    """The classifier config for one (arm, seed): the arm's folder, that seed, that resolution."""
    c = copy.deepcopy(spec)
    c.seed = int(seed)
    c.data.source, c.data.path, c.data.val_path = "folder", str(data_path), ""
    c.data.cache_dir = ""      # these folders are made here; no decoded-image cache beside them
    if resolution:
        c.data.resolution = int(resolution)
    return c


def test_one(workdir: pathlib.Path, test, names: Sequence[str]) -> Dict[str, Any]:
    """The best checkpoint of `workdir` on the test set: classification_metrics (JSON-friendly)."""
    run = open_run(str(workdir), kinds=("classifier",))
    probs = predict(run.model, run.variables, test.images)
    return classification_metrics(test.labels, probs.argmax(-1), len(names), list(names), scores=probs)


def _summarise(per_seed: Dict[str, List[Dict[str, Any]]], names: Sequence[str]) -> Dict[str, Any]:
    """Per arm: accuracy / macro-F1 intervals, mean per-class recall, summed confusion; the gap."""
    arms = {}
    for arm, runs in per_seed.items():
        recall = np.mean([[c["recall"] for c in r["per_class"]] for r in runs], 0)
        arms[arm] = dict(accuracy=interval([r["accuracy"] for r in runs]),
                         macro_f1=interval([r["macro"]["f1"] for r in runs]),
                         per_class_recall={n: float(x) for n, x in zip(names, recall)},
                         confusion=np.sum([r["confusion_matrix"] for r in runs], 0).tolist(),
                         seeds=[dict(seed=r["seed"], accuracy=r["accuracy"], macro_f1=r["macro"]["f1"])
                                for r in runs])
    out = dict(arms=arms)
    if "real" in per_seed and "synthetic" in per_seed:
        gaps = [a["accuracy"] - b["accuracy"] for a, b in zip(per_seed["real"], per_seed["synthetic"])]
        out["gap"] = interval(gaps)
    return out


def _markdown(summary: Dict[str, Any], names: Sequence[str], meta: Dict[str, Any]) -> str:
    """The utility tables: one row per arm (accuracy, macro-F1 with 95% intervals), per-class recall."""
    def ci(d):
        hw = d["half_width"]
        return f"{d['mean']:.3f}" + (f" ± {hw:.3f}" if hw is not None else "")
    lines = [f"# Utility: synthetic-train / real-test ({meta['classifier']}, {meta['seeds']} seeds)", "",
             f"Test: {meta['test']} ({meta['test_images']} real images never used for training). "
             "± is the 95% Student-t interval over the classifier seeds.", "",
             "| trained on | images | accuracy | macro-F1 | " + " | ".join(f"recall {n}" for n in names) + " |",
             "| --- | ---: | ---: | ---: |" + " ---: |" * len(names)]
    for arm, a in summary["arms"].items():
        rec = " | ".join(f"{a['per_class_recall'][n]:.3f}" for n in names)
        lines.append(f"| {arm} | {meta['train_images'][arm]} | {ci(a['accuracy'])} | {ci(a['macro_f1'])} | {rec} |")
    if "gap" in summary:
        lines += ["", f"Gap, real - synthetic accuracy (paired by seed): **{ci(summary['gap'])}**"]
    return "\n".join(lines) + "\n"


def _sample_sheet(arms: Dict[str, Dict[str, List[str]]], names: Sequence[str], resolution: int,
                  path: pathlib.Path, per_side: int = 6) -> None:
    """samples.png: one row per class, `per_side` real training images then as many synthetic."""
    cells = []
    for n in names:
        for arm in ("real", "synthetic"):
            files = arms[arm][n][:per_side]
            imgs = _read_images(files, resolution)
            cells.extend(list(imgs) + [np.zeros_like(imgs[0])] * (per_side - len(imgs)))
    save_grid(np.stack(cells), path, cols=2 * per_side, row_labels=[f"{n}: real | synthetic" for n in names])


def _read_images(files: Sequence[str], resolution: int) -> np.ndarray:
    """uint8 [N, R, R, 3] of image files, converted as the loaders convert them (`prepare_image`)."""
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(prepare_image(im, resolution, 3))
    return np.stack(out)


def _check_settings(root: pathlib.Path, settings: Dict[str, Any]) -> None:
    """Record the benchmark's settings in root/settings.json; a folder holding a run with other
    settings is an OutputError (its finished seeds would be mixed into this run's numbers)."""
    f = root / "settings.json"
    if f.exists():
        old = json.loads(f.read_text())
        diff = [f"{k}: {old.get(k)!r} vs {v!r}" for k, v in settings.items() if old.get(k) != v]
        if diff:
            raise OutputError(f"--out {root} holds a utility run with other settings ({'; '.join(diff)}); "
                              "pick another --out")
    else:
        write_text_atomic(f, json.dumps(settings, indent=1))


def _one_run(plan: Dict[str, Any], spec: Any, out: pathlib.Path, arm: str, seed: int, test,
             resolution: int) -> Dict[str, Any]:
    """Train (or resume) the classifier of (arm, seed) and test it; cached in seed<k>.test.json."""
    done = out / "runs" / arm / f"seed{seed}.test.json"
    if done.exists():
        return json.loads(done.read_text())
    data = out / "data" / arm
    materialise(plan["arms"][arm], data)
    workdir = out / "runs" / arm / f"seed{seed}"
    train_classifier(_classifier_config(spec, data, seed, resolution), str(workdir))
    m = dict(test_one(workdir, test, plan["class_names"]), seed=int(seed))
    write_text_atomic(done, json.dumps(m, indent=1))
    return m


def run_utility(real_train: str, synthetic: str, test: str, classifier_config: str, out: str,
                seeds: int = 3, resolution: int = 0, arms: Sequence[str] = ARMS,
                overrides: Sequence[str] = (), log: Callable[[str], None] = print) -> Dict[str, Any]:
    """The benchmark (module docstring); returns the utility.json dict.

    classifier_config: 'file.py[:variants]' (overrides 'a.b=value' applied); resolution 0
    keeps the config's. Inputs and `out` are checked before anything is written."""
    bad = sorted(set(arms) - set(ARMS))
    if bad or not arms:
        raise ConfigError(f"arms {list(arms)}: choose from {', '.join(ARMS)}")
    if int(seeds) < 1:
        raise ConfigError(f"--seeds {seeds}: give at least 1 (3 or more for an interval)")
    spec = load_config(classifier_config, overrides)
    res = int(resolution) or int(spec.data.resolution)
    plan = plan_data(real_train, synthetic, test)
    root = check_output(out, OUTPUT_KIND)
    settings = dict(classifier=classifier_config, overrides=list(overrides), resolution=res,
                    real_train=str(real_train), synthetic=str(synthetic), test=str(test))
    if (root / "settings.json").exists():
        _check_settings(root, settings)
    names = plan["class_names"]
    test_set = load_image_folder(test, res, int(spec.data.channels), require_labels=True, cache_dir=None)
    claim_output(root, OUTPUT_KIND)
    _check_settings(root, settings)
    t0, jobs = time.time(), [(a, s) for a in arms for s in range(int(seeds))]
    per_seed: Dict[str, List[Dict[str, Any]]] = {a: [] for a in arms}
    for i, (arm, seed) in enumerate(jobs):
        log(f"utility: classifier {i + 1}/{len(jobs)}: trained on {arm}, seed {seed}")
        m = _one_run(plan, spec, root, arm, seed, test_set, res)
        per_seed[arm].append(m)
        left = (time.time() - t0) / (i + 1) * (len(jobs) - i - 1)
        log(f"utility: {arm} seed {seed}: real-test accuracy {m['accuracy']:.3f}, macro-F1 "
            f"{m['macro']['f1']:.3f}  ({i + 1}/{len(jobs)}, ETA {format_duration(left)})")
    summary = _summarise(per_seed, names)
    meta = dict(settings, seeds=int(seeds), test_images=int(len(test_set.labels)), test_counts=plan["test_counts"],
                train_images={a: sum(len(v) for v in plan["arms"][a].values()) for a in arms},
                class_names=names, minutes=round((time.time() - t0) / 60, 2))
    result = dict(meta, **summary)
    write_text_atomic(root / "utility.json", json.dumps(result, indent=1))
    write_text_atomic(root / "utility.md", _markdown(summary, names, meta))
    for arm in arms:
        plot_confusion_matrix(summary["arms"][arm]["confusion"], names, root / f"confusion_{arm}.png",
                              title=f"trained on {arm}, tested on real", subtitle=f"summed over {seeds} seeds")
    if "real" in plan["arms"] and "synthetic" in plan["arms"]:
        _sample_sheet(plan["arms"], names, res, root / "samples.png")
    log((root / "utility.md").read_text())
    return result
