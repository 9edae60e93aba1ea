"""The utility benchmark: does a synthetic dataset train classifiers that work on real images?

Protocol (the Classification Accuracy Score of Ravuri & Vinyals 2019, the seeds'
"synthetic-train / real-test"): one classifier config, one schedule, trained on

  real                        the real training images
  synthetic                   the synthetic dataset, subsampled to the same number of images
                              per class (n, the real count of that class)
  synthetic x<m>              with `multiples`: m x n synthetic images per class (enough
                              synthetic faces; x<m> holds the images of every smaller multiple)
  synthetic (teacher labels)  with `teacher`: the `synthetic` images trained on the soft labels
                              of a classifier trained on real faces ("teacher_probs" in the
                              export's metadata.jsonl, as the acne paper labels its faces)
  real+synthetic              the real images and the `synthetic` ones together

each with `seeds` classifier seeds (init, validation split and batch order), all
tested on held-out real images that the GAN, the sorter and the GA never saw.
Validation (the best checkpoint) uses a split of each arm's own training folder, so
the synthetic arm never sees a real image before the test.

  python evaluate.py utility --real_train data/acne --synthetic runs/pipeline/synthetic \\
      --test data/acne_test --classifier_config configs/acne_classifier.py:tiny --out runs/utility \\
      [--synthetic_multiple 1,4,16] [--teacher_arm]

Writes into `out` (new, empty or an earlier utility run; checked before anything is
loaded): `utility.json` (per arm: accuracy and macro-F1 with mean, std and a 95%
Student-t interval over the seeds, per-class recall, the summed confusion matrix,
every seed's numbers; `gaps`: per synthetic arm the paired gap real - that arm with
its interval, `gap` the one of `synthetic`; `best_multiple` with its accuracy and gap),
`utility.md` (the tables), `confusion_<arm>.png`, `samples.png` (per class: real
training images, then synthetic ones), `data/<arm>/<class>/` (the images each arm
trained on, hard links where possible; the teacher arm's folder also holds its
metadata.jsonl) and `runs/<arm>/seed<k>/` (the classifier workdirs); <arm> in file
names is `arm_dir(arm)` (e.g. synthetic_x4). Each finished (arm, seed) leaves
`runs/<arm>/seed<k>.test.json`; a rerun of the same command (same settings.json)
skips those and resumes the rest. The arms' names and the images each trains on are
`jaxgen.classifiers.utility_arms`'s.
"""
from __future__ import annotations

import copy
import json
import pathlib
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import scipy.stats
from PIL import Image

from jaxgen.classifiers.evaluate import predict
from jaxgen.classifiers.metrics import classification_metrics
from jaxgen.classifiers.report import plot_confusion_matrix
from jaxgen.classifiers.train import train_classifier
from jaxgen.classifiers.utility_arms import ARMS, TEACHER_ARM, arm_dir, materialise, multiple_arm, plan_data
from jaxgen.config import load_config
from jaxgen.data import load_image_folder
from jaxgen.data.folder import prepare_image
from jaxgen.errors import ConfigError, OutputError
from jaxgen.runs import open_run
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.images import save_grid
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.utils.progress import format_duration

OUTPUT_KIND = "utility"
LEGACY_SETTINGS = dict(multiples=[1], teacher=False)   # runs recorded before these settings existed


def parse_multiples(value: Any) -> Tuple[int, ...]:
    """Sorted distinct multiples of '1,4,16' or a sequence of ints / digit strings; a
    ConfigError unless there is at least one and each is a whole number >= 1."""
    items = str(value).split(",") if isinstance(value, (str, int)) else list(value)
    try:
        out = sorted({int(str(v).strip()) for v in items if str(v).strip()})
    except ValueError:
        out = []
    if not out or out[0] < 1:
        shown = value if isinstance(value, str) else ",".join(str(v) for v in items)
        raise ConfigError(f"--synthetic_multiple {shown}: give whole numbers >= 1, e.g. 1,4,16")
    return tuple(out)


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


def _classifier_config(spec: Any, data_path: pathlib.Path, seed: int, resolution: int, soft: bool = False):
    """The classifier config for one (arm, seed): the arm's folder, that seed, that resolution;
    soft: train on the teacher probabilities of data_path/metadata.jsonl."""
    c = copy.deepcopy(spec)
    c.seed = int(seed)
    c.data.source, c.data.path, c.data.val_path = "folder", str(data_path), ""
    c.data.cache_dir = ""      # these folders are made here; no decoded-image cache beside them
    if soft:
        c.data.soft_labels_from = "metadata.jsonl"
    if resolution:
        c.data.resolution = int(resolution)
    return c


