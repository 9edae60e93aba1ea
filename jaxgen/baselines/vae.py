"""A class-conditional convolutional VAE (Flax linen): a learned non-GAN baseline.

Why: a VAE is the standard likelihood-based counterpart of the GAN; trained on
the same small labelled face set it shows how much the adversarial objective
buys (VAE samples are typically blurrier but cover the data). Kept small so it
trains on a CPU in minutes at 32-64 px.

Shapes (B batch, R resolution (power of two >= 4), C channels, K classes,
L latent size); images are float32 in [-1, 1], labels int32 [B]:

* ``VAEEncoder(x [B,R,R,C], label [B]) -> mean [B,L], logvar [B,L]``: the label
  one-hot is tiled as K extra input channels and appended to the flattened
  features; stride-2 4x4 convs halve R down to 4.
* ``VAEDecoder(z [B,L], label [B]) -> logits [B,R,R,C]`` (pre-activation a; the
  image is tanh(a) in [-1, 1], the Bernoulli logit of (x+1)/2 is 2a).
* ``ConditionalVAE``: ``__call__(x, label)`` -> (logits, mean, logvar) with the
  reparameterised z drawn from the 'latent' rng; ``encode``, ``decode`` (image).

``elbo_loss`` is a pure function of arrays (negative ELBO per image, averaged):
Gaussian likelihood ``sum((x - tanh a)^2) / (2 sigma^2) + D/2 log(2 pi sigma^2)``
or Bernoulli ``sum(BCE((x+1)/2, logit 2a))``, plus ``beta * KL(q(z|x) || N(0, I))``.

``train_vae`` (jitted Adam step), ``sample_vae``, ``save_vae`` (a record of the
trained baseline: ``vae_params.msgpack`` + ``vae_config.json`` in a workdir).
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from typing import Any, Dict, List, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from jaxgen.data.folder import check_resolution, to_float, to_uint8
from jaxgen.utils.logger import logger

PARAMS_FILE, CONFIG_FILE = "vae_params.msgpack", "vae_config.json"


@dataclasses.dataclass
class VAEConfig:
    """Model size and training settings (all JSON-serialisable)."""
    latent_dim: int = 32
    base_channels: int = 32
    max_channels: int = 256
    steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 1e-3
    beta: float = 1.0
    likelihood: str = "gaussian"
    sigma: float = 0.1
    log_every: int = 100
    seed: int = 0


class _VAESizes(nn.Module):
    """The sizes the encoder, the decoder and the whole VAE share (the whole's fields are
    what save_vae records and what it hands its two parts)."""
    resolution: int
    channels: int
    num_classes: int
    latent_dim: int = VAEConfig.latent_dim
    base_channels: int = VAEConfig.base_channels
    max_channels: int = VAEConfig.max_channels

    def sizes(self) -> Dict[str, Any]:
        """The fields above as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(_VAESizes)
                if f.name not in ("parent", "name")}

    def levels(self) -> int:
        """Stride-2 stages from R down to 4."""
        return int(math.log2(check_resolution(self.resolution))) - 2

    def width(self, level: int) -> int:
        """Channels of stage `level`: base_channels * 2**level, at most max_channels."""
        return int(min(self.base_channels * 2 ** max(level, 0), self.max_channels))


class VAEEncoder(_VAESizes):
    """q(z | x, label): x [B,R,R,C] in [-1,1], label [B] -> mean, logvar [B,L]."""

    @nn.compact
    def __call__(self, x, label):
        onehot = jax.nn.one_hot(label, self.num_classes, dtype=x.dtype)       # [B,K]
        tiled = jnp.broadcast_to(onehot[:, None, None, :], x.shape[:3] + (self.num_classes,))
        h = jnp.concatenate([x, tiled], axis=-1)
        h = nn.leaky_relu(nn.Conv(self.base_channels, (3, 3), name="stem")(h), 0.2)
        for i in range(self.levels()):                                       # R/2^(i+1)
            h = nn.leaky_relu(nn.Conv(self.width(i), (4, 4), (2, 2), name=f"down{i}")(h), 0.2)
        h = jnp.concatenate([h.reshape(h.shape[0], -1), onehot], axis=-1)    # [B,16*ch+K]
        h = nn.leaky_relu(nn.Dense(4 * self.latent_dim, name="hidden")(h), 0.2)
        return nn.Dense(self.latent_dim, name="mean")(h), nn.Dense(self.latent_dim,
                                                                   name="logvar")(h)


