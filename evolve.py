"""Evolve generator latents with a genetic algorithm and export an anonymous dataset (the same
as `python -m jaxgen evolve`).

  python evolve.py --config configs/evolve_acne.py:tiny --out data/evolved_tiny
  python evolve.py --config configs/evolve_acne.py --config.generator='runs/acne_{class}' \\
      --config.classifier=runs/cls_real --config.num_per_class=500 --out data/evolved
  python evolve.py --config configs/evolve_depth.py:tiny --out runs/depth_ga/dataset

The flags and what they do: jaxgen/commands/evolve.py (`python evolve.py --help`).
"""
from jaxgen.commands.evolve import run

if __name__ == "__main__":
    run()
