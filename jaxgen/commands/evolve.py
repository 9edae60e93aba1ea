"""Evolve generator latents with a genetic algorithm and export an anonymous dataset (evolve.py,
`python -m jaxgen evolve`).

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
from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from jaxgen.commands.common import parse_flags, run_absl
from jaxgen.errors import ConfigError
from jaxgen.workflows.evolve import run_evolve

FLAGS = flags.FlagValues()
config_flags.DEFINE_config_file("config", None, "Config file (path[:variant]).", lock_config=True,
                                flag_values=FLAGS)
flags.DEFINE_string("out", None, "Dataset folder to write (default: config.out).", flag_values=FLAGS)
flags.DEFINE_bool("rebuild", False, "Replace an export made with other settings in --out (only the files it "
                  "wrote are removed) instead of refusing it.", flag_values=FLAGS)
flags.mark_flags_as_required(["config"], flag_values=FLAGS)


def main(fv: flags.FlagValues) -> None:
    """Evolve and export `fv.config` into --out (or config.out)."""
    out = fv.out or fv.config.out
    if not out:
        raise ConfigError("give --out <dataset folder> (or --config.out)")
    run_evolve(fv.config, out, rebuild=fv.rebuild)


def run() -> None:
    """The command line (sys.argv): parse the flags, then evolve; errors as one line."""
    run_absl(main, lambda argv: parse_flags(FLAGS, argv, __doc__))


if __name__ == "__main__":
    run()
