"""Train a model described by an ml_collections config (train.py, `python -m jaxgen train`).

  python train.py --config configs/acne.py:tiny --workdir runs/acne_tiny
  python train.py --config configs/acne_classifier.py:tiny --workdir runs/cls_tiny
  python train.py --config configs/depth_emotion.py:tiny --workdir runs/depth_tiny
  python train.py --config configs/acne.py --config.data.path=/data/acne \\
      --config.train.total_kimg=5000 --workdir runs/acne

`config.task` picks the trainer ('stylegan2', 'dcgan' or 'classifier'); every
one runs in the shared harness (jaxgen.harness.loop), so running the same
command again resumes from the workdir's latest checkpoint. Compiled XLA
programs are cached in $JAXGEN_JAX_CACHE (default ~/.cache/jaxgen/xla; set it
to '' to disable), so a resumed run starts fast. Bad input (data, config, checkpoint)
stops with one line and exit status 2; JAXGEN_DEBUG=1 shows the traceback.
"""
from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from jaxgen.classifiers.train import train_classifier
from jaxgen.commands.common import parse_flags, run_absl
from jaxgen.dcgan.train import train_and_evaluate as train_dcgan
from jaxgen.errors import ConfigError
from jaxgen.stylegan2.train import train_and_evaluate as train_stylegan2

FLAGS = flags.FlagValues()
config_flags.DEFINE_config_file("config", None, "Config file (path[:variant]).", lock_config=True,
                                flag_values=FLAGS)
flags.DEFINE_string("workdir", None, "Where checkpoints, samples and logs go (resumes if present).",
                    flag_values=FLAGS)
flags.mark_flags_as_required(["config", "workdir"], flag_values=FLAGS)

TRAINERS = {"stylegan2": train_stylegan2, "dcgan": train_dcgan, "classifier": train_classifier}


def main(fv: flags.FlagValues) -> None:
    """Train `fv.config` in `fv.workdir` with the trainer its `task` names."""
    task = fv.config.get("task", "stylegan2")
    if task not in TRAINERS:
        raise ConfigError(f"config.task={task!r}: choose one of {', '.join(TRAINERS)}")
    TRAINERS[task](fv.config, fv.workdir)


def run() -> None:
    """The command line (sys.argv): parse the flags, then train; errors as one line."""
    run_absl(main, lambda argv: parse_flags(FLAGS, argv, __doc__))


if __name__ == "__main__":
    run()
