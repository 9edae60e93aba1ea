"""Write a synthetic image-folder dataset from a trained generator, checked and with its datasheet.

  python -m jaxgen.workflows.generate --checkpoint runs/acne_tiny --out data/synthetic_tiny \
      --num_per_class 64 [--classes healthy,severe] [--psi 1.0] [--seed 0] [--best] \
      [--real DIR] [--holdout DIR] [--identity auto|dlib|pixel] [--identity_threshold T]
      [--identity_percentile P] [--no_datasheet] [--rebuild]
      [--label_by CLASSIFIER_RUN [--keep top|threshold] [--min_conf P] [--pool_multiple M]
       [--allow_short]] [--batch B]

Any generator run `jaxgen.runs.open_run` opens (StyleGAN2 or DCGAN workdir,
networks directory, NVIDIA .pkl). One sub-folder per class
(`<class>/<class>_00012.png`, class names from the run's run.json; `--classes`
picks some of them by name). Candidate i of class c always comes from the latent
seed (seed, c, i), whichever classes are picked.

No unchecked export: every candidate is checked against the generator's real
training faces (--real, default the run's own config.json data) and one closer
than the identity model's threshold to any of them is refused (not written; its
file number stays unused); more candidates are drawn until num_per_class pass,
and a class where fewer than one in --max_tries pass stops the export with an
error (the generator copies its training faces). Identity models
(jaxgen/evolve/identity.py): dlib's face descriptor (threshold 0.6); 'auto' uses
the pixel near-copy check, which is NOT an identity model, for a run trained on the
drawn demo faces, which dlib cannot tell apart. The pixel check is shift-tolerant (a
copy moved by 1-2 px is found) and, without --identity_threshold, its threshold is
calibrated on the training faces: the --identity_percentile (1st) percentile of their
distances to their nearest other training face, so fresh faces of the real distribution
pass and only closer candidates are refused (within [0.05, 0.3]). `metadata.jsonl` has one
line per image: file, class, latent seed, truncation psi, generator, and `identity`: the
nearest real file, its distance, the threshold, the model and (calibrated) the calibration:
percentile, faces measured, distance quantiles.

The datasheet (jaxgen/metrics/datasheet.py: fidelity, diversity, privacy,
identity) is written beside the images (datasheet.json, datasheet.md,
nearest_real.png, images.csv) against the real training faces and held-out real
faces (--holdout, default for demo data: its `_test` render); --no_datasheet
skips it.

Labelled by a classifier (--label_by, the acne paper's sorting step: an
unconditional GAN's samples labelled by a classifier trained on the real faces
train a downstream classifier better than a conditional GAN's). The classifier
run's class names must equal the export's (its order is the export's class
order). An unconditional generator (which needs --label_by: it has no classes)
draws ONE pool of --pool_multiple (default 4) x num_per_class x K candidates,
candidate i from the latent seed (seed, i); a conditional generator draws
pool_multiple x num_per_class candidates of each class from its class stream
(seed, c, i) and keeps only those the classifier puts in class c (class-filtered
sampling). The whole pool is generated and classified `--batch` at a time; only
the softmax [P, K] is kept in memory and the kept images are rendered again from
their seeds. Candidate i qualifies for class c when its argmax is c and p_c >=
--min_conf. --keep top (default): per class the num_per_class qualifying
candidates with the highest p_c (min_conf default 0); --keep threshold: the
first qualifying ones in stream order (min_conf default 0.5). A refused near-copy
is skipped for the next one (all of this before anything is written). A class
that cannot be filled is an error naming the class and the fix, and nothing is
written, unless --allow_short (it writes what it found and says so). --max_tries
applies to exports without --label_by. The acceptance (per class: candidates drawn, argmax counts, qualifying,
kept, mean confidence of the kept, refused by the identity check) is printed and
written to acceptance.json. Each metadata row then also has `teacher_probs`
[p_0..p_{K-1}] (the classifier's softmax of the written PNG, in the classifier's
= the export's class order) and `teacher` (the classifier run); an unconditional
candidate's `latent_seed` is [seed, i].

Resumable: images already present are re-checked and kept, so an interrupted
export continues where it stopped; the class folders then hold exactly the images
metadata.jsonl lists (`<class>_NNNNN.png` files it does not list, e.g. written before a
crash or at candidate numbers this run did not reach, are removed; other files are left
alone), and the datasheet scores exactly the listed images. The settings that decide
which images are written (checkpoint, psi, seed, num_per_class, class names, --real,
identity model, threshold and percentile, --label_by, keep rule, --min_conf,
--pool_multiple; once opened: the generator's kind, step and weights' SHA-256, the model
and threshold in use) are stored in the output marker; a rerun into the same folder with
other settings is refused in one line naming the difference, before anything is written
(stale images would mix in); --rebuild instead removes that export's own files (its
images, metadata.jsonl, acceptance.json, datasheet) once every input is checked, and
writes the new one. --classes may differ between runs (adds classes). --out must be new, empty or an
earlier generate output (its `.jaxgen-output.json` marker); a folder of other
files, a missing --real/--holdout, or class names the real folder lacks are
refused before anything is written (`jaxgen.utils.outputs`). Paths are checked to stay
inside --out. Progress (images, rate, ETA) is printed every 10 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxgen.cli import run_main, use_compile_cache
from jaxgen.classifiers.sorting import to_classifier_input
from jaxgen.data import load_dataset, load_image_folder
from jaxgen.data.demo_faces import write_demo_holdout
from jaxgen.data.folder import ImageDataset
from jaxgen.errors import ConfigError, OutputError
from jaxgen.evolve.identity import IdentityCheck, make_embedder
from jaxgen.metrics.datasheet import datasheet_for_export
from jaxgen.metrics.suite import make_feature_net
from jaxgen.runs import GENERATOR_KINDS, Run, open_run
from jaxgen.utils.files import inside, png_complete, save_png_atomic, write_text_atomic
from jaxgen.utils.images import to_uint8
from jaxgen.utils.outputs import MARKER, check_output, claim_output, forget_settings, read_marker
from jaxgen.utils.progress import Progress

OUTPUT_KIND = "generate"
DRAWN = ("demo", "depth_demo")   # the embedded drawn faces: dlib cannot tell them apart


@dataclasses.dataclass
class Checks:
    """What every export is checked and described against (see `prepare_checks`)."""

    train: ImageDataset                 # the generator's real training faces
    holdout: Optional[ImageDataset]     # real faces it never saw (None: no datasheet)
    identity: IdentityCheck             # train embedded once
    source: str                         # where train came from, for the records


def _legacy_output(folder: pathlib.Path) -> bool:
    """True for a generate output written before the marker: its metadata.jsonl rows."""
    try:
        first = (folder / "metadata.jsonl").read_text().split("\n", 1)[0]
        row = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(row, dict) and {"latent_seed", "checkpoint", "class_name"} <= set(row)


def _run_data(g: Run) -> Optional[Dict[str, Any]]:
    """The `data` section of the run's config.json (None: no readable one, e.g. an NVIDIA .pkl)."""
    try:
        data = json.loads((pathlib.Path(g.path) / "config.json").read_text()).get("data")
    except (OSError, ValueError, AttributeError):
        return None
    return data if isinstance(data, dict) and data.get("source") in ("folder",) + DRAWN else None


