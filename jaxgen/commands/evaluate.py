"""Score generated images, classifiers and synthetic datasets (evaluate.py, `python -m jaxgen evaluate`).

  python evaluate.py MODE [flags]        # MODE: fid, classifier, utility, datasheet, compare
  python evaluate.py MODE --help         # that mode's flags (each mode takes only its own)

  fid         FID, KID, IS, precision/recall, SSIM, PSNR of a generator (or a folder of
              generated images) against real images (jaxgen/metrics/evaluate.py)
  classifier  classifier runs on a labelled test folder, e.g. trained on synthetic, tested on
              real (jaxgen/classifiers/evaluate.py)
  utility     the utility benchmark: one classifier config trained on real, on synthetic (same
              count per class) and on both, 3 seeds each, all tested on held-out real
              (jaxgen/classifiers/utility.py)
  datasheet   a datasheet for a synthetic folder: fidelity, diversity, privacy, identity, each
              beside the holdout's value (jaxgen/metrics/datasheet.py)
  compare     one table across generators and baselines (jaxgen/workflows/compare.py)

The spellings of earlier versions (`--utility`, `--datasheet`, `--compare X`, `--classifier
a,b`, and no mode: fid) still work for one release; they print a one-line note naming the
new one. Every mode writes into --out (by default, for fid and classifier, a folder beside
the model: runs/acne_tiny -> runs/acne_tiny_eval); an --out that holds files evaluate did
not write is refused; bad input stops with one line, exit 2.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Callable, Dict, List, Sequence, Tuple

from absl import flags
from ml_collections import config_flags

from jaxgen.classifiers.evaluate import evaluate_classifiers
from jaxgen.classifiers.utility import parse_multiples, run_utility
from jaxgen.commands.common import HELP_FLAGS, fail, parse_flags, run_absl
from jaxgen.errors import ConfigError
from jaxgen.metrics.evaluate import run as run_fid
from jaxgen.workflows.compare import compare_from_config
from jaxgen.workflows.datasheet import datasheet_for_folders


@dataclasses.dataclass
class Mode:
    """One mode of evaluate: its docstring (--help), its own flags and what it runs on them."""

    doc: str
    flags: flags.FlagValues
    run: Callable[[flags.FlagValues], None]


def _features(fv: flags.FlagValues) -> None:
    """--inception_weights and --feature_net: the image features of FID and friends."""
    flags.DEFINE_string("inception_weights", "", "Path to pt_inception-2015-12-05-6726825d.pth.", flag_values=fv)
    flags.DEFINE_string("feature_net", "", "Fallback features without Inception weights: random_inception[:seed].",
                        flag_values=fv)


def _classifier_training(fv: flags.FlagValues) -> None:
    """--classifier_config, --classifier_set, --seeds: the classifiers the utility benchmark trains."""
    flags.DEFINE_string("classifier_config", "configs/acne_classifier.py:tiny",
                        "Classifier config (path[:variants]).", flag_values=fv)
    flags.DEFINE_list("classifier_set", [], "Classifier config overrides a.b=value.", flag_values=fv)
    flags.DEFINE_integer("seeds", 3, "Classifier seeds per arm.", flag_values=fv)


def _fid_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("checkpoint", "", "Training workdir, networks checkpoint or official .pkl.", flag_values=fv)
    flags.DEFINE_bool("best", False, "Use the workdir's best-FID checkpoint instead of the latest.", flag_values=fv)
    flags.DEFINE_string("fakes", "", "Instead of --checkpoint: a folder of generated images.", flag_values=fv)
    flags.DEFINE_string("real", "", "Folder of real images (class sub-folders).", flag_values=fv)
    flags.DEFINE_list("metrics", ["fid", "kid", "is", "pr", "ssim", "psnr"], "Metrics to compute.", flag_values=fv)
    flags.DEFINE_integer("num_fakes", 10000, "Generated images to score.", flag_values=fv)
    flags.DEFINE_float("psi", 1.0, "Truncation psi for generation.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the generated latents.", flag_values=fv)
    _features(fv)
    flags.DEFINE_string("out", "", "Output directory (default: beside the model or fakes folder, <name>_eval; "
                        "never inside it).", flag_values=fv)
    flags.DEFINE_string("cache_dir", "data/.metric_cache", "Cache for real-image features ('' = off).",
                        flag_values=fv)
    return fv


def _run_fid(fv: flags.FlagValues) -> None:
    run_fid(checkpoint=fv.checkpoint, fakes=fv.fakes, real=fv.real, metrics=fv.metrics, num_fakes=fv.num_fakes,
            psi=fv.psi, seed=fv.seed, inception_weights=fv.inception_weights, feature_net=fv.feature_net,
            out=fv.out or None, best=fv.best, cache_dir=fv.cache_dir or None)


def _classifier_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_list("classifier", [], "Classifier workdir(s) to evaluate on --test.", flag_values=fv)
    flags.DEFINE_string("test", "", "Labelled test folder (e.g. held-out real images).", flag_values=fv)
    flags.DEFINE_string("out", "", "Output directory (default: beside the first classifier, <name>_eval).",
                        flag_values=fv)
    return fv


def _run_classifier(fv: flags.FlagValues) -> None:
    if not fv.classifier:
        raise ConfigError("classifier needs --classifier <run>[,<run>...] (the classifier workdirs to test)")
    evaluate_classifiers(fv.classifier, fv.test, fv.out or None)


def _utility_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("real_train", "", "The real training images (class sub-folders).", flag_values=fv)
    flags.DEFINE_string("synthetic", "", "The synthetic dataset (the same class sub-folders).", flag_values=fv)
    flags.DEFINE_string("test", "", "Held-out real test images (the same class sub-folders).", flag_values=fv)
    flags.DEFINE_string("out", "", "Output directory.", flag_values=fv)
    _classifier_training(fv)
    flags.DEFINE_list("synthetic_multiple", ["1"], "Synthetic arms trained on m x the real images per class, "
                      "e.g. 1,4,16 (1 is the standard 'synthetic' arm).", flag_values=fv)
    flags.DEFINE_bool("teacher_arm", False, "Also train on the 1x synthetic images with the teacher labels "
                      "(teacher_probs) of the export's metadata.jsonl (export with --label_by <classifier run>).",
                      flag_values=fv)
    flags.DEFINE_integer("resolution", 0, "Image size (0 = the classifier config's).", flag_values=fv)
    return fv


def _run_utility(fv: flags.FlagValues) -> None:
    if not (fv.real_train and fv.synthetic and fv.test and fv.out):
        raise ConfigError("utility needs --real_train, --synthetic, --test and --out")
    run_utility(fv.real_train, fv.synthetic, fv.test, fv.classifier_config, fv.out, fv.seeds, fv.resolution,
                overrides=fv.classifier_set, multiples=parse_multiples(fv.synthetic_multiple),
                teacher=fv.teacher_arm)


def _datasheet_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("synthetic", "", "The synthetic dataset (class sub-folders).", flag_values=fv)
    flags.DEFINE_string("real", "", "The real images the generator was trained on (class sub-folders).",
                        flag_values=fv)
    flags.DEFINE_string("holdout", "", "Real images the generator never saw (class sub-folders).", flag_values=fv)
    flags.DEFINE_string("out", "", "Output directory.", flag_values=fv)
    _features(fv)
    flags.DEFINE_enum("identity", "dlib", ["dlib", "pixel", "none"],
                      "Identity model (pixel is a near-copy check, not an identity model).", flag_values=fv)
    flags.DEFINE_float("identity_threshold", -1.0, "Same-person distance (< 0: the model's own).", flag_values=fv)
    flags.DEFINE_integer("resolution", 0, "Image size (0 = the real images' own).", flag_values=fv)
    flags.DEFINE_bool("with_utility", False, "Also run the utility benchmark (--classifier_config, --seeds; "
                      "tested on --holdout) into <out>/utility and add it to the datasheet.", flag_values=fv)
    _classifier_training(fv)
    flags.DEFINE_integer("projection_steps", 0, "Also project up to 64 training and 64 holdout images into "
                         "--checkpoint's StyleGAN2 generator for N steps: projection membership AUC (0 = off).",
                         flag_values=fv)
    flags.DEFINE_string("checkpoint", "", "With --projection_steps: the generator of --synthetic.", flag_values=fv)
    flags.DEFINE_string("feature_classifier", "", "A classifier workdir trained on the real faces (e.g. the "
                        "pipeline's cls_real): Frechet distance and precision/recall also in its penultimate "
                        "features and in dlib's face descriptors (task_features).", flag_values=fv)
    return fv


def _run_datasheet(fv: flags.FlagValues) -> None:
    if not (fv.synthetic and fv.real and fv.holdout and fv.out):
        raise ConfigError("datasheet needs --synthetic, --real, --holdout and --out")
    if fv.projection_steps and not fv.checkpoint:
        raise ConfigError("--projection_steps needs --checkpoint (the generator of --synthetic)")
    utility = dict(classifier_config=fv.classifier_config, seeds=fv.seeds, overrides=fv.classifier_set)
    projection = dict(run=fv.checkpoint, steps=fv.projection_steps)
    sheet = datasheet_for_folders(fv.synthetic, fv.real, fv.holdout, fv.out, fv.inception_weights, fv.feature_net,
                                  fv.identity, fv.identity_threshold, fv.resolution,
                                  utility=utility if fv.with_utility else None,
                                  projection=projection if fv.projection_steps else None,
                                  feature_classifier=fv.feature_classifier)
    print(f"datasheet: {fv.out}/datasheet.md (membership AUC {sheet['privacy']['membership_auc']:.3f}, "
          f"DCR ratio {sheet['privacy']['dcr']['ratio']:.3f})")


def _compare_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "Comparison config (path[:variant]), e.g. "
                                    "configs/depth_compare.py:tiny; see jaxgen/workflows/compare.py.",
                                    flag_values=fv)
    flags.DEFINE_string("out", "", "Output directory (default: the config's).", flag_values=fv)
    _features(fv)
    flags.mark_flags_as_required(["config"], flag_values=fv)
    return fv


def _run_compare(fv: flags.FlagValues) -> None:
    compare_from_config(fv.config, fv.out or None, fv.inception_weights, fv.feature_net)


MODES: Dict[str, Mode] = {
    "fid": Mode("""FID, KID, IS, precision/recall, SSIM and PSNR of a generator against real images.

  python evaluate.py fid --checkpoint runs/acne_tiny --real data/demo_acne --feature_net random_inception
  python evaluate.py fid --checkpoint runs/acne --real data/acne \\
      --inception_weights weights/pt_inception-2015-12-05-6726825d.pth --num_fakes 50000

