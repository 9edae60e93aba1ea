"""Train a model described by an ml_collections config.

  python train.py --config configs/acne.py:tiny --workdir runs/acne_tiny
  python train.py --config configs/acne.py --config.data.path=/data/acne \\
      --config.train.total_kimg=5000 --workdir runs/acne

Running the same command again resumes from the workdir's latest checkpoint.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from jaxgen.training.loop import train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (path[:variant]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, samples and logs go (resumes if present).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
