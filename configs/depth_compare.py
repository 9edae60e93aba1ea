"""Compare the depth-face generators and baselines in one table (python evaluate.py compare).

  python train.py --config configs/depth_emotion.py:tiny --workdir runs/depth_tiny
  python train.py --config configs/depth_emotion.py:tiny,nokd --workdir runs/depth_tiny_nokd
  python evaluate.py compare --config configs/depth_compare.py:tiny --out runs/depth_compare

Methods (rows, in `method_order`): cdcgan (plain conditional DCGAN), cdcgan_kd
(with EMA-teacher distillation), cdcgan_kd_ga (the image folder that evolve.py
exports from the KD generator, with the class term of an expression classifier
trained on the real depth faces, configs/depth_classifier.py; skipped with the
commands to make it while it does not exist), vae, gmm, kde (fitted on the real training images here) and
`reals`, the real training images themselves as a reference row (FID floor,
real-to-real accuracy; SSIM-NN 1 and PSNR-NN inf because they are the training
images). Any entry of `methods` is a sample source of jaxgen.workflows.compare: a path
(image folder or DCGAN workdir) or a dict with 'kind' and its options.

The real training set is the one the DCGAN config trains on; the real test set
is a held-out render of the same generator with another seed. Both are rendered
if missing. Without Inception weights (--inception_weights) the features come
from `random_inception` and FID/KID/IS are labelled not comparable to papers.

Variants: none (64 px: runs/depth, runs/depth_nokd, runs/depth_ga_64/dataset -> runs/depth_compare_64)
and `tiny` (32 px: runs/depth_tiny, runs/depth_tiny_nokd, runs/depth_ga/dataset ->
runs/depth_compare). The first tiny run took 26 min on 2 heavily shared CPU cores
(the VAE's 1500 steps 17 of them, random_inception features ~1 min per method);
a rerun reuses the cached samples and metrics (seconds).
"""
import ml_collections

from jaxgen.config import parse_variants


def get_config(arg: str = ""):
    opts = parse_variants(arg, ("tiny",), __file__)
    tiny = "tiny" in opts
    sfx = "_tiny" if tiny else ""                 # DCGAN workdirs: runs/depth{sfx}[_nokd]
    tag = "" if tiny else "_64"                    # this config's own outputs
    c = ml_collections.ConfigDict()
    c.out_dir = f"runs/depth_compare{tag}"
    c.resolution = 32 if tiny else 64
    c.channels = 1
    c.num_per_class = 64 if tiny else 256    # generated images per class and method
    c.seed = 0
    c.feature_net = "random_inception"       # fallback when inception_weights is ''
    c.inception_weights = ""                 # pt_inception-2015-12-05-6726825d.pth
    c.metric_cache_dir = "data/.metric_cache"
    c.grid_cols = 8

    # Must match configs/depth_emotion.py (data.path / num_per_class / seed).
    c.real_train = ml_collections.ConfigDict(dict(
        source="depth_demo", path="data/demo_depth_32" if tiny else "data/demo_depth",
        num_per_class=128 if tiny else 256, seed=0))
    c.real_test = ml_collections.ConfigDict(dict(
        source="depth_demo", path="data/demo_depth_test_32" if tiny else "data/demo_depth_test",
        num_per_class=64 if tiny else 128, seed=1))

    var = ":tiny" if tiny else ""                 # depth_emotion.py variant
    var_nokd = ":tiny,nokd" if tiny else ":nokd"
    c.method_order = ("cdcgan", "cdcgan_kd", "cdcgan_kd_ga", "vae", "gmm", "kde", "reals")
    c.methods = ml_collections.ConfigDict()
    c.methods.cdcgan = dict(kind="gan", path=f"runs/depth{sfx}_nokd", make=(
        f"python train.py --config configs/depth_emotion.py{var_nokd} "
        f"--workdir runs/depth{sfx}_nokd"))
    c.methods.cdcgan_kd = dict(kind="gan", path=f"runs/depth{sfx}", make=(
        f"python train.py --config configs/depth_emotion.py{var} --workdir runs/depth{sfx}"))
    c.methods.cdcgan_kd_ga = dict(kind="folder", path=f"runs/depth_ga{tag}/dataset", make=(
        f"python train.py --config configs/depth_classifier.py{var} --workdir runs/depth_cls{sfx} && "
        f"python evolve.py --config configs/evolve_depth.py{var} --config.generator=runs/depth{sfx} "
        f"--config.classifier=runs/depth_cls{sfx} --out runs/depth_ga{tag}/dataset"))
    c.methods.vae = dict(kind="vae", config=dict(steps=1500 if tiny else 6000, batch_size=64,
                                                 latent_dim=32, base_channels=32, log_every=500))
    c.methods.gmm = dict(kind="gmm", n_components=4, pca_dim=32)
    c.methods.kde = dict(kind="kde", pca_dim=32, bandwidth="scott")
    c.methods.reals = dict(kind="folder", path=c.real_train.path)
    c.xgb_params = ml_collections.ConfigDict()   # overrides of jaxgen.features.xgb defaults
    return c
