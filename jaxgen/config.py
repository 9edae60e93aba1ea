"""Config building blocks: the shared defaults, the variant parser and the config-file loader.

The config files live in the top-level `configs/` folder (`configs/acne.py`,
`configs/evolve_acne.py`, ...). Each has one `get_config(arg)` that starts from
the defaults here and changes what differs; `arg` is the part after the colon
in `--config configs/acne.py:tiny,finetune`, parsed by `parse_variants`. The
files import only `ml_collections` and this module, so they work from any
working directory (no `sys.path` edits, no `configs` package on the path).

  stylegan2_ada()       StyleGAN2-ADA training (NVIDIA's values unless noted)
  dcgan(name, data)     the conditional DCGAN with EMA-teacher distillation (64 px depth faces)
  classifier(name, data)  an image classifier (the acne paper's settings)
  evolve()              the genetic algorithm over latents and the dataset export
  data(...)             an image source for `jaxgen.data.load_dataset`
  parse_variants(...)   'tiny,finetune' -> frozenset, unknown names rejected
  load_config(spec)     'path/to/config.py[:variants]' -> ConfigDict (+ overrides)

Durations are in kimg (thousands of real images shown to D), as in the papers.
"""
from __future__ import annotations

import ast
import importlib.util
import pathlib
from typing import FrozenSet, Iterable, Sequence

import ml_collections

from jaxgen.errors import ConfigError, InputMissing


def parse_variants(arg: str, known: Sequence[str], config_file: str,
                   exclusive: Sequence[Sequence[str]] = ()) -> FrozenSet[str]:
    """The comma-separated variant names of `arg` as a set.

    Raises ConfigError naming the config file and its known variants for an unknown
    name, or for two names of one `exclusive` group (e.g. tiny and micro).
    """
    opts = frozenset(a.strip() for a in (arg or "").split(",") if a.strip())
    name = f"configs/{pathlib.Path(config_file).name}"
    unknown = opts - set(known)
    if unknown:
        raise ConfigError(f"unknown variant(s) {sorted(unknown)} of {name} (known: {', '.join(known)})")
    for group in exclusive:
        both = opts & set(group)
        if len(both) > 1:
            raise ConfigError(f"variants {sorted(both)} of {name} exclude each other; pick one")
    return opts


