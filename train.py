"""Train a model described by an ml_collections config.

  python train.py --config configs/acne.py:tiny --workdir runs/acne_tiny
  python train.py --config configs/acne_classifier.py:tiny --workdir runs/cls_tiny
  python train.py --config configs/depth_emotion.py:tiny --workdir runs/depth_tiny
  python train.py --config configs/acne.py --config.data.path=/data/acne \\
      --config.train.total_kimg=5000 --workdir runs/acne

Running the same command again resumes from the workdir's latest checkpoint.
Compiled XLA programs are cached in $JAXGEN_JAX_CACHE (default
~/.cache/jaxgen/xla; set it to '' to disable), so a resumed run starts fast.
"""
import os

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (path[:variant]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, samples and logs go (resumes if present).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    import jax
    cache = os.environ.get("JAXGEN_JAX_CACHE", os.path.expanduser("~/.cache/jaxgen/xla"))
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    logging.set_verbosity(logging.WARNING)
    task = FLAGS.config.get("task", "stylegan2")
    if task == "classifier":
        from jaxgen.classifiers.train import train_classifier
        train_classifier(FLAGS.config, FLAGS.workdir)
    elif task == "stylegan2":
        from jaxgen.stylegan2.train import train_and_evaluate
        train_and_evaluate(FLAGS.config, FLAGS.workdir)
    elif task == "dcgan":
        from jaxgen.dcgan.train import train_and_evaluate
        train_and_evaluate(FLAGS.config, FLAGS.workdir)
    else:
        raise ValueError(f"config.task={task!r}: choose 'stylegan2', 'dcgan' or 'classifier'")


if __name__ == "__main__":
    app.run(main)