def _training_faces(g: Run, checkpoint: str, real: str, data: Optional[dict]) -> Tuple[ImageDataset, str]:
    """The generator's real training faces at its resolution: --real, else its config's data."""
    if real:
        if not pathlib.Path(real).is_dir():
            raise ConfigError(f"--real {real}: not a folder; give the generator's training images "
                              "(class sub-folders)")
        return load_image_folder(real, g.resolution, g.channels, cache_dir=None), real
    if data is None:
        raise ConfigError(f"--real: {checkpoint} does not say which faces it was trained on; give "
                          "--real <folder of its training images>: every export is checked against them")
    return load_dataset(data), str(data["path"])


def _holdout_faces(g: Run, holdout: str, data: Optional[dict], names: Sequence[str]) -> ImageDataset:
    """Held-out real faces for the datasheet: --holdout, else a demo run's `_test` render."""
    if not holdout:
        if data is None or data.get("source") != "demo":
            raise ConfigError("--holdout: give held-out real faces the generator never saw (class "
                              "sub-folders) for the export's datasheet, or --no_datasheet to skip it")
        holdout = write_demo_holdout(data, names)
    elif not pathlib.Path(holdout).is_dir():
        raise ConfigError(f"--holdout {holdout}: not a folder; give held-out real images (class sub-folders)")
    return load_image_folder(holdout, g.resolution, g.channels, cache_dir=None)