def test_one(workdir: pathlib.Path, test, names: Sequence[str]) -> Dict[str, Any]:
    """The best checkpoint of `workdir` on the test set: classification_metrics (JSON-friendly)."""
    run = open_run(str(workdir), kinds=("classifier",))
    probs = predict(run.model, run.variables, test.images)
    return classification_metrics(test.labels, probs.argmax(-1), len(names), list(names), scores=probs)


def _summarise(per_seed: Dict[str, List[Dict[str, Any]]], names: Sequence[str],
               multiples: Sequence[int] = (1,)) -> Dict[str, Any]:
    """Per arm: accuracy / macro-F1 intervals, mean per-class recall, summed confusion; the
    gaps and the best multiple (`_gaps`)."""
    arms = {}
    for arm, runs in per_seed.items():
        recall = np.mean([[c["recall"] for c in r["per_class"]] for r in runs], 0)
        arms[arm] = dict(accuracy=interval([r["accuracy"] for r in runs]),
                         macro_f1=interval([r["macro"]["f1"] for r in runs]),
                         per_class_recall={n: float(x) for n, x in zip(names, recall)},
                         confusion=np.sum([r["confusion_matrix"] for r in runs], 0).tolist(),
                         seeds=[dict(seed=r["seed"], accuracy=r["accuracy"], macro_f1=r["macro"]["f1"])
                                for r in runs])
    return dict(arms=arms, **_gaps(per_seed, arms, multiples))


def _gaps(per_seed: Dict[str, List[Dict[str, Any]]], arms: Dict[str, Any], multiples: Sequence[int]) -> Dict[str, Any]:
    """gaps {synthetic arm: interval of real - arm accuracy, paired by seed}, gap (that of
    'synthetic'), best_multiple (the multiple arm of highest mean accuracy; ties: the
    smaller), best_synthetic_train_acc (its accuracy interval) and best_gap."""
    out: Dict[str, Any] = {}
    if "real" in per_seed:
        out["gaps"] = {a: interval([r["accuracy"] - s["accuracy"] for r, s in zip(per_seed["real"], runs)])
                       for a, runs in per_seed.items() if a.startswith("synthetic")}
        if "synthetic" in out["gaps"]:
            out["gap"] = out["gaps"]["synthetic"]
    ms = [m for m in multiples if multiple_arm(m) in arms]
    if ms:
        best = ms[int(np.argmax([arms[multiple_arm(m)]["accuracy"]["mean"] for m in ms]))]
        out.update(best_multiple=int(best), best_synthetic_train_acc=arms[multiple_arm(best)]["accuracy"])
        if "gaps" in out:
            out["best_gap"] = out["gaps"][multiple_arm(best)]
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
    for arm, gap in summary.get("gaps", {}).items():
        lines += ["", f"Gap, real - {arm} accuracy (paired by seed): **{ci(gap)}**"]
    if len(meta.get("multiples", [1])) > 1 and "best_multiple" in summary:
        m = summary["best_multiple"]
        lines += ["", f"Best synthetic multiple: x{m} ({meta['train_images'][multiple_arm(m)]} images), accuracy "
                  f"{ci(summary['best_synthetic_train_acc'])}" + (f", gap {ci(summary['best_gap'])}"
                                                                  if "best_gap" in summary else "")]
    if meta.get("teachers"):
        lines += ["", f"Teacher labels from: {', '.join(meta['teachers'])}"]
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
        old = dict(LEGACY_SETTINGS, **json.loads(f.read_text()))
        diff = [f"{k}: {old.get(k)!r} vs {v!r}" for k, v in settings.items() if old.get(k) != v]
        if diff:
            raise OutputError(f"--out {root} holds a utility run with other settings ({'; '.join(diff)}); "
                              "pick another --out")
    else:
        write_text_atomic(f, json.dumps(settings, indent=1))


