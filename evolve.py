"""Evolve generator latents with a genetic algorithm and export an anonymous dataset.

  python evolve.py --config configs/evolve_acne.py:tiny --out data/evolved_tiny
  python evolve.py --config configs/evolve_acne.py --config.generator='runs/acne_{class}' \\
      --config.classifier=runs/cls_real --config.num_per_class=500 --out data/evolved
  python evolve.py --config configs/evolve_depth.py:tiny --out runs/depth_ga/dataset

Fitness terms, GA and export settings are the config (configs/evolve_*.py, defaults
in jaxgen/config.py:evolve); the terms are in jaxgen/evolve/terms.py, the output
layout in jaxgen/evolve/export.py. Running the same command again resumes an
interrupted export; the same --out with another config is refused (--rebuild
replaces that export). Compiled XLA programs are cached in $JAXGEN_JAX_CACHE
(default ~/.cache/jaxgen/xla; '' disables it). Bad input stops with one line and
exit status 2; JAXGEN_DEBUG=1 shows the traceback.
"""
from absl import flags, logging
from ml_collections import config_flags

from jaxgen.cli import run_absl, use_compile_cache
from jaxgen.errors import ConfigError
from jaxgen.evolve.run import run_evolve

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (path[:variant]).", lock_config=True)
flags.DEFINE_string("out", None, "Dataset folder to write (default: config.out).")
flags.DEFINE_bool("rebuild", False, "Replace an export made with other settings in --out (only the files it "
                  "wrote are removed) instead of refusing it.")
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    use_compile_cache()
    logging.set_verbosity(logging.WARNING)
    out = FLAGS.out or FLAGS.config.out
    if not out:
        raise ConfigError("give --out <dataset folder> (or --config.out)")
    run_evolve(FLAGS.config, out, rebuild=FLAGS.rebuild)


if __name__ == "__main__":
    run_absl(main)