def prepare_checks(g: Run, checkpoint: str, picked: Sequence[str], real: str = "", holdout: str = "",
                   identity: str = "auto", threshold: float = -1.0, datasheet: bool = True,
                   log=print, percentile: float = 1.0) -> Checks:
    """Load and embed what the export is checked against (the pixel check's threshold calibrated
    on the training faces unless --identity_threshold gives it); one-line errors name the flag."""
    data = _run_data(g)
    train, source = _training_faces(g, checkpoint, real, data)
    unconditional = list(picked) == ["all"]     # one class: compared with every real face
    missing = [] if unconditional else [n for n in picked if n not in train.class_names]
    if missing:
        raise ConfigError(f"--real {source} has no class {', '.join(map(repr, missing))} of the generator "
                          f"(it has {', '.join(train.class_names)}); give the folder it was trained on")
    hold = _holdout_faces(g, holdout, data, train.class_names) if datasheet else None
    if identity == "auto":
        identity = "pixel" if not real and data is not None and data["source"] in DRAWN else "dlib"
    if identity not in ("dlib", "pixel"):
        raise ConfigError(f"--identity={identity!r}: use 'auto', 'dlib' or 'pixel' (every export is checked)")
    embedder = make_embedder(identity, threshold, percentile=percentile)
    try:
        check = IdentityCheck(embedder, train.images, train.paths).require()
    except ValueError as e:
        raise ConfigError(f"--real {source}: {e}") from None
    log(f"generate: identity check against {len(train)} real faces from {source} with {check.name} "
        f"(threshold {check.threshold:g}{_calibration_note(check)})" + (
            "; the pixel check is NOT an identity model, it finds near-copies only" if identity == "pixel" else ""))
    return Checks(train, hold, check, source)


def _calibration_note(check: IdentityCheck) -> str:
    """', calibrated: ...' for the log line of a calibrated threshold ('' otherwise)."""
    c = check.calibration
    if not c or c.get("method") != "calibrated":
        return "" if not c else f", {c['method']}"
    return (f", calibrated: percentile {c['percentile']:g} of {c['sample']} training faces' distances to "
            f"their nearest other one, {c['quantiles']['p1']:.3f}/{c['quantiles']['p50']:.3f} at 1%/50%, "
            f"{c['share_within_fixed']:.0%} within the fixed {c['cap']:g}")


def pick_classes(g: Run, checkpoint: str, class_names: Optional[Sequence[str]] = None,
                 classes: Optional[Sequence[str]] = None) -> List[Tuple[int, str]]:
    """(class index, name) of the classes to export: all, or those named in `classes`.

    class_names renames the generator's classes (for a run without names).
    """
    k = g.num_classes
    names = list(class_names or g.class_names or ["all"])
    if k and len(names) != k:
        raise ConfigError(f"{len(names)} class names for the generator {checkpoint} with {k} classes")
    if not classes:
        return list(enumerate(names))
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ConfigError(f"--classes: {', '.join(map(repr, unknown))} not among the classes of "
                          f"{checkpoint} ({', '.join(names)}); pick some of those")
    return [(ci, n) for ci, n in enumerate(names) if n in classes]


@dataclasses.dataclass(frozen=True)
class LabelRule:
    """How --label_by keeps candidates: 'top' or 'threshold', the confidence floor, the pool size
    (pool_multiple x num_per_class x K unconditional, x num_per_class per class conditional)."""

    keep: str
    min_conf: float
    pool_multiple: float
    allow_short: bool