def _one_run(plan: Dict[str, Any], spec: Any, out: pathlib.Path, arm: str, seed: int, test,
             resolution: int) -> Dict[str, Any]:
    """Train (or resume) the classifier of (arm, seed) and test it; cached in seed<k>.test.json."""
    done = out / "runs" / arm_dir(arm) / f"seed{seed}.test.json"
    if done.exists():
        return json.loads(done.read_text())
    data = out / "data" / arm_dir(arm)
    soft = plan["soft"].get(arm)
    materialise(plan["arms"][arm], data, soft)
    workdir = out / "runs" / arm_dir(arm) / f"seed{seed}"
    train_classifier(_classifier_config(spec, data, seed, resolution, soft is not None), str(workdir))
    m = dict(test_one(workdir, test, plan["class_names"]), seed=int(seed))
    write_text_atomic(done, json.dumps(m, indent=1))
    return m


def arm_list(arms: Sequence[str], multiples: Sequence[int], teacher: bool) -> List[str]:
    """The arms trained, in table order: `arms` with 'synthetic' expanded to one arm per
    multiple, then TEACHER_ARM (with `teacher`) after them (or last without 'synthetic')."""
    out: List[str] = []
    for a in arms:
        if a == "synthetic":
            out += [multiple_arm(m) for m in multiples] + ([TEACHER_ARM] if teacher else [])
        else:
            out.append(a)
    return out + ([TEACHER_ARM] if teacher and TEACHER_ARM not in out else [])


def _train_all(plan: Dict[str, Any], spec: Any, root: pathlib.Path, runs: Sequence[str], seeds: int, test_set,
               res: int) -> Dict[str, List[Dict[str, Any]]]:
    """{arm: [test metrics of seed 0..seeds-1]}: every (arm, seed) trained or resumed, logged with an ETA."""
    t0, jobs = time.time(), [(a, s) for a in runs for s in range(int(seeds))]
    per_seed: Dict[str, List[Dict[str, Any]]] = {a: [] for a in runs}
    for i, (arm, seed) in enumerate(jobs):
        logger.info(f"utility: classifier {i + 1}/{len(jobs)}: trained on {arm}, seed {seed}")
        m = _one_run(plan, spec, root, arm, seed, test_set, res)
        per_seed[arm].append(m)
        left = (time.time() - t0) / (i + 1) * (len(jobs) - i - 1)
        logger.info(f"utility: {arm} seed {seed}: real-test accuracy {m['accuracy']:.3f}, macro-F1 "
                    f"{m['macro']['f1']:.3f}  ({i + 1}/{len(jobs)}, ETA {format_duration(left)})")
    return per_seed


def _write_reports(root: pathlib.Path, result: Dict[str, Any], plan: Dict[str, Any], res: int) -> None:
    """utility.json, utility.md, confusion_<arm>.png per arm and samples.png into `root`."""
    names, seeds = result["class_names"], result["seeds"]
    write_text_atomic(root / "utility.json", json.dumps(result, indent=1))
    write_text_atomic(root / "utility.md", _markdown(result, names, result))
    for arm, a in result["arms"].items():
        plot_confusion_matrix(a["confusion"], names, root / f"confusion_{arm_dir(arm)}.png",
                              title=f"trained on {arm}, tested on real", subtitle=f"summed over {seeds} seeds")
    if "real" in plan["arms"] and "synthetic" in plan["arms"]:
        _sample_sheet(plan["arms"], names, res, root / "samples.png")


