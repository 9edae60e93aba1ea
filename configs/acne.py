"""StyleGAN2-ADA on acne-severity faces (4 classes), as in the acne paper.

Paper settings: lr 0.002, minibatch 32, x-flip mirroring, a snapshot every
10 ticks, ADA with target 0.6. Resolution and data dir are overridable:

  python train.py --config configs/acne.py --config.data.path=/data/acne \
      --config.data.resolution=256
  python train.py --config configs/acne.py:tiny     # CPU demo on embedded data

Variants (comma-separated): tiny | micro, and `finetune`, the per-class stage of
the hierarchical pipeline: start from the base run's networks (transfer
learning, freeze-D) and train them on one class folder, keeping the conditional
G and D (their mapping and label embeddings) with every image labelled that class:

  python train.py --config configs/acne.py:tiny,finetune --config.data.fixed_label=severe \
      --config.data.path=data/demo_acne/severe --workdir runs/acne_tiny_severe
"""
from jaxgen.config import parse_variants, stylegan2_ada


def get_config(arg: str = ""):
    opts = parse_variants(arg, ("tiny", "micro", "finetune"), __file__, exclusive=[("tiny", "micro")])
    size = next((o for o in opts if o in ("tiny", "micro")), "")
    c = stylegan2_ada()
    c.name = "acne"
    c.data.source = "folder"
    c.data.path = "data/acne"
    c.data.resolution = 256
    c.data.conditional = True
    c.data.mirror = True
    # NVIDIA's 'auto' heuristics at 256 px with fmaps 0.5 and a 2-layer mapping.
    c.model.channel_base = 16384
    c.model.mapping_layers = 2
    c.train.batch_size = 32
    c.train.g_lr = c.train.d_lr = 0.002
    c.train.r1_gamma = -1.0  # auto: 0.0002 * resolution^2 / batch (NVIDIA's heuristic)
    c.train.ema_kimg = c.train.batch_size * 10 / 32
    c.train.snapshot_ticks = c.train.image_snapshot_ticks = 10
    c.metrics.every_ticks = 10        # needs --config.metrics.inception_weights=<.pth>

    if size == "tiny":
        # Trains on the embedded procedural demo faces on a CPU in a few minutes.
        c.name = "acne_tiny"
        c.data.source = "demo"
        c.data.path = "data/demo_acne"
        c.data.resolution = 32
        c.data.num_per_class = 128        # renderer v3: a classifier on these gets ~0.94 on held-out faces
        c.model.z_dim = 64
        c.model.w_dim = 64
        c.model.channel_base = 1024
        c.model.channel_max = 64
        c.model.mapping_layers = 2
        c.train.batch_size = 8
        # NVIDIA's small-data ('cifar') settings and no noise inputs: at 36 kimg an unconditional
        # G labelled by the sorter trains a classifier to 0.777 (1x) / 0.852 (4x) against 0.680 /
        # 0.773 with the defaults, at about 2/3 of the s/kimg; the conditional G's class fidelity
        # at 16 kimg goes 0.48 -> 0.57 (bench/RESULTS.md, issue 27 study)
        c.model.use_noise = False
        c.train.pl_weight = 0.0
        c.train.style_mixing_prob = 0.0
        c.train.g_lr = c.train.d_lr = 0.0025
        c.train.ema_kimg = 1.0
        c.train.total_kimg = 36.0        # about 18 minutes on 2 CPU cores (~30 s/kimg); heads and hair by ~12 kimg
        c.train.kimg_per_tick = 0.5
        c.train.snapshot_ticks = 2        # checkpoint every 1 kimg
        c.train.image_snapshot_ticks = 4  # sample grid every 2 kimg
        c.ada.kimg = 20.0   # adapt fast enough to see p move in a short run
        c.metrics.every_ticks = 0         # off: ~30 s each, and this FID is a smoke signal only;
        c.metrics.num_fakes = 256         # --config.metrics.every_ticks=8 turns it on
        c.metrics.feature_net = "random_inception"  # labelled: not comparable to published FID
    elif size == "micro":
        # Seconds-long smoke runs (tests, CI): 16 px, 16 channels, 8 images a class.
        c.name = "acne_micro"
        c.data.source = "demo"
        c.data.path = "data/demo_acne_micro"
        c.data.resolution = 16
        c.data.num_per_class = 8
        c.model.z_dim = c.model.w_dim = 16
        c.model.channel_base = 256
        c.model.channel_max = 16
        c.model.mapping_layers = 2
        c.train.batch_size = 4
        c.train.r1_gamma = 0.1
        c.train.lazy_regs = "device"      # one step program: these runs are mostly compilation
        c.train.ema_kimg = 0.01
        c.train.total_kimg = 0.032
        c.train.kimg_per_tick = 0.008
        c.train.snapshot_ticks = c.train.image_snapshot_ticks = 1
        c.train.grid_cols = 4
        c.ada.kimg = 0.5
        c.metrics.every_ticks = 0

    if "finetune" in opts:
        c.name += "_finetune"
        c.data.source = "folder"
        c.data.conditional = True         # with data.fixed_label = the folder's class (the pipeline sets it)
        c.transfer.init_from = "runs/" + ("acne" if not size else f"acne_{size}")
        c.transfer.freeze_d = 4           # the highest-resolution D block stays fixed
        c.train.total_kimg = 6.0 if size == "tiny" else c.train.total_kimg / 2
        c.data.cache_dir = ""             # one-off class folders: no decoded-image cache
        c.metrics.every_ticks = 0         # a one-class model; turn FID on with this field
    return c
