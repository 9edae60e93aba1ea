"""Expression classifier on depth faces: the class-confidence term of the depth GA, and a
synthetic-train / real-test classifier for the depth track.

  python train.py --config configs/depth_classifier.py:tiny --workdir runs/depth_cls_tiny
  python evolve.py --config configs/evolve_depth.py:tiny --config.generator=runs/depth_tiny \\
      --config.classifier=runs/depth_cls_tiny --out runs/depth_ga/dataset

Trained on the real depth faces that configs/depth_emotion.py trains its DCGAN on
(same path, count and seed), so the GA's class term judges expressions the way
real data shows them. Variants: `tiny` (32 px, the `depth_emotion.py:tiny` data).
"""
from jaxgen.config import classifier, data, parse_variants


def get_config(arg: str = ""):
    opts = parse_variants(arg, ("tiny",), __file__)
    c = classifier("depth_classifier", data("depth_demo", "data/demo_depth", 64, 1, num_per_class=256, cache_dir=""),
                   model="small_cnn", lr=1e-3, epochs=10, max_degrees=10.0, max_brightness=0.05)
    c.model.kwargs.width = 16
    c.augment.flip = True          # expressions are left-right symmetric
    if "tiny" in opts:
        c.name += "_tiny"
        c.data.path = "data/demo_depth_32"
        c.data.resolution = 32
        c.data.num_per_class = 128
    return c
