"""The acne paper's hierarchical pipeline as one resumable command.

  python -m jaxgen pipeline --workdir runs/pipeline_tiny    # the :tiny configs
  python -m jaxgen pipeline --gan_config configs/acne.py --classifier_config \\
      configs/acne_classifier.py --evolve_config configs/evolve_acne.py --workdir runs/pipeline

The eight steps (base GAN, sorter, sort, per-class fine-tunes, evolve, classifier, evaluate,
datasheet), what each writes and how a rerun resumes: jaxgen/workflows/pipeline.py.
"""
from __future__ import annotations

import argparse
import sys
from typing import Mapping

from jaxgen.commands.common import command_parser, run_main, use_compile_cache
from jaxgen.workflows.pipeline import DEFAULTS, STEPS, Configs, run_pipeline


def add_workflow_flags(p: argparse.ArgumentParser, defaults: Mapping[str, str]) -> None:
    """--<name>_config for each config spec the workflow loads (`defaults`: name -> spec, e.g. the
    :tiny ones), --workdir (required) and --test (the held-out real folder)."""
    for name, spec in defaults.items():
        p.add_argument(f"--{name}_config", default=spec)
    p.add_argument("--workdir", required=True)
    p.add_argument("--test", default="", help="held-out real folder (default: demo render)")


def add_override_flags(p: argparse.ArgumentParser) -> None:
    """--set (both GAN configs), --set_finetune, --set_classifier, --set_evolve: KEY=VALUE, repeatable."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a GAN config value, e.g. --set train.total_kimg=4 (repeatable)")
    for name in ("finetune", "classifier", "evolve"):
        p.add_argument(f"--set_{name}", action="append", default=[], metavar="KEY=VALUE",
                       help=f"override a {name} config value (repeatable)")


def parser() -> argparse.ArgumentParser:
    """The config specs, workdir, test folder, sorting thresholds, step selection and overrides."""
    p = command_parser("pipeline", __doc__)
    add_workflow_flags(p, DEFAULTS)
    p.add_argument("--num_sort", type=int, default=64, help="generated faces per class to sort")
    p.add_argument("--min_conf", type=float, default=0.5, help="sorter confidence to keep a face")
    p.add_argument("--min_accept", type=float, default=0.1,
                   help="least share of a class's generated faces the sorter must keep (0.1)")
    p.add_argument("--steps", default=",".join(STEPS), help=f"subset of {','.join(STEPS)}")
    add_override_flags(p)
    return p


def main(argv=None) -> int:
    """Run (or resume) the pipeline's steps in --workdir."""
    a = parser().parse_args(argv)
    use_compile_cache()
    configs = Configs.load(a.gan_config, a.classifier_config, a.evolve_config, a.set,
                           a.set_classifier, a.set_evolve, a.set_finetune)
    run_pipeline(configs, a.workdir, a.test, a.num_sort, a.min_conf, [s for s in a.steps.split(",") if s],
                 min_accept=a.min_accept)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