class VAEDecoder(_VAESizes):
    """p(x | z, label): z [B,L], label [B] -> logits a [B,R,R,C] (image = tanh(a))."""

    @nn.compact
    def __call__(self, z, label):
        onehot = jax.nn.one_hot(label, self.num_classes, dtype=z.dtype)
        n = self.levels()
        ch = self.width(n - 1)
        h = nn.Dense(4 * 4 * ch, name="fc")(jnp.concatenate([z, onehot], axis=-1))
        h = nn.leaky_relu(h.reshape(z.shape[0], 4, 4, ch), 0.2)               # [B,4,4,ch]
        for i in reversed(range(n)):                                         # 4 -> R
            h = nn.ConvTranspose(self.width(i - 1), (4, 4), (2, 2), padding="SAME", name=f"up{i}")(h)
            h = nn.leaky_relu(h, 0.2)
        return nn.Conv(self.channels, (3, 3), name="to_image")(h)


class ConditionalVAE(_VAESizes):
    """Encoder + decoder; ``__call__(x, label) -> (logits, mean, logvar)``."""

    def setup(self):
        self.encoder = VAEEncoder(**self.sizes(), name="encoder")
        self.decoder = VAEDecoder(**self.sizes(), name="decoder")

    def __call__(self, x, label):
        mean, logvar = self.encoder(x, label)
        eps = jax.random.normal(self.make_rng("latent"), mean.shape, mean.dtype)
        return self.decoder(mean + jnp.exp(0.5 * logvar) * eps, label), mean, logvar

    def encode(self, x, label):
        return self.encoder(x, label)

    def decode(self, z, label):
        """Images [B,R,R,C] in [-1, 1]."""
        return jnp.tanh(self.decoder(z, label))


def elbo_loss(x, logits, mean, logvar, beta: float = 1.0, likelihood: str = "gaussian",
              sigma: float = 0.1) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
    """Negative ELBO, averaged over the batch: (loss, {'recon', 'kl'}).

    x [B,...] in [-1, 1]; logits a [B,...] from the decoder; mean, logvar [B,L].
    recon per image: Gaussian NLL of x under N(tanh a, sigma^2) summed over
    pixels (constant included), or Bernoulli NLL of (x+1)/2 with logit 2a.
    kl per image: 0.5 * sum(exp(logvar) + mean^2 - 1 - logvar).
    """
    b = x.shape[0]
    xf, af = x.reshape(b, -1), logits.reshape(b, -1)
    if likelihood == "gaussian":
        d = xf.shape[1]
        recon = (jnp.sum((xf - jnp.tanh(af)) ** 2, axis=1) / (2 * sigma ** 2)
                 + 0.5 * d * jnp.log(2 * jnp.pi * sigma ** 2))
    elif likelihood == "bernoulli":
        t, l = (xf + 1) / 2, 2 * af
        recon = jnp.sum(jax.nn.softplus(l) - t * l, axis=1)      # BCE with logits
    else:
        raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {likelihood!r}")
    kl = 0.5 * jnp.sum(jnp.exp(logvar) + mean ** 2 - 1.0 - logvar, axis=1)
    recon, kl = jnp.mean(recon), jnp.mean(kl)
    return recon + beta * kl, dict(recon=recon, kl=kl)


def _config(cfg) -> VAEConfig:
    if cfg is None:
        return VAEConfig()
    if isinstance(cfg, VAEConfig):
        return cfg
    d = dict(cfg)
    unknown = set(d) - {f.name for f in dataclasses.fields(VAEConfig)}
    if unknown:
        raise ValueError(f"unknown VAE config key(s) {sorted(unknown)}")
    return VAEConfig(**d)