def run_utility(real_train: str, synthetic: str, test: str, classifier_config: str, out: str,
                seeds: int = 3, resolution: int = 0, arms: Sequence[str] = ARMS,
                overrides: Sequence[str] = (), multiples: Sequence[int] = (1,),
                teacher: bool = False) -> Dict[str, Any]:
    """The benchmark (module docstring); returns the utility.json dict.

    classifier_config: 'file.py[:variants]' (overrides 'a.b=value' applied); resolution 0
    keeps the config's. multiples: the synthetic arms' sizes in multiples of the real count
    per class (they replace 'synthetic' of `arms`; 1 is 'synthetic'); teacher: also the
    TEACHER_ARM. Inputs and `out` are checked before anything is written."""
    bad = sorted(set(arms) - set(ARMS))
    if bad or not arms:
        raise ConfigError(f"arms {list(arms)}: choose from {', '.join(ARMS)}")
    if int(seeds) < 1:
        raise ConfigError(f"--seeds {seeds}: give at least 1 (3 or more for an interval)")
    multiples = parse_multiples(multiples)
    spec = load_config(classifier_config, overrides)
    res = int(resolution) or int(spec.data.resolution)
    plan = plan_data(real_train, synthetic, test, multiples, teacher)
    root = check_output(out, OUTPUT_KIND)
    settings = dict(classifier=classifier_config, overrides=list(overrides), resolution=res,
                    real_train=str(real_train), synthetic=str(synthetic), test=str(test),
                    multiples=list(multiples), teacher=bool(teacher))
    if (root / "settings.json").exists():
        _check_settings(root, settings)
    names = plan["class_names"]
    test_set = load_image_folder(test, res, int(spec.data.channels), require_labels=True, cache_dir=None)
    claim_output(root, OUTPUT_KIND)
    _check_settings(root, settings)
    t0, runs = time.time(), arm_list(arms, multiples, teacher)
    per_seed = _train_all(plan, spec, root, runs, seeds, test_set, res)
    summary = _summarise(per_seed, names, multiples)
    meta = dict(settings, seeds=int(seeds), test_images=int(len(test_set.labels)), test_counts=plan["test_counts"],
                train_images={a: sum(len(v) for v in plan["arms"][a].values()) for a in runs},
                class_names=names, teachers=plan["teachers"], minutes=round((time.time() - t0) / 60, 2))
    result = dict(meta, **summary)
    _write_reports(root, result, plan, res)
    logger.info((root / "utility.md").read_text())
    return result


def run_curve(real_train: str, exports: Dict[float, str], test: str, classifier_config: str, out: str,
              real_accuracy: Sequence[float], final: Dict[float, Sequence[float]] = None, seeds: int = 3,
              resolution: int = 0, overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """The utility curve: how the gap closes as the generator trains.

    exports: {generator kimg: a 1x synthetic export of the generator at that kimg}; each trains
    the `synthetic` arm only (`seeds` seeds, in out/kimg<k>/; resumable as run_utility), and its
    gap is paired by seed with `real_accuracy` (the main run's real arm, seed order, same config:
    the real arm does not depend on the generator, so it is not trained again). final: {kimg:
    per-seed synthetic accuracies} of points already measured (the main run's last snapshot).
    Writes out/utility_curve.json and out/utility_curve.png; returns {'points': [{kimg,
    synthetic_train_acc, gap} intervals], 'curve': {kimg: mean gap}}."""
    root = pathlib.Path(out)
    accs = {float(k): list(v) for k, v in (final or {}).items()}
    for kimg, folder in sorted(exports.items()):
        r = run_utility(real_train, folder, test, classifier_config, str(root / f"kimg{kimg:g}"), seeds=seeds,
                        resolution=resolution, arms=("synthetic",), overrides=overrides)
        accs[float(kimg)] = [s["accuracy"] for s in r["arms"]["synthetic"]["seeds"]]
    points = []
    for kimg in sorted(accs):
        a = accs[kimg]
        points.append(dict(kimg=kimg, synthetic_train_acc=interval(a),
                           gap=interval([r - s for r, s in zip(real_accuracy, a)])))
    result = dict(points=points, curve={f"{p['kimg']:g}": p["gap"]["mean"] for p in points},
                  real_train_acc=interval(real_accuracy))
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / "utility_curve.json", json.dumps(result, indent=1))
    plot_utility_curve(points, root / "utility_curve.png")
    return result


def plot_utility_curve(points: Sequence[Dict[str, Any]], path: pathlib.Path) -> pathlib.Path:
    """utility_curve.png: the gap (real - synthetic accuracy, with its 95% interval) against the
    generator's kimg, and a dashed zero line: where the gap would close."""
    from matplotlib.figure import Figure   # lazy: only the curve draws with it here

    x = [p["kimg"] for p in points]
    y = [p["gap"]["mean"] for p in points]
    lo = [p["gap"]["lo"] for p in points]
    hi = [p["gap"]["hi"] for p in points]
    fig = Figure(figsize=(5, 3.5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    ax.fill_between(x, lo, hi, alpha=0.2, label="95% interval over classifier seeds")
    ax.plot(x, y, "o-", label="gap, 1x synthetic")
    ax.axhline(0.0, ls="--", c="grey", lw=1)
    ax.set_xlabel("generator training (kimg)")
    ax.set_ylabel("real-trained - synthetic-trained acc.")
    ax.set_title("Utility gap against generator training")
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)
    return path