Writes metrics.json and metrics.md into --out (jaxgen/metrics/evaluate.py).""", _fid_flags(), _run_fid),
    "classifier": Mode("""Classifier runs on a labelled test folder (e.g. trained on synthetic, tested on real).

  python evaluate.py classifier --classifier runs/cls_synthetic,runs/cls_real --test data/demo_acne_test

Writes report.json/.md, confusion_matrix.png and comparison.md into --out.""", _classifier_flags(),
                       _run_classifier),
    "utility": Mode("""The utility benchmark: synthetic-train / real-test (jaxgen/classifiers/utility.py).

  python evaluate.py utility --real_train data/demo_acne --synthetic runs/pipeline/synthetic \\
      --test data/demo_acne_test --classifier_config configs/acne_classifier.py:tiny --out runs/utility
  #   add --synthetic_multiple 1,4,16 (arms on 4x, 16x the real count) and --teacher_arm (teacher labels)""",
                    _utility_flags(), _run_utility),
    "datasheet": Mode("""A datasheet for a synthetic folder against the real and held-out faces.

  python evaluate.py datasheet --synthetic runs/pipeline/synthetic --real data/demo_acne \\
      --holdout data/demo_acne_test --feature_net random_inception --identity pixel --out runs/sheet
  #   fidelity in the features of a classifier of the real faces (and dlib's):
  #   add --feature_classifier runs/pipeline/cls_real""", _datasheet_flags(), _run_datasheet),
    "compare": Mode("""One table across generators and baselines (jaxgen/workflows/compare.py).

  python evaluate.py compare --config configs/depth_compare.py:tiny --out runs/depth_compare

Writes comparison.md/.json and samples*.png; --inception_weights and --feature_net override the
config's.""", _compare_flags(), _run_compare),
}
OLD_FLAGS = {"--compare": "compare", "--utility": "utility", "--datasheet": "datasheet", "--classifier": "classifier"}


