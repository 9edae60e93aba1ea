"""StyleGAN2-ADA's small-data setting (batch 16, lr 0.0025), e.g. fine-tuning from FFHQ.

  python train.py --config configs/ffhq_ada.py --config.data.path=/data/faces \\
      --config.transfer.init_from=stylegan2-ffhq-config-f.pkl --config.transfer.freeze_d=10
"""
from jaxgen.config import parse_variants, stylegan2_ada


def get_config(arg: str = ""):
    opts = parse_variants(arg, ("1024",), __file__)
    c = stylegan2_ada()
    c.name = "ffhq_ada"
    c.data.source = "folder"
    c.data.path = "data/ffhq"
    c.data.resolution = 256
    c.data.conditional = False
    c.data.mirror = True
    c.model.channel_base = 16384       # fmaps 0.5 at 256 px, as NVIDIA's paper256
    c.model.mapping_layers = 8
    c.model.mbstd_group_size = 4
    c.train.batch_size = 16
    c.train.g_lr = c.train.d_lr = 0.0025
    c.train.r1_gamma = 1.0
    c.train.ema_kimg = 20.0 * 16 / 64   # paper256's 20 kimg at batch 64, scaled to batch 16
    c.train.ema_rampup = None
    c.train.snapshot_ticks = c.train.image_snapshot_ticks = 10
    if "1024" in opts:
        # stylegan2-ffhq-config-f: 1024 px, full width; needed to fine-tune that checkpoint.
        c.data.resolution = 1024
        c.model.channel_base = 32768
        c.train.r1_gamma = 10.0
        c.train.ema_kimg = 10.0 * 16 / 32
    return c
