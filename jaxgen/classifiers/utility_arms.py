"""The utility benchmark's arms (`jaxgen.classifiers.utility`): their names and the images each
trains on.

An arm is a training set of the benchmark: 'real', 'synthetic' (as many synthetic images per
class as the real folder has), 'synthetic x<m>' (m times as many), TEACHER_ARM (the
'synthetic' images with a classifier's soft labels) and 'real+synthetic'. `plan_data`
checks the three folders and picks each arm's files (fixed random subsets, nothing
written); `materialise` lays an arm out as a class-folder dataset the trainer reads.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from jaxgen.data.folder import DatasetError, scan_image_folder
from jaxgen.utils.files import write_text_atomic

ARMS = ("real", "synthetic", "real+synthetic")
TEACHER_ARM = "synthetic (teacher labels)"
LABEL_BY_HINT = "export with --label_by <classifier run>"


def multiple_arm(m: int) -> str:
    """The arm trained on m x the real count per class: 'synthetic' for 1 (the standard
    Classification Accuracy Score row), 'synthetic x<m>' otherwise."""
    return "synthetic" if int(m) == 1 else f"synthetic x{int(m)}"


def arm_dir(arm: str) -> str:
    """An arm's name in paths: 'synthetic x4' -> 'synthetic_x4', TEACHER_ARM ->
    'synthetic_teacher_labels'; the three standard arms keep their names."""
    return arm.replace(" (", "_").replace(")", "").replace(" ", "_")


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


def _check_folders(real_train: str, synthetic: str, test: str):
    """(real, synthetic, test {class: sorted paths}, class names) of the three folders, which
    must have the same >= 2 class sub-folders (else a one-line DatasetError)."""
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
    return real, syn, tst, names


def _pick(real: Dict[str, List[str]], syn: Dict[str, List[str]], synthetic: str,
          multiples: Sequence[int]) -> Dict[int, Dict[str, List[str]]]:
    """{m: {class: sorted synthetic paths}} for m = 1 and each multiple: per class with n real
    images, a fixed random n (the 1x subset), plus the first (m - 1) n of a fixed random order
    of the other synthetic images (so each multiple holds the smaller ones' images)."""
    top = max(multiples)
    rng, more = np.random.default_rng(0), np.random.default_rng(1)
    out: Dict[int, Dict[str, List[str]]] = {m: {} for m in sorted(set(multiples) | {1})}
    for n in real:
        k = len(real[n])
        if len(syn[n]) < top * k:
            why = ("the protocol trains on the same number per class" if top == 1 else
                   f"--synthetic_multiple {top} trains on {top} x that number per class")
            raise DatasetError(f"--synthetic {synthetic}/{n} has {len(syn[n])} images, the real "
                               f"training class {k}; {why}: export at least {top * k} per class")
        first = rng.choice(syn[n], k, replace=False).tolist()
        taken = set(first)
        rest = more.permutation([f for f in syn[n] if f not in taken]).tolist()
        for m in out:
            out[m][n] = sorted(first + rest[:(m - 1) * k])
    return out


def teacher_labels(synthetic: str, files: Dict[str, List[str]],
                   num_classes: int) -> Tuple[Dict[str, List[float]], List[str]]:
    """({path: teacher_probs, num_classes floats} for every path of `files`, the sorted teacher
    runs named) from <synthetic>/metadata.jsonl (rows {"file": "<class>/<name>", "teacher_probs",
    "teacher"}); no file, a picked image without probs or a wrong length: one-line DatasetError."""
    meta = pathlib.Path(synthetic).expanduser() / "metadata.jsonl"
    if not meta.is_file():
        raise DatasetError(f"--teacher_arm: {meta} not found, so no teacher labels; {LABEL_BY_HINT}")
    rows = {}
    for line in meta.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[pathlib.PurePath(r["file"]).as_posix()] = r
    paths = [f for fs in files.values() for f in fs]
    probs, teachers, missing = {}, set(), []
    for f in paths:
        r = rows.get(pathlib.PurePath(os.path.relpath(f, meta.parent)).as_posix(), {})
        if r.get("teacher_probs") is None:
            missing.append(os.path.relpath(f, meta.parent))
        elif len(r["teacher_probs"]) != num_classes:
            raise DatasetError(f"--teacher_arm: {meta}: {r['file']} has {len(r['teacher_probs'])} "
                               f"teacher_probs, the dataset {num_classes} classes; {LABEL_BY_HINT}")
        else:
            probs[f] = [float(x) for x in r["teacher_probs"]]
            teachers.update([str(r["teacher"])] if r.get("teacher") else [])
    if missing:
        raise DatasetError(f"--teacher_arm: {meta} has no teacher_probs for {len(missing)} of the {len(paths)} "
                           f"synthetic images the arm trains on (e.g. {missing[0]}); {LABEL_BY_HINT}")
    return probs, sorted(teachers)


def plan_data(real_train: str, synthetic: str, test: str, multiples: Sequence[int] = (1,),
              teacher: bool = False) -> Dict[str, Any]:
    """Check the three folders and choose each arm's files; nothing is written.

    'synthetic' takes, per class, as many synthetic images as the real folder has (a fixed
    random subset), 'synthetic x<m>' m times as many (`_pick`); a class with too few
    synthetic images for the largest multiple is a one-line error. teacher: TEACHER_ARM,
    the 'synthetic' images with soft['synthetic (teacher labels)'] {path: probs [K]}."""
    real, syn, tst, names = _check_folders(real_train, synthetic, test)
    picked = _pick(real, syn, synthetic, multiples)
    arms = {"real": real, "synthetic": picked[1],
            "real+synthetic": {n: real[n] + picked[1][n] for n in names}}
    arms.update({multiple_arm(m): picked[m] for m in multiples if m != 1})
    plan = dict(class_names=names, arms=arms, test_counts={n: len(tst[n]) for n in names}, soft={}, teachers=[])
    if teacher:
        arms[TEACHER_ARM] = picked[1]
        plan["soft"][TEACHER_ARM], plan["teachers"] = teacher_labels(synthetic, picked[1], len(names))
    return plan


def _link(src: str, dst: pathlib.Path) -> None:
    """Hard link `src` at `dst` (a copy across file systems); an existing `dst` is kept."""
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def materialise(arm_files: Dict[str, List[str]], root: pathlib.Path,
                probs: Dict[str, List[float]] = None) -> None:
    """`root/<class>/<i>_<name>`: the arm's image folder (idempotent); with `probs` ({source
    path: K probabilities}) also root/metadata.jsonl, one {"file", "class_name",
    "teacher_probs"} per image (what the trainer's config.data.soft_labels_from reads)."""
    rows = []
    for name, files in arm_files.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            dst = f"{i:05d}_{pathlib.Path(f).name}"
            _link(f, d / dst)
            if probs is not None:
                rows.append(json.dumps({"file": f"{name}/{dst}", "class_name": name, "teacher_probs": probs[f]}))
    if probs is not None:
        write_text_atomic(root / "metadata.jsonl", "\n".join(rows) + "\n")
