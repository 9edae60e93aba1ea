"""A datasheet for a synthetic image dataset: how faithful, diverse and private it is.

  python evaluate.py datasheet --synthetic runs/pipeline/synthetic --real data/demo_acne \\
      --holdout data/demo_acne_test --feature_net random_inception --identity pixel --out runs/sheet

Given the synthetic set, the real training set (what the generator saw) and a real
holdout set (what it never saw), all with the same classes, `compute` measures and
`write` writes into `out`:

  datasheet.json   every number below, with the settings and software versions
  datasheet.md     the same as tables, each measure beside its reference value
  nearest_real.png the synthetic images closest to a training image (feature space),
                   worst first, each beside that training image
  images.csv       per synthetic image: class, nearest training image, feature distance,
                   identity distance and whether it is within the identity threshold

Measures (features from the FID Inception, or a named fallback that is labelled not
comparable to published numbers):
  fidelity   FID and KID overall and per class
  diversity  improved precision/recall (k=3) and density/coverage (k=5)
  privacy    authenticity, distance to closest record (synthetic vs holdout), NNDR share,
             the distance membership-inference AUC (jaxgen/metrics/privacy.py)
  identity   nearest training identity per image (dlib's descriptor, threshold 0.6, or the
             pixel embedder, which is NOT an identity model) and the share within the
             threshold; the share of training faces within the threshold of another
             training face tells whether the model separates these faces at all

  task_features  (with a classifier trained on the real faces, --feature_classifier) the
             Frechet distance and precision/recall (k=3) in that classifier's penultimate
             features and in dlib's face descriptors (jaxgen/metrics/task_features.py): spaces
             that see what the task needs, where random-Inception features may not; dlib's
             entry carries a caveat instead of figures where it finds no faces (drawn faces)

Each diversity, privacy and task-feature measure is given beside the holdout set's value scored
as if it were synthetic: what fresh draws from the real distribution would get.

Reading the folders (or an export's folder), opening the runs, the identity embedder and the
utility benchmark: jaxgen/workflows/datasheet.py (`datasheet_for_folders`, `datasheet_for_export`).
"""
from __future__ import annotations

import csv
import datetime
import json
import pathlib
import platform
from typing import Any, Dict, Optional, Sequence

import flax
import jax
import numpy as np

from jaxgen.metrics import formulas, privacy, task_features
from jaxgen.metrics.suite import FeatureNet, extract
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.images import save_grid

UNINFORMATIVE_SHARE = 0.05   # training faces "matching" another training face above this: caveat


def _features(net: FeatureNet, images: np.ndarray, batch: int = 64) -> np.ndarray:
    return extract(net, (images[i:i + batch] for i in range(0, len(images), batch)))["pool3"]


def _fid_kid(real: np.ndarray, fake: np.ndarray) -> Dict[str, float]:
    """FID and KID (mean) of two feature sets [N, D], [M, D]; None where a set is too small."""
    if min(len(real), len(fake)) < 2:
        return dict(fid=None, kid=None)
    fid = formulas.frechet_distance(*formulas.feature_stats(real), *formulas.feature_stats(fake))
    return dict(fid=float(fid), kid=formulas.kernel_inception_distance(real, fake, num_subsets=50)[0])


def fidelity(train_f, syn_f, train_y, syn_y, names: Sequence[str]) -> Dict[str, Any]:
    """Overall and per-class FID/KID of synthetic features against the training features."""
    out = dict(overall=_fid_kid(train_f, syn_f), per_class={})
    for k, name in enumerate(names):
        out["per_class"][name] = _fid_kid(train_f[train_y == k], syn_f[syn_y == k])
    return out


def diversity(train_f, hold_f, syn_f, k_pr: int = 3, k_dc: int = 5) -> Dict[str, Any]:
    """Precision/recall (k_pr) and density/coverage (k_dc) of synthetic and of holdout vs train."""
    out = {}
    for name, f in (("synthetic", syn_f), ("holdout_as_synthetic", hold_f)):
        p, r = formulas.precision_recall(train_f, f, k=k_pr)
        out[name] = dict(precision=p, recall=r, **privacy.density_coverage(train_f, f, k_dc))
    return out


