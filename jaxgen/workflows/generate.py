"""Write a synthetic image-folder dataset from a trained generator, checked and with its datasheet.

  python -m jaxgen generate --checkpoint runs/acne_tiny --out data/synthetic_tiny \
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
(jaxgen/identity/search.py, the embedders beside it): dlib's face descriptor (threshold 0.6); 'auto' uses
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

Here: `export_dataset` (every input checked, then one export). Beside it: generate_checks.py
(the training and held-out faces, the identity check, the classes), generate_labels.py (--label_by:
the keep rule and the classifier), generate_writers.py (the export loop: candidates, PNGs,
acceptance.json, the datasheet), generate_records.py (settings in the marker, metadata.jsonl,
--rebuild). The command line: jaxgen/commands/generate.py.
"""
from __future__ import annotations

from typing import Optional, Sequence

from jaxgen.errors import ConfigError
from jaxgen.metrics.suite import make_feature_net
from jaxgen.runs import GENERATOR_KINDS, Run, open_run
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import check_output
from jaxgen.workflows.generate_checks import pick_classes, prepare_checks
from jaxgen.workflows.generate_labels import Teacher, label_rule, rule_setting
from jaxgen.workflows.generate_records import (OUTPUT_KIND, abs_path, clear_export, generator_fingerprint,
                                               legacy_output, refuse_changed)
from jaxgen.workflows.generate_writers import Export, export_labelled, export_plain, write_datasheet


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
                   allow_short: bool = False, percentile: float = 1.0, rebuild: bool = False) -> dict:
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
    settings = dict(checkpoint=abs_path(checkpoint), best=bool(best), psi=float(psi), seed=int(seed),
                    num_per_class=int(num_per_class), class_names=list(class_names or []), real=abs_path(real),
                    identity=identity, identity_threshold=float(threshold), label_by=abs_path(label_by),
                    rule=rule_setting(rule), identity_percentile=float(percentile) if threshold < 0 else None)
    out_dir = check_output(out, OUTPUT_KIND, legacy=legacy_output)   # before opening anything
    if not rebuild:
        refuse_changed(out_dir, settings, only_given=True)
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
                            datasheet, percentile)
    net = make_feature_net(inception_weights, feature_net) if datasheet else None
    settings.update(generator=generator_fingerprint(g), identity_model=checks.identity.name,
                    threshold_used=round(checks.identity.threshold, 5))
    if not rebuild:
        refuse_changed(out_dir, settings)
    elif out_dir.is_dir():
        logger.info(f"generate: --rebuild: removed {clear_export(out_dir)} images of the earlier export in {out_dir}")
    ctx = Export(g, out_dir, picked, checks, int(num_per_class), float(psi), int(seed), int(batch),
                 progress_every, str(checkpoint), settings)
    if teacher is None:
        result = export_plain(ctx, max_tries)
    else:
        result = export_labelled(ctx, teacher, rule)
    result["datasheet"] = write_datasheet(ctx, net, result) if datasheet else None
    return result


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen generate
    import runpy
    runpy.run_module("jaxgen.commands.generate", run_name="__main__")