def train_vae(images_uint8, labels, num_classes: int, cfg=None, workdir=None,
              key: Optional[jax.Array] = None, verbose: bool = True):
    """Train a ConditionalVAE on uint8 images [N,R,R,C] with int labels [N].

    cfg: VAEConfig or a dict of its fields. key: PRNG key (default from cfg.seed).
    Returns (model, params, history); history is a list of
    {'step', 'loss', 'recon', 'kl', 'seconds'} averaged over each log interval.
    With ``workdir``, params, config and history are saved there (see save_vae).
    """
    cfg = _config(cfg)
    images, labels = np.asarray(images_uint8), np.asarray(labels).astype(np.int32)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != images.shape[2] \
            or len(images) == 0:
        raise ValueError(f"images must be uint8 [N,R,R,C], got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or (len(labels) and (labels.min() < 0
                                                           or labels.max() >= num_classes)):
        raise ValueError(f"labels must be [N] in [0, {num_classes})")
    n, res, _, ch = images.shape
    model = ConditionalVAE(res, ch, int(num_classes), cfg.latent_dim, cfg.base_channels,
                           cfg.max_channels)
    key = jax.random.PRNGKey(cfg.seed) if key is None else key
    key, k_init, k_lat = jax.random.split(key, 3)
    x0 = jnp.zeros((1, res, res, ch), jnp.float32)
    params = model.init({"params": k_init, "latent": k_lat}, x0, jnp.zeros((1,), jnp.int32))["params"]
    tx = optax.adam(cfg.learning_rate)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y, k):
        def loss_fn(p):
            logits, mean, logvar = model.apply({"params": p}, x, y, rngs={"latent": k})
            return elbo_loss(x, logits, mean, logvar, cfg.beta, cfg.likelihood, cfg.sigma)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, dict(aux, loss=loss)

    data = to_float(images)
    bs = min(int(cfg.batch_size), n)
    rng = np.random.default_rng(cfg.seed)
    order, pos, acc, history, t0 = rng.permutation(n), 0, [], [], time.time()
    for s in range(1, int(cfg.steps) + 1):
        if pos + bs > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + bs]
        pos += bs
        key, k = jax.random.split(key)
        params, opt, m = step(params, opt, data[idx], labels[idx], k)
        acc.append(m)
        if s % max(1, int(cfg.log_every)) == 0 or s == cfg.steps:
            row = {k_: float(np.mean([float(a[k_]) for a in acc])) for k_ in ("loss", "recon", "kl")}
            row.update(step=s, seconds=round(time.time() - t0, 2))
            history.append(row)
            acc = []
            if verbose:
                logger.info(f"vae step {s:6d}/{cfg.steps}  loss {row['loss']:.2f}  recon "
                            f"{row['recon']:.2f}  kl {row['kl']:.2f}  {row['seconds']:.1f}s")
    if workdir is not None:
        save_vae(workdir, model, params, cfg, history)
    return model, params, history


def save_vae(workdir, model: ConditionalVAE, params, cfg=None, history=None) -> pathlib.Path:
    """Write ``vae_params.msgpack`` (flax.serialization) and ``vae_config.json``
    ({'model': module kwargs, 'train': cfg, 'history': [...]}) into ``workdir``."""
    wd = pathlib.Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    (wd / PARAMS_FILE).write_bytes(serialization.to_bytes(jax.device_get(params)))
    meta = dict(model=model.sizes(), train=dataclasses.asdict(_config(cfg)), history=history or [])
    (wd / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return wd


def sample_vae(model: ConditionalVAE, params, labels, key: jax.Array,
               temperature: float = 1.0, batch_size: int = 256) -> np.ndarray:
    """uint8 images [M,R,R,C]: decode z ~ N(0, temperature^2 I) for each label [M]."""
    labels = np.asarray(labels, np.int32).reshape(-1)
    if len(labels) and (labels.min() < 0 or labels.max() >= model.num_classes):
        raise ValueError(f"labels must lie in [0, {model.num_classes})")
    decode = jax.jit(lambda p, z, y: model.apply({"params": p}, z, y, method=ConditionalVAE.decode))
    z = temperature * jax.random.normal(key, (len(labels), model.latent_dim))
    out: List[np.ndarray] = [np.asarray(decode(params, z[s:s + batch_size], labels[s:s + batch_size]))
                             for s in range(0, len(labels), batch_size)]
    shape = (0, model.resolution, model.resolution, model.channels)
    return to_uint8(np.concatenate(out) if out else np.zeros(shape, np.float32))
