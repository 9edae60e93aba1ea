"""Conditional DCGAN networks (Flax linen, NHWC) and its pure loss functions.

Networks (parameters always float32; `dtype` is the compute dtype, e.g.
'bfloat16' on accelerators; outputs are float32):

  Generator(z [N, z_dim], labels)      -> images [N, R, R, C] in [-1, 1] (tanh)
  Discriminator(images [N, R, R, C], labels) -> logits [N]

`labels` are class ints [N] or one-hot / soft rows [N, num_classes]; both go
through the same embedding matrix (`onehot @ table`), and are ignored when
num_classes == 0 (unconditional). R is a power of two in 16..256, C is 1 or 3.

G: [z, label embedding] -> dense 4x4xW -> (nearest 2x upsample, 3x3 conv,
LeakyReLU, pixel norm) per resolution up to R -> 3x3 conv to C -> tanh. It
has no BatchNorm (pixelwise feature normalisation instead, as in ProGAN), so
the whole model is `params` only, with no mutable batch statistics.
D: 3x3 conv -> (4x4 stride-2 conv, LeakyReLU) down to 4x4 -> minibatch
stddev channel -> 3x3 conv -> dense -> logit, plus the projection term
<label embedding, features> (Miyato & Koyama 2018).

`widths` are the channel counts at resolutions 4, 8, 16, ... (G) and the same
per resolution in D; a shorter tuple repeats its last entry, extra entries
are ignored.

Losses, all pure and jit-able (`kd_weight` is a Python float; 0 gives the
plain conditional DCGAN and needs no teacher outputs):

  G: softplus(-D(G(z,c))) (non-saturating) + kd_g * |G(z,c) - G_teacher(z,c)|
  D: softplus(-D(x)) + softplus(D(G(z,c)))   + kd_d * (D(.) - D_teacher(.))^2
  teacher <- decay * teacher + (1 - decay) * student          (ema_update)

with means over all elements; teacher outputs are stop-gradient.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = Any


def stage_widths(widths: Sequence[int], resolution: int) -> Dict[int, int]:
    """{4: widths[0], 8: widths[1], ..., resolution: ...}; the last width repeats."""
    if (not isinstance(resolution, int) or resolution < 16 or resolution > 256
            or resolution & (resolution - 1)):
        raise ValueError(f"resolution must be a power of two in 16..256, got {resolution!r}")
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be positive channel counts, got {widths}")
    n = int(math.log2(resolution)) - 1
    widths = (widths + [widths[-1]] * n)[:n]
    return {4 * 2 ** i: w for i, w in enumerate(widths)}


def to_onehot(labels: Array, num_classes: int) -> jnp.ndarray:
    """Class ints [N] -> one-hot float32 [N, K]; float rows [N, K] pass through."""
    labels = jnp.asarray(labels)
    if labels.ndim == 1:
        return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    if labels.ndim != 2 or labels.shape[-1] != num_classes:
        raise ValueError(f"labels must be ints [N] or one-hot [N, {num_classes}], "
                         f"got shape {labels.shape}")
    return labels.astype(jnp.float32)


def _pixel_norm(x: Array) -> Array:
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.mean(x32 ** 2, axis=-1, keepdims=True) + 1e-8)).astype(x.dtype)


def _lrelu(x: Array) -> Array:
    return nn.leaky_relu(x, 0.2)


class Generator(nn.Module):
    """Conditional DCGAN generator: z [N, z_dim], labels [N] or [N, K] -> [N, R, R, C]."""

    resolution: int = 64
    channels: int = 1
    num_classes: int = 0
    z_dim: int = 128
    widths: Tuple[int, ...] = (256, 128, 64, 32, 16)
    embed_dim: int = 32
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, z: Array, labels: Optional[Array] = None) -> jnp.ndarray:
        dt = jnp.dtype(self.dtype)
        W = stage_widths(self.widths, self.resolution)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {z.shape}")
        h = z.astype(jnp.float32)
        if self.num_classes:
            if labels is None:
                raise ValueError("a conditional Generator needs labels")
            table = self.param("label_embed", nn.initializers.normal(1.0),
                               (self.num_classes, self.embed_dim), jnp.float32)
            h = jnp.concatenate([h, to_onehot(labels, self.num_classes) @ table], axis=-1)
        dense = dict(dtype=dt, param_dtype=jnp.float32)
        h = nn.Dense(16 * W[4], name="fc", **dense)(h.astype(dt))
        h = _pixel_norm(_lrelu(h.reshape(-1, 4, 4, W[4])))                 # [N, 4, 4, W4]
        h = _pixel_norm(_lrelu(nn.Conv(W[4], (3, 3), name="conv4", **dense)(h)))
        r = 4
        while r < self.resolution:
            r *= 2
            h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)            # nearest 2x upsample
            h = _pixel_norm(_lrelu(nn.Conv(W[r], (3, 3), name=f"conv{r}", **dense)(h)))
        img = nn.Conv(self.channels, (3, 3), name="to_image", **dense)(h)  # [N, R, R, C]
        return jnp.tanh(img.astype(jnp.float32))


class Discriminator(nn.Module):
    """Conditional DCGAN discriminator: images [N, R, R, C], labels -> logits [N]."""

    resolution: int = 64
    channels: int = 1
    num_classes: int = 0
    widths: Tuple[int, ...] = (256, 128, 64, 32, 16)
    mbstd: bool = True
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, images: Array, labels: Optional[Array] = None) -> jnp.ndarray:
        dt = jnp.dtype(self.dtype)
        W = stage_widths(self.widths, self.resolution)
        R = self.resolution
        if images.ndim != 4 or images.shape[1:] != (R, R, self.channels):
            raise ValueError(f"images must be [N, {R}, {R}, {self.channels}], got {images.shape}")
        kw = dict(dtype=dt, param_dtype=jnp.float32)
        h = _lrelu(nn.Conv(W[R], (3, 3), name="from_image", **kw)(images.astype(dt)))
        r = R
        while r > 4:                                                       # [N, r, r, W_r]
            h = _lrelu(nn.Conv(W[r // 2], (4, 4), strides=(2, 2), name=f"conv{r}", **kw)(h))
            r //= 2
        if self.mbstd:  # one extra channel: the mean over features of the batch stddev
            std = jnp.sqrt(jnp.var(h.astype(jnp.float32), axis=0) + 1e-8).mean()
            h = jnp.concatenate([h, jnp.broadcast_to(std, h.shape[:-1] + (1,)).astype(dt)], -1)
        h = _lrelu(nn.Conv(W[4], (3, 3), name="conv4", **kw)(h))           # [N, 4, 4, W4]
        h = _lrelu(nn.Dense(W[4], name="fc", **kw)(h.reshape(h.shape[0], -1)))
        feat = h.astype(jnp.float32)                                        # [N, W4]
        out = nn.Dense(1, name="out", **kw)(h).astype(jnp.float32)[:, 0]
        if self.num_classes:
            if labels is None:
                raise ValueError("a conditional Discriminator needs labels")
            table = self.param("label_embed", nn.initializers.normal(1.0 / math.sqrt(W[4])),
                               (self.num_classes, W[4]), jnp.float32)
            out = out + jnp.sum((to_onehot(labels, self.num_classes) @ table) * feat, axis=-1)
        return out


# ------------------------------------------------------------------------- losses

def model_kwargs(model_cfg: Any, resolution: int, channels: int,
                 num_classes: int) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(G_kwargs, D_kwargs), JSON-able, from config.model and the data."""
    common = dict(resolution=int(resolution), channels=int(channels), num_classes=int(num_classes),
                  widths=[int(w) for w in model_cfg.widths], dtype=str(model_cfg.get("dtype", "float32")))
    G_kwargs = dict(common, z_dim=int(model_cfg.z_dim), embed_dim=int(model_cfg.get("embed_dim", 32)))
    D_kwargs = dict(common, mbstd=bool(model_cfg.get("mbstd", True)))
    return G_kwargs, D_kwargs