def identity(check, syn_images) -> Dict[str, Any]:
    """Nearest training identity of every synthetic image (check: a jaxgen.identity.search
    IdentityCheck, the training faces its references, embedded once), and whether the embedder
    separates the training faces at all (the share of them within the threshold of another one)."""
    r = check.check(syn_images)
    dist, thr, n_ref = r["distance"].astype(np.float64), check.threshold, int(check.ref_index.size)
    self_match = None
    if n_ref > 1:
        d_rr = privacy.nearest(check.ref_emb, check.ref_emb, 1, exclude_self=True)[0]
        self_match = float(np.mean(d_rr[:, 0] <= thr))
    return dict(embedder=check.name, is_identity_model=check.is_identity_model, threshold=thr,
                distance=dist, index=r["index"], embedded=int(np.sum(~np.isnan(dist))), references=n_ref,
                matches=int(np.sum(dist <= thr)), match_share=float(np.mean(dist <= thr)),
                train_self_match_share=self_match, calibration=getattr(check, "calibration", None))


def identity_caveat(ident: Dict[str, Any]) -> str:
    """The sentence the datasheet must carry when the identity check cannot show anonymity."""
    notes = []
    if not ident["is_identity_model"]:
        notes.append(f"{ident['embedder']} compares pixels; it is not an identity model, so this "
                     "check finds near-copies only, not the same person.")
    share = ident["train_self_match_share"]
    if share is not None and share > UNINFORMATIVE_SHARE:
        notes.append(f"{share:.0%} of the training faces fall within the threshold "
                     f"({ident['threshold']:g}) of another training face: {ident['embedder']} does "
                     "not tell these faces apart (or the set holds the same people several times), "
                     "so identity matches here do not show that the dataset is anonymous.")
    if ident["embedded"] < len(ident["distance"]):
        notes.append(f"{len(ident['distance']) - ident['embedded']} synthetic images could not be "
                     "embedded and were not checked.")
    return " ".join(notes)


def _versions() -> Dict[str, str]:
    return dict(python=platform.python_version(), numpy=np.__version__, jax=jax.__version__,
                flax=flax.__version__)


def compute(syn, train, hold, net: FeatureNet, check=None, k_pr: int = 3, k_dc: int = 5,
            projection: Optional[Dict[str, Any]] = None, feature_classifier=None,
            task_dlib: bool = True) -> Dict[str, Any]:
    """Every measure of the datasheet for ImageDatasets syn, train, hold (same class names).

    check: the identity check (a jaxgen.identity.search.IdentityCheck whose references are
    train's faces, already embedded), or None (no identity section).
    projection: {'run': Run, 'steps': N, 'max_images': 64, 'config': ProjectConfig} (the last two
    optional) also projects training and holdout images into the run's generator (privacy's
    'projection_membership', through its datasheet_membership).
    feature_classifier: a classifier Run (or workdir) trained on the real faces: adds the
    'task_features' section (its penultimate features; dlib's descriptors unless task_dlib=False).
    Returns the JSON-ready sheet plus '_per_image' (arrays for images.csv and the sheet)."""
    names = list(train.class_names)
    syn_f, train_f, hold_f = (_features(net, d.images) for d in (syn, train, hold))
    sheet = dict(
        counts=dict(synthetic=_counts(syn, names), train=_counts(train, names), holdout=_counts(hold, names)),
        feature_net=dict(name=net.name, comparable_to_papers=bool(net.comparable)),
        fidelity=fidelity(train_f, syn_f, np.asarray(train.labels), np.asarray(syn.labels), names),
        diversity=diversity(train_f, hold_f, syn_f, k_pr, k_dc),
        privacy=privacy.privacy_report(train_f, hold_f, syn_f),
        settings=dict(k_precision_recall=k_pr, k_density_coverage=k_dc),
        versions=_versions(), date=datetime.datetime.now().isoformat(timespec="seconds"))
    if projection is not None:
        sheet["privacy"]["projection_membership"] = privacy.datasheet_membership(train=train, holdout=hold,
                                                                                 **projection)
    if feature_classifier is not None:
        sheet["task_features"] = task_features.datasheet_section(
            feature_classifier, train.images, syn.images, hold.images, dlib=task_dlib, k=k_pr)
    d_feat, i_feat = privacy.nearest(syn_f, train_f, 1)
    per_image = dict(feature_distance=d_feat[:, 0], feature_index=i_feat[:, 0])
    if check is not None:
        ident = identity(check, syn.images)
        index = ident.pop("index")
        per_image.update(identity_distance=ident.pop("distance"),
                         identity_file=[check.files[j] if j >= 0 else "" for j in index])
        ident["caveat"] = identity_caveat(dict(ident, distance=per_image["identity_distance"]))
        worst = np.argsort(np.nan_to_num(per_image["identity_distance"], nan=np.inf))[:8]
        ident["closest"] = [dict(synthetic=syn.paths[i], train=per_image["identity_file"][i],
                                 distance=float(per_image["identity_distance"][i])) for i in worst
                            if per_image["identity_file"][i]]
        sheet["identity"] = ident
    sheet["_per_image"] = per_image
    return sheet