def modes_help(prog: str) -> str:
    """The command's docstring with the usage line in the spelling it was started with."""
    return __doc__.replace("python evaluate.py", prog)


def _old_mode(args: List[str]) -> Tuple[str, List[str]]:
    """(mode, the flags in the new spelling) of an earlier version's flags: `--compare X` (and
    `--compare.a=v`) -> compare --config X, `--utility`/`--datasheet` -> that mode (the switch
    dropped), `--classifier a,b` -> classifier; anything else fid. In the old order of precedence."""
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    mode = next((m for flag, m in OLD_FLAGS.items() if flag in given), "fid")
    if mode == "compare":
        return mode, [_renamed(a, "--compare", "--config") for a in args]
    if mode in ("utility", "datasheet"):
        switch = f"--{mode}"
        return mode, [a for a in args if a != switch and not a.startswith(switch + "=")]
    return mode, args


def _renamed(arg: str, old: str, new: str) -> str:
    """`arg` with the flag `old` (`old`, `old=v`, and its `old.field=v` overrides) spelled `new`."""
    return new + arg[len(old):] if arg == old or arg.startswith((old + "=", old + ".")) else arg


def new_spelling(argv: Sequence[str]) -> List[str]:
    """`argv` (the program name first) with the mode as its first argument: an old spelling is
    rewritten (`_old_mode`) with a one-line note on stderr."""
    prog, args = argv[0], list(argv[1:])
    if args and args[0] in MODES:
        return list(argv)
    if not args or args[0] in HELP_FLAGS:
        print(modes_help(_spoken(prog)))
        sys.exit(0)
    if not args[0].startswith("-"):
        fail(f"unknown mode {args[0]!r}: choose one of {', '.join(MODES)} ({_spoken(prog)} --help)")
    mode, new_args = _old_mode(args)
    old = next((f"`{_spoken(prog)} {flag} ...`" for flag, m in OLD_FLAGS.items() if m == mode),
               f"`{_spoken(prog)}` without a mode")
    print(f"note: {old} is the earlier spelling of `{_spoken(prog)} {mode} ...`; use that (the old one goes in "
          "a later release)", file=sys.stderr)
    return [prog, mode] + new_args