def build(G_kwargs: Dict[str, Any], D_kwargs: Dict[str, Any]) -> Tuple[Generator, Discriminator]:
    """The (Generator, Discriminator) modules of a run from its JSON-able kwargs (run.json)."""
    fix = lambda kw: dict(kw, widths=tuple(kw["widths"]))  # noqa: E731
    return Generator(**fix(G_kwargs)), Discriminator(**fix(D_kwargs))


def g_gan_loss(fake_logits: Array) -> jnp.ndarray:
    """Non-saturating generator loss: mean softplus(-D(G(z)))."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def d_gan_loss(real_logits: Array, fake_logits: Array) -> jnp.ndarray:
    """Logistic discriminator loss: mean softplus(-D(x)) + mean softplus(D(G(z)))."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def kd_g_loss(student_images: Array, teacher_images: Array) -> jnp.ndarray:
    """L1 distillation: mean |G(z,c) - G_teacher(z,c)| (teacher is stop-gradient)."""
    return jnp.mean(jnp.abs(student_images - jax.lax.stop_gradient(teacher_images)))


def kd_d_loss(student_real: Array, student_fake: Array, teacher_real: Array,
              teacher_fake: Array) -> jnp.ndarray:
    """MSE distillation of logits over the real and fake batch together:
    mean of [(D(x) - D_t(x))^2, (D(G(z)) - D_t(G(z)))^2] (teacher stop-gradient)."""
    sg = jax.lax.stop_gradient
    d = jnp.concatenate([jnp.ravel(student_real - sg(teacher_real)),
                         jnp.ravel(student_fake - sg(teacher_fake))])
    return jnp.mean(d ** 2)


def generator_loss(fake_logits: Array, fake_images: Optional[Array] = None,
                   teacher_images: Optional[Array] = None,
                   kd_weight: float = 0.0) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
    """(total, {'gan', 'kd'}): g_gan_loss + kd_weight * kd_g_loss."""
    gan = g_gan_loss(fake_logits)
    if not kd_weight:
        return gan, dict(gan=gan, kd=jnp.zeros((), jnp.float32))
    kd = kd_g_loss(fake_images, teacher_images)
    return gan + kd_weight * kd, dict(gan=gan, kd=kd)


def discriminator_loss(real_logits: Array, fake_logits: Array,
                       teacher_real: Optional[Array] = None, teacher_fake: Optional[Array] = None,
                       kd_weight: float = 0.0) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
    """(total, {'gan', 'kd'}): d_gan_loss + kd_weight * kd_d_loss."""
    gan = d_gan_loss(real_logits, fake_logits)
    if not kd_weight:
        return gan, dict(gan=gan, kd=jnp.zeros((), jnp.float32))
    kd = kd_d_loss(real_logits, fake_logits, teacher_real, teacher_fake)
    return gan + kd_weight * kd, dict(gan=gan, kd=kd)


def ema_update(teacher: Any, student: Any, decay: float) -> Any:
    """teacher <- decay * teacher + (1 - decay) * student, leaf by leaf."""
    return jax.tree_util.tree_map(lambda t, s: (decay * t + (1.0 - decay) * s).astype(t.dtype),
                                  teacher, student)
