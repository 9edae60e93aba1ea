"""evolve.py on acne faces: GA over the latents of a StyleGAN2 run, anonymous dataset export.

  python evolve.py --config configs/evolve_acne.py --config.generator=runs/acne \
      --config.classifier=runs/cls_real --config.num_per_class=500 --out data/evolved
  python evolve.py --config configs/evolve_acne.py --config.generator='runs/acne_{class}' ...
  python evolve.py --config configs/evolve_acne.py:tiny --out data/evolved_tiny   # CPU, demo

Fitness = class confidence (classifier) + realism (the GAN's D) + identity distance
to every real training face (dlib's face descriptor) + diversity; see
jaxgen/evolve/terms.py. `real` is the real training set, loaded as for training.

Variants: `tiny` (the models of `make demo` and configs/acne_classifier.py:tiny
on the 32 px demo faces; pixel near-copy check, since dlib cannot tell drawn
faces apart) and `micro` (seconds-long runs for tests, 16 px).
"""
from jaxgen.config import data, evolve, parse_variants


def get_config(arg: str = ""):
    opts = parse_variants(arg, ("tiny", "micro"), __file__, exclusive=[("tiny", "micro")])
    c = evolve()
    c.name = "evolve_acne"
    c.generator = "runs/acne"
    c.real = data("folder", "data/acne", 256, 3)
    if opts & {"tiny", "micro"}:
        c.name += "_" + next(iter(opts))
        c.identity = "pixel"            # drawn demo faces: a same-picture check, NOT identity
        c.real = data("demo", "data/demo_acne", 32, 3, num_per_class=128, cache_dir="")
    if "tiny" in opts:
        c.generator = "runs/demo/gan"          # what `make demo` trains
        c.classifier = "runs/demo/cls_real"     # its classifier of the real faces
        c.num_per_class = 128                  # as many as the real demo faces (the utility protocol)
        c.generations = 10                     # ~2.5 min for 4 x 128 faces on 2 CPU cores
    if "micro" in opts:
        c.generator = "runs/acne_micro"
        c.real = data("demo", "data/demo_acne_micro", 16, 3, num_per_class=8, cache_dir="")
        c.popsize = 8
        c.generations = 3
        c.num_per_class = 2
        c.per_round = 2
    return c
