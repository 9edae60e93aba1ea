"""Conditional DCGAN with EMA-teacher distillation on depth faces with expressions.

Data: the procedural grayscale depth-map faces of jaxgen.data.depth_faces
(4 classes: happy, neutral, sad, surprise), rendered into data.path on the
first run. Real depth recordings in class folders work too:

  python train.py --config configs/depth_emotion.py --workdir runs/depth
  python train.py --config configs/depth_emotion.py:tiny --workdir runs/depth_tiny  # CPU, minutes
  python train.py --config configs/depth_emotion.py --config.data.source=folder \
      --config.data.path=/data/depth_expressions --workdir runs/depth_real

Knowledge distillation: the teacher is an EMA copy of G and of D (decay
kd.ema_decay per step); G also minimises kd.g_weight * L1 to the teacher G's
images, D kd.d_weight * MSE to the teacher D's logits. Both weights 0 is the
plain conditional DCGAN (the teacher G is still kept, for sampling).

Variants (comma-separated): `tiny` (32 px, small widths; a few minutes on 2
CPU cores) and `nokd` (distillation weights 0, the baseline), e.g.
configs/depth_emotion.py:tiny,nokd.
"""
from jaxgen.config import data, dcgan, parse_variants


def get_config(arg: str = ""):
    opts = parse_variants(arg, ("tiny", "nokd"), __file__)
    # 'depth_demo' renders the procedural set into path first; 'folder' for real recordings.
    # Expression labels condition G and D; x-flips keep them (expressions are symmetric).
    c = dcgan("depth_emotion", data("depth_demo", "data/demo_depth", 64, 1, num_per_class=256, cache_dir=""))
    if "tiny" in opts:
        c.name += "_tiny"
        c.data.path = "data/demo_depth_32"
        c.data.resolution = 32
        c.data.num_per_class = 128
        c.model.z_dim = 64
        c.model.embed_dim = 16
        c.model.widths = (128, 64, 32, 16)  # 4, 8, 16, 32 px
        c.train.batch_size = 32
        c.train.total_kimg = 40.0        # ~2.5 min on 2 CPU cores (~290 img/s)
        c.train.kimg_per_tick = 2.0      # snapshots every 5 ticks: every 10 kimg
    if "nokd" in opts:
        c.name += "_nokd"
        c.kd.g_weight = 0.0
        c.kd.d_weight = 0.0
    return c
