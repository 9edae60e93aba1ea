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
import ml_collections

from jaxgen.config import data, parse_variants


def get_config(arg: str = ""):
    opts = parse_variants(arg, ("tiny", "nokd"), __file__)
    c = ml_collections.ConfigDict()
    c.task = "dcgan"
    c.name = "depth_emotion"
    c.seed = 0

    # 'depth_demo' renders the procedural set into path first; 'folder' for real recordings.
    c.data = data("depth_demo", "data/demo_depth", 64, 1, num_per_class=256, cache_dir="")
    c.data.conditional = True        # class-conditional G and D (expression labels)
    c.data.mirror = True             # random x-flips of the reals (expressions are symmetric)

    c.model = ml_collections.ConfigDict()
    c.model.z_dim = 128
    c.model.embed_dim = 32           # G label embedding size
    c.model.widths = (256, 256, 128, 64, 32)  # channels at 4, 8, 16, 32, 64 px
    c.model.mbstd = True             # minibatch-stddev channel in D
    c.model.dtype = "float32"        # compute dtype ('bfloat16' on GPU/TPU); params stay fp32

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 64
    c.train.g_lr = 2e-4
    c.train.d_lr = 2e-4
    c.train.betas = (0.5, 0.999)
    c.train.total_kimg = 300.0
    c.train.kimg_per_tick = 4.0
    c.train.snapshot_ticks = 5       # checkpoint every N ticks
    c.train.image_snapshot_ticks = 5  # sample grid + loss curves every N ticks
    c.train.keep_checkpoints = 3
    c.train.grid_cols = 8

    c.kd = ml_collections.ConfigDict()
    c.kd.ema_decay = 0.994           # teacher <- decay * teacher + (1 - decay) * student, per step
    c.kd.g_weight = 0.5              # L1(G(z,c), G_teacher(z,c)); 0 = off
    c.kd.d_weight = 0.1              # MSE(D(x), D_teacher(x)) on real and fake logits; 0 = off

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
        c.train.kimg_per_tick = 2.0
        c.train.snapshot_ticks = 5       # checkpoint every 10 kimg
        c.train.image_snapshot_ticks = 5
    if "nokd" in opts:
        c.name += "_nokd"
        c.kd.g_weight = 0.0
        c.kd.d_weight = 0.0
    return c