def label_rule(label_by: str, keep: Optional[str], min_conf: Optional[float], pool_multiple: Optional[float],
               allow_short: bool) -> Optional[LabelRule]:
    """The LabelRule of the flags (defaults filled in), None without --label_by; one-line errors."""
    if not label_by:
        given = [f for f, v in (("--keep", keep), ("--min_conf", min_conf), ("--pool_multiple", pool_multiple),
                                ("--allow_short", allow_short or None)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --label_by CLASSIFIER_RUN (they pick labelled "
                              "candidates)")
        return None
    keep = keep or "top"
    if keep not in ("top", "threshold"):
        raise ConfigError(f"--keep={keep!r}: use 'top' (most confident per class) or 'threshold' (--min_conf)")
    min_conf = (0.5 if keep == "threshold" else 0.0) if min_conf is None else float(min_conf)
    if not 0.0 <= min_conf <= 1.0:
        raise ConfigError(f"--min_conf={min_conf:g}: a probability in [0, 1]")
    pool_multiple = 4.0 if pool_multiple is None else float(pool_multiple)
    if pool_multiple < 1:
        raise ConfigError(f"--pool_multiple={pool_multiple:g}: give at least 1 (candidates per wanted image)")
    return LabelRule(keep, min_conf, pool_multiple, bool(allow_short))


def _rule_setting(rule: Optional[LabelRule]) -> Optional[Dict[str, Any]]:
    """The label rule as stored with the export's settings: --allow_short left out (it changes
    no image, so a rerun may add it)."""
    return None if rule is None else {k: v for k, v in dataclasses.asdict(rule).items() if k != "allow_short"}


def _abs(path: str) -> str:
    """An absolute path string for the stored settings ('' stays '')."""
    return str(pathlib.Path(path).expanduser().absolute()) if path else ""


def _refuse_changed(out_dir: pathlib.Path, settings: Dict[str, Any], only_given: bool = False) -> None:
    """OutputError (one line, nothing written) when `out_dir` holds an export with other settings.

    only_given: compare only the keys of `settings` (the check before the generator is opened;
    the generator's fingerprint and the threshold in use are compared once they are known)."""
    marker = read_marker(out_dir) if out_dir.is_dir() else None
    stored = (marker or {}).get("settings")
    now = json.loads(json.dumps(settings))
    if not isinstance(stored, dict):
        return
    keys = set(now) if only_given else set(stored) | set(now)
    diff = "; ".join(f"{k}: {stored.get(k)!r} -> {now.get(k)!r}" for k in sorted(keys) if stored.get(k) != now.get(k))
    if diff:
        raise OutputError(f"--out {out_dir} holds an export made with other settings ({diff}); nothing was "
                          "written: rerun with its settings to resume it, choose a new --out, or pass "
                          "--rebuild to replace that export's images with new ones")


def generator_fingerprint(g: Run) -> Dict[str, Any]:
    """What identifies the generator's weights beyond its path: kind, checkpoint step and a SHA-256
    of its parameters (a workdir trained further, or another .pkl at the same path, differs)."""
    leaves = jax.tree_util.tree_leaves(getattr(g, "variables", None))
    h = hashlib.sha256()
    for leaf in leaves:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    step = getattr(g, "step", None)
    return dict(kind=getattr(g, "kind", None), step=None if step is None else int(step),
                params_sha256=h.hexdigest()[:20] if leaves else None)


EXPORT_FILES = ("metadata.jsonl", "acceptance.json", "datasheet.json", "datasheet.md", "images.csv",
                "nearest_real.png")


def _own_images(cdir: pathlib.Path, name: str) -> List[pathlib.Path]:
    """The files of class folder `cdir` in the export's own pattern: <name>_NNNNN.png and the
    temporary <name>_NNNNN.tmp.png of a write cut short."""
    digits = "[0-9]" * 5
    return sorted(list(cdir.glob(f"{name}_{digits}.png")) + list(cdir.glob(f"{name}_{digits}.tmp.png")))


def remove_unlisted(cdir: pathlib.Path, name: str, keep: Sequence[str]) -> int:
    """Delete the export-pattern files of class folder `cdir` that are not in `keep` (file names):
    images of candidate numbers this run did not reach, or written before a crash and never listed.
    Returns how many; other files are left alone."""
    gone = [p for p in _own_images(cdir, name) if p.name not in set(keep)]
    for p in gone:
        p.unlink()
    return len(gone)


def clear_export(out_dir: pathlib.Path) -> int:
    """--rebuild: delete what this export listed or wrote (the <class>_NNNNN.png files of its
    class folders, which hold every image it listed, metadata.jsonl, acceptance.json, the
    datasheet files) and forget its settings; the user's own files stay. Returns images removed."""
    n = 0
    for d in sorted(p for p in out_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        n += remove_unlisted(d, d.name, ())
        if not any(d.iterdir()):
            d.rmdir()
    for f in EXPORT_FILES:
        (out_dir / f).unlink(missing_ok=True)
    forget_settings(out_dir)
    return n


def _store_settings(out_dir: pathlib.Path, settings: Dict[str, Any]) -> None:
    """Record the export's settings in its marker (a marker written before them is adopted)."""
    marker = read_marker(out_dir) or {}
    if marker.get("settings") != json.loads(json.dumps(settings)):
        write_text_atomic(out_dir / MARKER, json.dumps(dict(marker, settings=settings), indent=1) + "\n")


class Teacher:
    """The classifier run of --label_by: softmax probabilities of uint8 images.

    probs(images uint8 [N, H, W, C]) -> float32 [N, K], K in the order of the run's class_names
    (= the export's classes). Images are mapped to the classifier's resolution and channels by
    `to_classifier_input`; batches are zero-padded to `batch` rows so one compilation serves all.
    """

    def __init__(self, run: Run, batch: int):
        self.run, self.path, self.names, self.batch = run, str(run.path), list(run.class_names), int(batch)
        model, res, ch = run.model, run.resolution, run.channels
        self._fn = jax.jit(lambda v, x: jax.nn.softmax(model.apply(
            v, to_classifier_input(x.astype(jnp.float32) / 127.5 - 1.0, res, ch), train=False), -1))

    def probs(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, C] -> float32 [N, K] softmax, `batch` rows at a time."""
        out = [np.zeros((0, len(self.names)), np.float32)]
        for s in range(0, len(images), self.batch):
            x = np.asarray(images[s:s + self.batch])
            n = len(x)
            if n < self.batch:
                x = np.concatenate([x, np.zeros((self.batch - n,) + x.shape[1:], x.dtype)])
            out.append(np.asarray(self._fn(self.run.variables, x), np.float32)[:n])
        return np.concatenate(out)


def open_teacher(label_by: str, g: Run, checkpoint: str, class_names: Optional[Sequence[str]],
                 batch: int) -> Teacher:
    """The --label_by classifier; ConfigError unless its class names equal the export's (the
    generator's, or class_names; any for an unconditional generator without class_names)."""
    clf = open_run(label_by, kinds=("classifier",))
    want = list(class_names or (g.class_names if g.num_classes else clf.class_names))
    if list(clf.class_names) != want:
        raise ConfigError(f"--label_by {label_by}: its classes ({', '.join(clf.class_names)}) are not the "
                          f"export's classes of {checkpoint} ({', '.join(want)}, in this order); give a "
                          "classifier trained on the same class folders")
    return Teacher(clf, batch)


def export_dataset(checkpoint: str, out: str, num_per_class: int, psi: float = 1.0, seed: int = 0,
                   best: bool = False, batch: int = 32, class_names: Optional[list] = None,
                   classes: Optional[Sequence[str]] = None, progress_every: float = 10.0,
                   real: str = "", holdout: str = "", identity: str = "auto", threshold: float = -1.0,
                   datasheet: bool = True, feature_net: str = "random_inception", inception_weights: str = "",
                   max_tries: float = 4.0, label_by: str = "", keep: Optional[str] = None,
                   min_conf: Optional[float] = None, pool_multiple: Optional[float] = None,
                   allow_short: bool = False, log=print, percentile: float = 1.0, rebuild: bool = False) -> dict:
    """Write num_per_class checked images per class of the generator run `checkpoint` into `out`
    (resumable), then its datasheet. With label_by (a classifier run) the images are candidates
    the classifier labels (see the module doc; keep, min_conf, pool_multiple, allow_short).

    classes: names of the classes to write (default all). percentile: the pixel check's
    calibration percentile (without a threshold). rebuild: an export with other settings in
    `out` is replaced (`clear_export`, once every input is checked) instead of refused. Returns
    {'out', 'written' (new images), 'total' (rows of metadata.jsonl), 'classes', 'refused' (per
    class), 'datasheet'}, with label_by also 'acceptance' (per class, as in acceptance.json) and
    'short' ({class: kept} of classes left short by --allow_short).
    """
    rule = label_rule(label_by, keep, min_conf, pool_multiple, allow_short)
    if threshold < 0 and not 0.0 <= float(percentile) <= 100.0:
        raise ConfigError(f"--identity_percentile={percentile:g}: a percentile in [0, 100] (1: refuse candidates "
                          "nearer a training face than 1% of the training faces are to their nearest other one)")
    settings = dict(checkpoint=_abs(checkpoint), best=bool(best), psi=float(psi), seed=int(seed),
                    num_per_class=int(num_per_class), class_names=list(class_names or []), real=_abs(real),
                    identity=identity, identity_threshold=float(threshold), label_by=_abs(label_by),
                    rule=_rule_setting(rule), identity_percentile=float(percentile) if threshold < 0 else None)
    out_dir = check_output(out, OUTPUT_KIND, legacy=_legacy_output)   # before opening anything
    if not rebuild:
        _refuse_changed(out_dir, settings, only_given=True)
    if int(num_per_class) < 1:
        raise ConfigError(f"--num_per_class={num_per_class}: give at least 1 image per class")
    if float(max_tries) < 1:
        raise ConfigError(f"--max_tries={max_tries}: give at least 1 (candidates per wanted image)")
    g = open_run(checkpoint, "best" if best else "latest", kinds=GENERATOR_KINDS)
    if not g.num_classes and not label_by:
        raise ConfigError(f"--checkpoint {checkpoint} is an unconditional generator: it has no classes; pass "
                          "--label_by CLASSIFIER_RUN to label its samples with a classifier of the real faces")
    teacher = open_teacher(label_by, g, checkpoint, class_names, batch) if label_by else None
    picked = pick_classes(g, checkpoint, class_names or (teacher.names if teacher else None), classes)
    checks = prepare_checks(g, checkpoint, [n for _, n in picked], real, holdout, identity, threshold,
                            datasheet, log, percentile)
    net = make_feature_net(inception_weights, feature_net) if datasheet else None
    settings.update(generator=generator_fingerprint(g), identity_model=checks.identity.name,
                    threshold_used=round(checks.identity.threshold, 5))
    if not rebuild:
        _refuse_changed(out_dir, settings)
    elif out_dir.is_dir():
        log(f"generate: --rebuild: removed {clear_export(out_dir)} images of the earlier export in {out_dir}")
    ctx = _Export(g, out_dir, picked, checks, int(num_per_class), float(psi), int(seed), int(batch),
                  progress_every, str(checkpoint), settings, log)
    if teacher is None:
        result = _export_plain(ctx, max_tries)
    else:
        result = _export_labelled(ctx, teacher, rule)
    result["datasheet"] = _datasheet(ctx, net, result) if datasheet else None
    return result


@dataclasses.dataclass
class _Export:
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
    log: Any

    def claim(self) -> None:
        """Create/stamp the output folder with the settings: the first write."""
        claim_output(self.out_dir, OUTPUT_KIND, legacy=_legacy_output)
        _store_settings(self.out_dir, self.settings)


def _export_plain(e: _Export, max_tries: float) -> dict:
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
        e.log(f"generate: {name}: {e.n} images ({w.new} new), {w.refused} candidates "
              f"refused within {e.checks.identity.threshold:g} of a real face")
    rows = _metadata(e.out_dir, e.picked, records, e.psi, e.seed, e.checkpoint)
    return dict(out=str(e.out_dir), written=written, total=len(rows), classes=[n for _, n in e.picked],
                refused=refused)


def _datasheet(e: _Export, net, result: dict) -> dict:
    """The export's datasheet beside its images; logs its privacy numbers."""
    meta = dict(generator=e.checkpoint, psi=e.psi, seed=e.seed, real_train=e.checks.source,
                refused_near_copies=result["refused"])
    if "acceptance" in result:
        meta.update(teacher=e.settings["label_by"], label_rule=e.settings["rule"],
                    kept={n: a["kept"] for n, a in result["acceptance"]["per_class"].items()})
    sheet = datasheet_for_export(e.out_dir, e.checks.train, e.checks.holdout, net, e.checks.identity, meta,
                                 feature_classifier=e.settings["label_by"] or None)
    e.log(f"generate: datasheet: membership AUC {sheet['privacy']['membership_auc']:.3f}, DCR ratio "
          f"{sheet['privacy']['dcr']['ratio']:.3f} -> {e.out_dir / 'datasheet.md'}")
    return sheet


def _latents(z_dim: int, seed: int, ci: Optional[int], ids: Sequence[int]) -> np.ndarray:
    """Latents float32 [len(ids), z_dim]: candidate i of class ci from the seed (seed, ci, i), of the
    unconditional stream (ci None) from (seed, i); re-runs reproduce every image."""
    key = (lambda i: [seed, i]) if ci is None else (lambda i: [seed, ci, i])
    return np.stack([np.random.default_rng(key(i)).standard_normal(z_dim) for i in ids]).astype(np.float32)


def _draw_pool(e: _Export, teacher: Teacher, ci: Optional[int], size: int, bar: Progress) -> np.ndarray:
    """Teacher probabilities float32 [size, K] of candidates 0..size-1 of one latent stream (class ci,
    or the unconditional one for None), generated `batch` at a time; the images are dropped."""
    probs = np.zeros((size, len(teacher.names)), np.float32)
    for s in range(0, size, e.batch):
        ids = list(range(s, min(s + e.batch, size)))
        imgs = to_uint8(e.g.generate(_latents(e.g.z_dim, e.seed, ci, ids), np.full(len(ids), ci or 0), e.psi))
        probs[s:s + len(ids)] = teacher.probs(imgs)
        bar.update(len(ids))
    return probs


def qualifying(probs: np.ndarray, k: int, rule: LabelRule) -> np.ndarray:
    """Candidate ids (rows of probs [P, K]) that may be kept for class k, in the order they are
    tried: argmax k and p_k >= min_conf; 'top' by p_k, highest first (ties: lower id), 'threshold'
    in stream order."""
    ok = np.flatnonzero((probs.argmax(-1) == k) & (probs[:, k] >= rule.min_conf))
    return ok[np.argsort(-probs[ok, k], kind="stable")] if rule.keep == "top" else ok


def _short_message(name: str, found: int, drawn: int, want: int, rule: LabelRule, refused: int = -1) -> str:
    """The one-line error of a class the pool cannot fill (refused >= 0: after the identity check)."""
    check = "" if refused < 0 else f" and passed the identity check ({refused} near-copies refused)"
    return (f"generate: {name}: only {found} of {drawn} candidates were put in {name} by the classifier "
            f"with confidence >= {rule.min_conf:g}{check}, {want} wanted: raise "
            f"--pool_multiple (now {rule.pool_multiple:g}), lower --min_conf or train the generator more; "
            "--allow_short writes what was found")


def _export_labelled(e: _Export, teacher: Teacher, rule: LabelRule) -> dict:
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
            raise ConfigError(_short_message(name, len(orders[ci]), size, e.n, rule))
    bar = Progress(sum(min(e.n, len(o)) for o in orders.values()), "generate: identity-checked images",
                   every=e.progress_every)
    writers, kept = {}, {}
    for ci, name in e.picked:
        writers[ci] = _LabelWriter(e, teacher, name, None if uncond else ci)
        kept[ci] = writers[ci].select(orders[ci], e.n, bar)
        if len(kept[ci]) < e.n and not rule.allow_short:
            raise ConfigError(_short_message(name, len(kept[ci]), size, e.n, rule, writers[ci].refused))
    e.claim()
    bar = Progress(sum(len(k) for k in kept.values()), "generate: writing images", every=e.progress_every)
    records, acceptance = {}, {}
    for ci, name in e.picked:
        got = writers[ci].write(kept[ci], bar)
        records.update(got)
        pool = pools[None if uncond else ci]
        acceptance[name] = _acceptance_row(pool, ci, orders[ci], got, writers[ci], e.n, teacher.names)
    rows = _metadata(e.out_dir, e.picked, records, e.psi, e.seed, e.checkpoint, teacher.path)
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


def _write_acceptance(e: _Export, teacher: Teacher, rule: LabelRule, size: int, per_class: dict) -> dict:
    """Print one acceptance line per class and write acceptance.json into the export root."""
    for name, a in per_class.items():
        conf = "-" if a["mean_conf_kept"] is None else f"{a['mean_conf_kept']:.3f}"
        e.log(f"generate: acceptance {name}: {a['drawn']} drawn, argmax {a['argmax']}, qualifying "
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

    def __init__(self, e: _Export, teacher: Teacher, name: str, ci: Optional[int]):
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


def _metadata(out_dir: pathlib.Path, picked: List[Tuple[int, str]], records: Dict[str, dict], psi: float,
              seed: int, checkpoint: str, teacher: Optional[str] = None) -> List[Dict]:
    """Write metadata.jsonl: the rows of the classes written now, after the earlier rows of others.

    A record with `latent_seed` keeps it (--label_by), else it is [seed, class, latent_index];
    with a teacher, rows also get `teacher_probs` (its softmax, in the export's class order) and
    `teacher` (the classifier run)."""
    now = {name for _, name in picked}
    path = out_dir / "metadata.jsonl"
    rows = []
    if path.exists():   # classes exported by an earlier call with other --classes stay listed
        rows = [r for r in map(json.loads, filter(None, path.read_text().splitlines()))
                if r.get("class_name") not in now]
    index = {name: ci for ci, name in picked}
    for file, rec in records.items():
        name = file.split("/", 1)[0]
        rec = dict(rec)
        latent = rec.pop("latent_seed") if "latent_seed" in rec else \
            [seed, index[name], rec.pop("latent_index")]
        probs = rec.pop("teacher_probs", None)
        row = dict(file=file, class_name=name, class_index=index[name], latent_seed=latent, psi=psi,
                   checkpoint=str(checkpoint), identity=rec)
        rows.append(row if teacher is None else dict(row, teacher_probs=probs, teacher=str(teacher)))
    rows.sort(key=lambda r: (r.get("class_index", 0), r["file"]))
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="generator run, networks dir or NVIDIA .pkl")
    p.add_argument("--out", required=True, help="dataset folder: new, empty or an earlier generate output")
    p.add_argument("--num_per_class", type=int, default=64)
    p.add_argument("--classes", default="", help="comma-separated class names (default: all)")
    p.add_argument("--psi", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--best", action="store_true", help="use the best-FID checkpoint of a workdir")
    p.add_argument("--real", default="", help="the generator's training faces (default: its config's data)")
    p.add_argument("--holdout", default="", help="held-out real faces for the datasheet (default: demo _test)")
    p.add_argument("--identity", default="auto", help="auto | dlib | pixel (pixel: near-copies only)")
    p.add_argument("--identity_threshold", type=float, default=-1.0,
                   help="default: the model's (dlib 0.6); pixel: calibrated on the training faces")
    p.add_argument("--identity_percentile", type=float, default=1.0,
                   help="pixel without --identity_threshold: refuse candidates nearer a training face than "
                   "this percentile of the training faces' distances to their nearest other one (1)")
    p.add_argument("--max_tries", type=float, default=4.0,
                   help="candidates per wanted image before giving up (without --label_by)")
    p.add_argument("--no_datasheet", action="store_true", help="skip the datasheet (no holdout at hand)")
    p.add_argument("--feature_net", default="random_inception",
                   help="datasheet features without --inception_weights (labelled not comparable)")
    p.add_argument("--inception_weights", default="", help="the FID Inception .pth (comparable numbers)")
    p.add_argument("--label_by", default="", help="classifier run that labels the candidates (needed for an "
                   "unconditional generator; class-filters a conditional one)")
    p.add_argument("--keep", default=None, help="with --label_by: top (default) | threshold")
    p.add_argument("--min_conf", type=float, default=None, help="with --label_by: confidence floor "
                   "(default 0.5 for threshold, 0 for top)")
    p.add_argument("--pool_multiple", type=float, default=None,
                   help="with --label_by: candidates per wanted image (x classes unconditional; default 4)")
    p.add_argument("--allow_short", action="store_true", help="with --label_by: write a class that cannot be "
                   "filled with what was found")
    p.add_argument("--batch", type=int, default=32, help="candidates generated and classified at a time")
    p.add_argument("--rebuild", action="store_true", help="replace an export made with other settings in --out "
                   "(only the images and files it wrote are removed) instead of refusing it")
    return p


def main(argv=None) -> int:
    """Command line: the generator, the output folder, what to generate and what to check against."""
    a = _parser().parse_args(argv)
    use_compile_cache()
    classes = [c.strip() for c in a.classes.split(",") if c.strip()]
    r = export_dataset(a.checkpoint, a.out, a.num_per_class, a.psi, a.seed, a.best, batch=a.batch,
                       classes=classes, real=a.real, holdout=a.holdout, identity=a.identity,
                       threshold=a.identity_threshold, datasheet=not a.no_datasheet, feature_net=a.feature_net,
                       inception_weights=a.inception_weights, max_tries=a.max_tries, label_by=a.label_by,
                       keep=a.keep, min_conf=a.min_conf, pool_multiple=a.pool_multiple,
                       allow_short=a.allow_short, percentile=a.identity_percentile, rebuild=a.rebuild)
    short = "".join(f"; {n} SHORT: {k} of {a.num_per_class}" for n, k in r.get("short", {}).items())
    print(f"wrote {r['written']} new images; {r['total']} in {r['out']}{short}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
