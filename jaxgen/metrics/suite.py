"""Evaluate generated images against real ones: FID, KID, IS, precision/recall, SSIM, PSNR.

Features come from a `FeatureNet`: the standard FID Inception-v3 when its
weights file is given (numbers comparable with papers), or a fallback the user
names: `random_inception[:seed]` (the same architecture with seeded He-normal
weights, fed 139 px instead of 299 px inputs to cost ~4.6x less) or
`classifier:<workdir>` (a jaxgen classifier's penultimate features). Fallback results carry the network's name in every key and a
`comparable: false` flag, so they can never be mistaken for published FID.

Real-image features are cached on disk, keyed by the images' content hash and
the feature network, so repeated evaluations (e.g. FID every few ticks during
training) only run the network on new fakes.

SSIM and PSNR need image pairs; a GAN has none, so each fake is paired with its
nearest real image in pixel space (L2). High values then also flag fakes that
copy a training image, which matters for de-identification.
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from typing import Callable, Dict, Iterable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.classifiers.sorting import to_classifier_input
from jaxgen.errors import ConfigError
from jaxgen.metrics import formulas, image_quality
from jaxgen.metrics.inception import FIDInceptionV3, InceptionFeatures, load_fid_inception_weights
from jaxgen.runs import open_run
from jaxgen.utils.images import to_uint8

ALL_METRICS = ("fid", "kid", "is", "pr", "ssim", "psnr")
RANDOM_INCEPTION_INPUT = 139


@dataclasses.dataclass
class FeatureNet:
    """uint8 images [N,H,W,C] -> {'pool3': [N,D], 'logits': [N,K]}."""
    name: str
    comparable: bool
    fn: Callable[[np.ndarray], Dict[str, np.ndarray]]


def he_normal_inception_variables(seed: int = 0) -> Dict:
    """FID-Inception variables with seeded He-normal conv/fc weights and identity BatchNorm."""
    abstract = jax.eval_shape(lambda k: FIDInceptionV3().init(k, jnp.zeros([1, 75, 75, 3])),
                              jax.random.key(0))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        shape = leaf.shape
        if "kernel" in name:
            fan_in = int(np.prod(shape[:-1]))
            return jnp.asarray(rng.standard_normal(shape, np.float32) * np.sqrt(2.0 / fan_in))
        if "'var'" in name or "scale" in name:
            return jnp.ones(shape, jnp.float32)
        return jnp.zeros(shape, jnp.float32)
    return jax.tree_util.tree_map_with_path(fill, abstract)


def make_feature_net(inception_weights: str = "", fallback: str = "", batch_size: int = 64) -> FeatureNet:
    """The FID Inception if `inception_weights` is set, else the named fallback, else an error."""
    if inception_weights:
        feats = InceptionFeatures(load_fid_inception_weights(inception_weights), batch_size=batch_size)
        return FeatureNet("inception", True, feats)
    if fallback.startswith("random_inception"):
        seed = int(fallback.split(":", 1)[1]) if ":" in fallback else 0
        feats = InceptionFeatures(he_normal_inception_variables(seed), batch_size=batch_size,
                                  input_size=RANDOM_INCEPTION_INPUT)
        return FeatureNet(f"random_inception_s{seed}", False, feats)
    if fallback.startswith("classifier:"):
        return classifier_feature_net(fallback.split(":", 1)[1], batch_size)
    if fallback:
        raise ConfigError(f"unknown feature network {fallback!r}; use 'random_inception[:seed]' or "
                         "'classifier:<classifier workdir>'")
    # No weights and no fallback: let the loader raise its message (where to get the file).
    load_fid_inception_weights("pt_inception-2015-12-05-6726825d.pth")
    raise AssertionError("unreachable")


def classifier_feature_net(workdir: str, batch_size: int = 64) -> FeatureNet:
    """Features of a classifier trained with jaxgen (penultimate layer, its logits).

    Domain-specific features (e.g. an acne-severity classifier) often track the
    quality of medical faces better than random ones; still not comparable to FID.
    """
    run = open_run(workdir, kinds=("classifier",))
    model, variables, res, ch = run.model, run.variables, run.resolution, run.channels

    @jax.jit
    def run(x_uint8):
        x = to_classifier_input(x_uint8.astype(jnp.float32) / 127.5 - 1.0, res, ch)
        logits, feats = model.apply(variables, x, train=False, return_features=True)
        return {"pool3": feats.astype(jnp.float32), "logits": logits.astype(jnp.float32)}

    def fn(images: np.ndarray) -> Dict[str, np.ndarray]:
        outs = [jax.device_get(run(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
        return {k: np.concatenate([o[k] for o in outs]) for k in ("pool3", "logits")}
    name = "classifier_" + "".join(ch_ if ch_.isalnum() else "_" for ch_ in pathlib.Path(workdir).name)
    return FeatureNet(name, False, fn)


def _content_hash(images: np.ndarray) -> str:
    """A short key of the images' pixels: a packed set's stored content hash (`content_key`, no
    pixels read: the reals may not fit in memory), else a sha256 of the array."""
    if hasattr(images, "content_key"):
        return images.content_key()
    h = hashlib.sha256(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()[:24]


def extract(net: FeatureNet, batches: Iterable[np.ndarray]) -> Dict[str, np.ndarray]:
    out: Dict[str, list] = {}
    for b in batches:
        for k, v in net.fn(b).items():
            out.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in out.items()}


def real_features(net: FeatureNet, images: np.ndarray, cache_dir: Optional[str] = None,
                  batch: int = 64) -> Dict[str, np.ndarray]:
    """Features of the real images, cached as `<cache_dir>/<net>-<hash>.npz`."""
    path = None
    if cache_dir:
        path = pathlib.Path(cache_dir) / f"{net.name}-{_content_hash(images)}.npz"
        if path.exists():
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
    feats = extract(net, (images[i:i + batch] for i in range(0, len(images), batch)))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **feats)
        tmp.replace(path)
    return feats


def generator_batches(sample: Callable[[np.ndarray, np.ndarray], np.ndarray], z_dim: int,
                      num_classes: int, num: int, batch: int = 32, seed: int = 0,
                      label_probs: Optional[Sequence[float]] = None) -> Iterator[np.ndarray]:
    """uint8 NHWC batches of `num` generated images.

    sample(z float32 [B, z_dim], labels int [B]) -> images [B, R, R, C] in [-1, 1] (any
    generator: `Run.generate`, or a jitted G during training); z ~ N(0, I) and labels
    drawn from `label_probs` (uniform when None) with one numpy rng of `seed`.
    """
    rng = np.random.default_rng(seed)
    k = num_classes
    for start in range(0, num, batch):
        n = min(batch, num - start)
        z = rng.standard_normal([batch, z_dim]).astype(np.float32)
        labels = np.zeros(batch, np.int32)
        if k:
            p = np.full(k, 1.0 / k) if label_probs is None else np.asarray(label_probs, np.float64)
            labels = rng.choice(k, size=batch, p=p / p.sum()).astype(np.int32)
        yield to_uint8(np.asarray(sample(z, labels)))[:n]


@jax.jit
def _nearest(fakes: jnp.ndarray, reals: jnp.ndarray) -> jnp.ndarray:
    f = fakes.reshape(fakes.shape[0], -1)
    r = reals.reshape(reals.shape[0], -1)
    d = jnp.sum(f * f, 1)[:, None] - 2 * f @ r.T + jnp.sum(r * r, 1)[None, :]
    return jnp.argmin(d, axis=1)


def nearest_real(fakes: np.ndarray, reals: np.ndarray, block: int = 256) -> np.ndarray:
    """Index of the nearest real image (pixel L2) for every fake."""
    r = jnp.asarray(reals, jnp.float32) / 255.0
    out = [np.asarray(_nearest(jnp.asarray(fakes[i:i + block], jnp.float32) / 255.0, r))
           for i in range(0, len(fakes), block)]
    return np.concatenate(out) if out else np.zeros([0], np.int64)


def compute_metrics(fakes: np.ndarray, reals: np.ndarray, metrics: Sequence[str] = ALL_METRICS,
                    net: Optional[FeatureNet] = None, cache_dir: Optional[str] = None,
                    kid_subsets: int = 100, kid_subset_size: int = 1000, is_splits: int = 10,
                    pr_k: int = 3) -> Dict[str, object]:
    """All requested metrics for uint8 image arrays [N,H,W,C] (same size and channels).

    Feature metrics are keyed with the feature network's name unless it is the
    standard Inception (e.g. 'fid' vs 'fid_random_inception_s0').
    """
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ConfigError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(ALL_METRICS)}")
    if fakes.shape[1:] != reals.shape[1:]:
        raise ConfigError(f"fake images {fakes.shape[1:]} and real images {reals.shape[1:]} differ in "
                         "size or channels; load the reals at the generator's resolution")
    res: Dict[str, object] = dict(num_fakes=int(len(fakes)), num_reals=int(len(reals)))
    feature_metrics = [m for m in metrics if m in ("fid", "kid", "is", "pr")]
    if feature_metrics:
        if net is None:
            raise ValueError("feature metrics need a FeatureNet (Inception weights or a fallback)")
        suffix = "" if net.comparable else f"_{net.name}"
        res.update(feature_net=net.name, comparable_to_published=net.comparable)
        fk = extract(net, (fakes[i:i + 64] for i in range(0, len(fakes), 64)))
        rl = real_features(net, reals, cache_dir) if {"fid", "kid", "pr"} & set(metrics) else None
        if "fid" in metrics:
            res["fid" + suffix] = formulas.frechet_distance(*formulas.feature_stats(fk["pool3"]),
                                                            *formulas.feature_stats(rl["pool3"]))
        if "kid" in metrics:
            size = min(kid_subset_size, len(fakes), len(reals))
            mean, std = formulas.kernel_inception_distance(fk["pool3"], rl["pool3"], kid_subsets, size)
            res["kid" + suffix], res["kid_std" + suffix] = mean, std
        if "is" in metrics:
            mean, std = formulas.inception_score(fk["logits"], num_splits=min(is_splits, len(fakes)),
                                                 from_logits=True)
            res["is" + suffix], res["is_std" + suffix] = mean, std
        if "pr" in metrics:
            k = min(pr_k, len(fakes) - 1, len(reals) - 1)
            p, r = formulas.precision_recall(rl["pool3"], fk["pool3"], k=k)
            res["precision" + suffix], res["recall" + suffix] = p, r
    if "ssim" in metrics or "psnr" in metrics:
        pair = reals[nearest_real(fakes, reals)]
        if "ssim" in metrics:
            res["ssim_nn"] = float(image_quality.ssim(fakes, pair, data_range=255)[1])
        if "psnr" in metrics:
            res["psnr_nn"] = float(image_quality.psnr(fakes, pair, data_range=255)[1])
    return res