def _spoken(prog: str) -> str:
    """How the user started the command: 'python evaluate.py' or 'python -m jaxgen evaluate'."""
    return f"python {prog.rsplit('/', 1)[-1]}" if prog.endswith(".py") else prog


def parse(argv: Sequence[str]) -> Tuple[str, flags.FlagValues]:
    """(mode, its parsed flags) of `argv` = [program, mode, flags...] (see `new_spelling`): a flag of
    another mode is refused in one line naming the mode it belongs to."""
    prog, mode, args = argv[0], argv[1], list(argv[2:])
    fv = MODES[mode].flags
    for a in args:
        name = a[2:].split("=", 1)[0] if a.startswith("--") else ""
        owners = [m for m, other in MODES.items() if name and name.split(".")[0] in other.flags]
        if owners and name.split(".")[0] not in fv:
            fail(f"--{name} is a flag of {' and '.join(owners)}, not of {mode} "
                 f"({_spoken(prog)} {mode} --help lists its flags)")
    return mode, parse_flags(fv, [f"{_spoken(prog)} {mode}"] + args, MODES[mode].doc)


def main(parsed: Tuple[str, flags.FlagValues]) -> None:
    """Run the mode on its flags."""
    mode, fv = parsed
    MODES[mode].run(fv)


def run() -> None:
    """The command line (sys.argv, rewritten to the new spelling first); errors as one line."""
    sys.argv = new_spelling(sys.argv)
    run_absl(main, parse)


if __name__ == "__main__":
    run()
