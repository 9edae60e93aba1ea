"""StyleGAN2-ADA on acne-severity faces (4 classes), as in the acne paper.

Paper settings: lr 0.002, minibatch 32, x-flip mirroring, a snapshot every
10 ticks, ADA with target 0.6. Resolution and data dir are overridable:

  python train.py --config configs/acne.py --config.data.path=/data/acne \
      --config.data.resolution=256
  python train.py --config configs/acne.py:tiny     # CPU demo on embedded data
"""
from configs import common


def get_config(arg: str = ""):
    c = common.stylegan2_ada()
    c.name = "acne"
    c.data.source = "folder"
    c.data.path = "data/acne"
    c.data.resolution = 256
    c.data.conditional = True
    c.data.mirror = True
    # NVIDIA's 'auto' heuristics at 256 px with fmaps 0.5 and a 2-layer mapping.
    c.model.channel_base = 16384
    c.model.mapping_layers = 2

    if arg == "tiny":
        # Trains on the embedded procedural demo faces on a CPU in a few minutes.
        c.name = "acne_tiny"
        c.data.source = "demo"
        c.data.path = "data/demo_acne"
        c.data.resolution = 32
        c.data.demo_num_per_class = 64
        c.model.z_dim = 64
        c.model.w_dim = 64
        c.model.channel_base = 1024
        c.model.channel_max = 64
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of configs/acne.py (known: tiny)")
    return c