def _counts(ds, names: Sequence[str]) -> Dict[str, int]:
    labels = np.asarray(ds.labels)
    return {n: int(np.sum(labels == k)) for k, n in enumerate(names)}


def _f(x, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown(sheet: Dict[str, Any], meta: Dict[str, Any]) -> str:
    """datasheet.md: the sheet's tables, each measure beside its reference value."""
    names = list(sheet["counts"]["train"])
    lines = ["# Datasheet", ""] + [f"- **{k}**: {v}" for k, v in meta.items()] + [
        f"- **date**: {sheet['date']}", "", "## Counts", "",
        "| class | synthetic | real train | real holdout |", "| --- | ---: | ---: | ---: |"]
    c = sheet["counts"]
    lines += [f"| {n} | {c['synthetic'][n]} | {c['train'][n]} | {c['holdout'][n]} |" for n in names]
    fn = sheet["feature_net"]
    label = "" if fn["comparable_to_papers"] else " (not comparable to published values)"
    lines += ["", f"## Fidelity: features of `{fn['name']}`{label}", "", "| class | FID | KID |",
              "| --- | ---: | ---: |"]
    fid = sheet["fidelity"]
    for n, r in [("all", fid["overall"])] + list(fid["per_class"].items()):
        lines.append(f"| {n} | {_f(r['fid'])} | {_f(r['kid'], '.4f')} |")
    dv, pv = sheet["diversity"], sheet["privacy"]
    lines += ["", "## Diversity and privacy", "",
              "| measure | synthetic | holdout scored as synthetic | reading |", "| --- | ---: | ---: | --- |"]
    for key, what in (("precision", "share inside the real manifold (k=3)"),
                      ("recall", "share of real inside the synthetic manifold (k=3)"),
                      ("density", "~1 for fresh draws (k=5)"), ("coverage", "share of real samples with a synthetic one inside their ball (k=5)")):
        lines.append(f"| {key} | {_f(dv['synthetic'][key])} | {_f(dv['holdout_as_synthetic'][key])} | {what} |")
    for key, what in (("authenticity", "0 = copies of training images"),
                      ("nndr_above_0_5", "share with NN/2nd-NN distance > 0.5; copies ~0")):
        lines.append(f"| {key} | {_f(pv['synthetic'][key])} | {_f(pv['holdout_as_synthetic'][key])} | {what} |")
    d = pv["dcr"]
    lines += [f"| distance to closest training record (median) | {_f(d['synthetic_median'])} | "
              f"{_f(d['holdout_median'])} | ratio {_f(d['ratio'])}: ~1 no copying, << 1 copying |",
              f"| membership-inference AUC (distance attack) | {_f(pv['membership_auc'])} | | "
              "0.5 = nothing leaks, 1 = training set given away |"]
    pm = pv.get("projection_membership")
    if pm:
        lines.append(f"| membership AUC (projection, {pm['steps']} steps: training images reconstruct "
                     f"better) | {_f(pm['auc'])} | | median pixel MSE train {pm['train_median_mse']:.4g}, "
                     f"holdout {pm['holdout_median_mse']:.4g}; 0.5 = nothing leaks |")
    if "task_features" in sheet:
        lines += _task_features_md(sheet["task_features"])
    if "identity" in sheet:
        lines += _identity_md(sheet["identity"])
    if "utility" in sheet:
        lines += _utility_md(sheet["utility"])
    lines += ["", "## Nearest real", "", "The synthetic images closest to a training image "
              "(feature space), worst first, each beside that training image:", "",
              "![nearest real](nearest_real.png)", ""]
    return "\n".join(lines)


def _task_features_md(task: Dict[str, Any]) -> list:
    """The 'Fidelity in task features' tables: FD and precision/recall beside the holdout's."""
    c = task["classifier"]
    lines = ["", "## Fidelity in task features", "",
             f"Features a task sees: the penultimate layer of `{c['run']}` ({c['model']}, {c['feature_dim']}-d, "
             "trained on the real faces), and dlib's face descriptor. Synthetic vs real training "
             "images, beside the real holdout scored the same way.", "",
             "| space | measure | synthetic | holdout scored as synthetic | reading |",
             "| --- | --- | ---: | ---: | --- |"]
    spaces = [("classifier", c)] + ([("dlib", task["dlib"])] if "dlib" in task else [])
    for space, r in spaces:
        if "fd" not in r:
            continue
        h = r["holdout_as_synthetic"]
        lines += [f"| {space} | Frechet distance | {_f(r['fd'])} | {_f(h['fd'])} | "
                  f"ratio {_f(r['fd_vs_holdout'], '.2f')}: ~1 as close as real faces |",
                  f"| {space} | precision (k=3) | {_f(r['precision'])} | {_f(h['precision'])} | "
                  "share inside the real manifold |",
                  f"| {space} | recall (k=3) | {_f(r['recall'])} | {_f(h['recall'])} | "
                  "share of real inside the synthetic manifold |"]
    notes = [(space, r.get("caveat")) for space, r in spaces]
    lines += [""] + [f"- **Caveat ({space})**: {note}" for space, note in notes if note]
    return lines


def _identity_md(ident: Dict[str, Any]) -> list:
    lines = ["", f"## Identity: `{ident['embedder']}`, threshold {ident['threshold']:g}", "",
             f"- synthetic images within the threshold of a training face: **{ident['matches']}** "
             f"({ident['match_share']:.1%}) of {ident['embedded']} embedded",
             f"- training faces within the threshold of another training face: "
             f"{_f(ident['train_self_match_share'], '.1%')}"]
    c = ident.get("calibration")
    if c and c.get("method") == "calibrated":
        q = c["quantiles"]
        lines.append(f"- threshold calibrated on the training faces: percentile {c['percentile']:g} of {c['sample']} "
                     f"training faces' distances to their nearest other one (min {q['min']:.3f}, 1% {q['p1']:.3f}, "
                     f"5% {q['p5']:.3f}, median {q['p50']:.3f}; {c['share_within_fixed']:.0%} within the fixed "
                     f"{c['cap']:g}), kept within [{c['floor']:g}, {c['cap']:g}]; shifts up to {c['max_shift']} px "
                     "count as copies")
    elif c:
        lines.append(f"- threshold: {c['method']}")
    if ident["caveat"]:
        lines.append(f"- **Caveat**: {ident['caveat']}")
    return lines


def _utility_md(u: Dict[str, Any]) -> list:
    def ci(d):
        if d is None:
            return "n/a"
        return f"{d['mean']:.3f}" + (f" ± {d['half_width']:.3f}" if d.get("half_width") is not None else "")
    return ["", f"## Utility: synthetic-train / real-test (`{u['classifier']}`, {u['seeds']} seeds)", "",
            f"Tested on {u['test']} (real, never used for training); ± the 95% interval over seeds; "
            f"full report in {u['report']}.", "", "| trained on | real-test accuracy |", "| --- | ---: |",
            f"| real | {ci(u['real_train_acc'])} |", f"| synthetic | {ci(u['synthetic_train_acc'])} |",
            f"| real + synthetic | {ci(u['real_plus_synthetic_acc'])} |",
            f"| gap (real - synthetic) | {ci(u['gap'])} |"]


def nearest_sheet(syn, train, per_image: Dict[str, np.ndarray], path: pathlib.Path, n: int = 16) -> None:
    """nearest_real.png: the n synthetic images nearest a training image, each beside it."""
    order = np.argsort(per_image["feature_distance"])[:n]
    pairs = np.stack([np.stack([syn.images[i], train.images[per_image["feature_index"][i]]])
                      for i in order]).reshape((-1,) + syn.images.shape[1:])
    save_grid(pairs, path, cols=8, drange=(0, 255))


def write_images_csv(syn, train, per_image: Dict[str, np.ndarray], path: pathlib.Path,
                     threshold: Optional[float]) -> None:
    """images.csv: one row per synthetic image with its nearest training image and distances."""
    rows = [["synthetic", "class", "nearest_train_features", "feature_distance", "nearest_train_identity",
             "identity_distance", "identity_match"]]
    for i, path_i in enumerate(syn.paths):
        row = [path_i, syn.class_names[syn.labels[i]], train.paths[per_image["feature_index"][i]],
               f"{per_image['feature_distance'][i]:.6g}"]
        if "identity_distance" in per_image:
            d = per_image["identity_distance"][i]
            row += [per_image["identity_file"][i], "" if np.isnan(d) else f"{d:.6g}",
                    "" if np.isnan(d) else str(bool(d <= threshold))]
        rows.append(row)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    tmp.replace(path)


def write(out: pathlib.Path, sheet: Dict[str, Any], syn, train, meta: Dict[str, Any]) -> Dict[str, Any]:
    """datasheet.json / .md, nearest_real.png and images.csv into the existing folder `out`."""
    per_image = sheet.pop("_per_image")
    sheet = dict(sheet, meta=meta)
    nearest_sheet(syn, train, per_image, out / "nearest_real.png")
    thr = sheet.get("identity", {}).get("threshold")
    write_images_csv(syn, train, per_image, out / "images.csv", thr)
    write_text_atomic(out / "datasheet.json", json.dumps(sheet, indent=1) + "\n")
    write_text_atomic(out / "datasheet.md", markdown(sheet, meta))
    return sheet