def load_config(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
    """'path/to/config.py[:variants]' -> its get_config(variants), as --config does, then
    each override 'a.b=value' applied (the value parsed as the field's type)."""
    path, _, arg = str(spec).partition(":")
    p = pathlib.Path(path)
    if not p.is_file():
        raise InputMissing(f"config file {path} does not exist")
    mod_spec = importlib.util.spec_from_file_location(f"_jaxgen_config_{p.stem}", p)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    config = mod.get_config(arg) if arg else mod.get_config()
    for item in overrides:
        set_field(config, item)
    return config


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def set_field(config: ml_collections.ConfigDict, item: str) -> None:
    """Apply one 'a.b=value' override (`--set`), the value parsed as `--config.a.b=value` would
    be: by the field's type (bool: true/false/yes/no/1/0/on/off, anything else refused; int,
    float, str), and as a Python literal for a field that holds None or a tuple/list ('256',
    '(64, 128)', 'None'; a None field takes a bare word as a string)."""
    key, sep, value = item.partition("=")
    if not sep:
        raise ConfigError(f"override {item!r}: write it as key=value, e.g. train.total_kimg=4")
    *parents, leaf = key.strip().split(".")
    node = config
    for part in parents:
        if part not in node or not hasattr(node[part], "keys"):
            raise ConfigError(f"override {item!r}: the config has no field {key!r}")
        node = node[part]
    if leaf not in node:
        raise ConfigError(f"override {item!r}: the config has no field {key!r}")
    node[leaf] = _parse_like(node[leaf], value.strip(), item, key)


def _parse_like(old, value: str, item: str, key: str):
    """`value` parsed as the type of the field's current value `old` (see `set_field`)."""
    if isinstance(old, bool):
        if value.lower() not in _TRUE + _FALSE:
            raise ConfigError(f"override {item!r}: {key} is a bool; write true or false")
        return value.lower() in _TRUE
    if isinstance(old, (int, float, str)):
        try:
            return type(old)(value)
        except ValueError:
            raise ConfigError(f"override {item!r}: {key} is a {type(old).__name__}; "
                              f"{value!r} is not one") from None
    if old is None or isinstance(old, (tuple, list)):
        try:
            new = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            if old is None:
                return value                      # a bare word: a string
            raise ConfigError(f"override {item!r}: {key} holds a sequence; write it as (1, 2)") from None
        if isinstance(old, (tuple, list)):
            if not isinstance(new, (tuple, list)):
                raise ConfigError(f"override {item!r}: {key} holds a sequence; write it as (1, 2)")
            return type(old)(new)
        return new
    raise ConfigError(f"override {item!r}: field {key!r} is not a number, string, bool, None or sequence")


def data(source: str = "folder", path: str = "", resolution: int = 256, channels: int = 3,
         **extra) -> ml_collections.ConfigDict:
    """An image source for `jaxgen.data.load_dataset` (see its docstring for the sources)."""
    d = ml_collections.ConfigDict()
    d.source = source               # 'folder' | 'demo' | 'depth_demo' | 'tfds'
    d.path = path                   # image folder (class sub-folders) or demo output dir
    d.resolution = resolution       # power of two; images are resized/cropped to it
    d.channels = channels           # 1 (grayscale) or 3 (RGB)
    d.cache_dir = "auto"            # decoded-image cache ('' = off)
    d.num_per_class = 256           # demo images per class, for the demo sources
    d.seed = 0                      # demo rendering seed
    d.demo_version = 3              # demo renderer version (1, 2 = earlier demo sets, redrawn bit for bit; see demo_faces)
    d.skip_corrupt = False          # skip (and list) unreadable images instead of stopping
    d.stream = "auto"               # a packed path (python -m jaxgen pack): 'auto' streams it above
                                    # 2 GiB decoded, 'always' reads each step's rows, 'never' loads it
    d.update(extra)
    return d


def classifier(name: str, data_cfg: ml_collections.ConfigDict, model: str = "resnet50v2",
               lr: float = 1e-4, epochs: int = 15, max_degrees: float = 15.0,
               max_brightness: float = 0.1) -> ml_collections.ConfigDict:
    """A classifier run (`train.py` with task 'classifier'; jaxgen.classifiers.train): the
    acne paper's settings by default (Adam lr 1e-4, batch 16, 15 epochs, rotation /
    brightness / flip augmentation, 80/20 split, best checkpoint by validation accuracy)."""
    c = ml_collections.ConfigDict()
    c.task = "classifier"
    c.name = name
    c.seed = 0
    c.data = data_cfg
    c.data.val_fraction = 0.2
    c.data.val_path = ""           # a separate validation folder instead of the split
    c.model = ml_collections.ConfigDict()
    c.model.name = model           # small_cnn | resnet50v2 | resnet152v2 | inception_resnet_v2
    c.model.keras_weights = ""     # Keras ImageNet .h5 for ImageNet initialisation
    c.model.kwargs = ml_collections.ConfigDict()
    c.train = ml_collections.ConfigDict()
    c.train.lr = lr
    c.train.batch_size = 16
    c.train.epochs = epochs
    c.augment = ml_collections.ConfigDict()
    c.augment.max_degrees = max_degrees
    c.augment.max_brightness = max_brightness
    c.augment.flip = True
    return c


def dcgan(name: str, data_cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A conditional DCGAN run with EMA-teacher knowledge distillation (`train.py` with task
    'dcgan'; jaxgen.dcgan.train): widths for 64 px, Adam 2e-4 (0.5, 0.999), batch 64, 300 kimg,
    KD weights G 0.5 / D 0.1 (set both to 0 for the plain conditional DCGAN)."""
    c = ml_collections.ConfigDict()
    c.task = "dcgan"
    c.name = name
    c.seed = 0

    c.data = data_cfg
    c.data.conditional = True        # class-conditional G and D
    c.data.mirror = True             # random x-flips of the reals

    c.model = ml_collections.ConfigDict()
    c.model.z_dim = 128
    c.model.embed_dim = 32           # G label embedding size
    c.model.widths = (256, 256, 128, 64, 32)  # channels at 4, 8, 16, 32, 64 px (one per doubling)
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
    return c


def stylegan2_ada() -> ml_collections.ConfigDict:
    """Defaults shared by every StyleGAN2-ADA training config."""
    c = ml_collections.ConfigDict()
    c.task = "stylegan2"
    c.seed = 0

    c.data = data(name="", data_dir="", split="train")  # name/data_dir/split: source='tfds'
    c.data.conditional = True       # use class labels (c_dim = number of classes)
    c.data.mirror = True            # random x-flips of the reals
    c.data.fixed_label = ""         # every image is this class (a per-class fine-tune of a conditional run)
    c.data.label_names = ""         # ... of these labels 'a,b,c' ('' = transfer.init_from's classes)

    c.model = ml_collections.ConfigDict()
    c.model.z_dim = 512
    c.model.w_dim = 512
    c.model.mapping_layers = 8
    c.model.channel_base = 32768
    c.model.channel_max = 512
    c.model.conv_clamp = ml_collections.FieldReference(None, field_type=float)
    c.model.mbstd_group_size = 4
    c.model.use_noise = True        # G's per-pixel noise inputs; off: no speckle from the const noise
                                    # buffers in short runs (bench/RESULTS.md, issue 27 study)
    c.model.dtype = "float32"       # compute dtype: 'bfloat16' (TPU/GPU) or 'float16' (GPU, needs
                                    # conv_clamp, e.g. 256 as NVIDIA); params stay float32
    c.model.num_lowp_res = 4        # highest resolutions computed in `dtype`

    c.train = ml_collections.ConfigDict()
    c.train.total_kimg = 25000.0
    c.train.batch_size = 32         # global, split over all devices
    c.train.batch_gpu = 0           # run each phase in rounds of this many examples (of the global
                                    # batch), accumulating gradients: less memory, same update; 0 = off
    c.train.lazy_regs = "host"      # who picks the steps that run R1/path length: 'host' (up to 3
                                    # compiled step programs, each only its phases: fastest on CPU)
                                    # or 'device' (one program with lax.cond: compiles once)
    c.train.loss_scale = 0.0        # gradient scale against float16 underflow; 0 = auto (1024 with
                                    # model.dtype='float16', else 1 = none); overflowed updates are skipped
    c.train.g_lr = 0.002
    c.train.d_lr = 0.002
    c.train.betas = (0.0, 0.99)
    c.train.r1_gamma = 10.0         # < 0: auto, 0.0002 * resolution^2 / batch_size
    c.train.pl_weight = 2.0
    c.train.pl_batch_shrink = 2
    c.train.pl_decay = 0.01
    c.train.style_mixing_prob = 0.9
    c.train.g_reg_interval = 4
    c.train.d_reg_interval = 16
    c.train.ema_kimg = 10.0
    c.train.ema_rampup = ml_collections.FieldReference(0.05, field_type=float)  # None = off
    c.train.kimg_per_tick = 4.0
    c.train.snapshot_ticks = 50       # checkpoint every N ticks
    c.train.image_snapshot_ticks = 50  # sample grid every N ticks
    c.train.keep_checkpoints = 3
    c.train.grid_cols = 8

    c.ada = ml_collections.ConfigDict()
    c.ada.mode = "ada"              # 'ada' (adaptive p) | 'fixed' (p = p_init) | 'noaug'
    c.ada.augpipe = "bgc"
    c.ada.target = 0.6
    c.ada.kimg = 500.0              # p can go 0 -> 1 in this many kimg
    c.ada.interval = 4              # adjust p every N minibatches
    c.ada.p_init = 0.0

    c.transfer = ml_collections.ConfigDict()
    c.transfer.init_from = ""       # NVIDIA .pkl, networks directory or workdir
    c.transfer.min_share = 0.9      # stop when G or D gets less of its parameters copied (0: allow)
    c.transfer.freeze_d = 0         # freeze-D: first N layers of D stay fixed
    c.transfer.freeze_g_res = 0     # freeze G synthesis blocks at resolutions <= this
    c.transfer.freeze_mapping = False

    c.metrics = ml_collections.ConfigDict()
    c.metrics.every_ticks = 0         # FID (and KID) of G_ema every N ticks; 0 = off
    c.metrics.num_fakes = 10000
    c.metrics.inception_weights = ""  # path to pt_inception-2015-12-05-6726825d.pth
    c.metrics.feature_net = ""        # fallback without Inception weights, e.g. 'random_inception'
    c.metrics.cache_dir = "data/.metric_cache"

    c.distributed = False           # multi-host: call jax.distributed.initialize()
    return c


def evolve() -> ml_collections.ConfigDict:
    """Defaults of evolve.py: genetic algorithm over latents + anonymous dataset export."""
    e = ml_collections.ConfigDict()
    e.task = "evolve"
    e.generator = ""                # GAN workdir / networks dir / .pkl; '{class}' = one G per class
    e.best = False                  # use the workdir's best-FID checkpoint
    e.classes = ""                  # comma-separated class names ('' = all of G / the classifier)
    e.classifier = ""               # classifier workdir for the class-confidence term
    e.realism = "discriminator"     # 'discriminator' | 'detector' | 'none'
    e.detector = ""                 # real-vs-synthetic classifier workdir (realism='detector')
    e.detector_real_class = "real"
    e.identity = "dlib"             # 'dlib' | 'pixel' (not an identity model) | 'none'
    e.identity_threshold = -1.0     # < 0: the embedder's own (dlib 0.6, pixel 0.3)
    e.dlib_detect = True            # find the face with dlib's HOG detector ...
    e.dlib_fallback = "whole"       # ... else use the whole (aligned GAN) image
    e.real = data()                 # the real training faces, for the identity term
    # Fitness = sum of weight * term (see jaxgen/evolve/fitness.py).
    e.w_class = 1.0
    e.w_realism = 0.5
    e.w_identity = 1.0
    e.w_stats = 0.0
    e.w_diversity = 0.5
    e.stats_std = 10.0              # stats term: stats_std * std - stats_mean * |mean|
    e.stats_mean = 5.0
    # GA (evosax).
    e.strategy = "SimpleGA"         # any evosax 0.3 algorithm name, e.g. CMA_ES
    e.popsize = 32
    e.generations = 20
    e.sigma = 0.5                   # mutation std in normalised w units
    e.elite_ratio = 0.5
    e.crossover = "style_mix"       # face fusion: per-layer style mixing | 'none'
    e.mix_rate = 0.3
    e.psi = 0.7                     # truncation of each round's starting latent
    e.max_z_rms = 0.0               # a DCGAN generator sees z capped at this rms (0: off; latents.DCGANDecoder)
    # Export.
    e.out = ""                      # dataset folder (or evolve.py --out)
    e.num_per_class = 16
    e.per_round = 4                 # at most this many images per GA run
    e.max_rounds = 0                # 0: 4 * ceil(num_per_class / per_round)
    e.require_class = True          # export only what the classifier calls the target class
    e.min_diversity = 0.05          # pixel-feature distance to every exported image
    e.bank_size = 1024
    e.seed = 0
    e.distributed = False           # multi-host: call jax.distributed.initialize()
    return e
