"""Image classifiers in Flax linen: Keras-compatible ResNet-V2 / Inception-ResNet-V2 and a small CNN.

What: the classifiers of the synthetic-data papers' downstream experiments, written so that the
official Keras ImageNet weights (and any Keras ``save_weights`` file) load into them exactly
(:mod:`jaxgen.classifiers.keras_h5`):

* :class:`ResNetV2` -- the pre-activation bottleneck ResNet of ``keras.applications.ResNet50V2`` /
  ``ResNet152V2`` (stage sizes ``[3, 4, 6, 3]`` / ``[3, 8, 36, 3]``).  Keras's V2 variant puts the
  stride on the *last* block of each stack (the last stack has none), its stem is a 7x7/2 conv
  with bias (no BN: the blocks pre-activate), zero padding and a 3x3/2 max-pool, and the trunk
  ends in BN+ReLU (``post_bn``).  Blocks without a projection shortcut subsample the shortcut
  with a 1x1/2 max-pool, i.e. ``x[:, ::2, ::2]``.  BN eps is 1.001e-5.
* :class:`InceptionResNetV2` -- ``keras.applications.InceptionResNetV2``: stem, mixed_5b,
  10 x block35 (residual scale 0.17), mixed_6a, 20 x block17 (0.1), mixed_7a, 10 x block8
  (0.2; the last one with scale 1 and no ReLU), conv_7b.  Every conv-BN has no conv bias and
  a BN without gamma (Keras ``scale=False``, eps 1e-3); the residual up-projections are convs
  with bias and no BN.  Paddings ('VALID'/'SAME') are Keras's, and mixed_5b's 3x3 average pool
  excludes the padding from its count, as TF does.
* :class:`SmallCNN` -- a few conv-BN-ReLU-maxpool stages for fast CPU runs (from 16 px up).

Shapes: inputs ``[N, H, W, C]`` (NHWC; :func:`preprocess` gives the scaling the Keras weights
expect, ``x / 127.5 - 1``), outputs logits ``[N, num_classes]`` in float32, or
``(logits, features)`` with ``return_features=True``, where ``features [N, D]`` is the globally
average-pooled penultimate activation (D = 2048 ResNetV2, 1536 Inception-ResNet-V2,
``8 * width`` SmallCNN).  Minimum input sizes: 32 px ResNetV2, 75 px Inception-ResNet-V2.

Conventions: compute in ``dtype`` (e.g. bfloat16) with float32 parameters; BatchNorm uses batch
statistics and updates the ``'batch_stats'`` collection when ``train=True`` (call ``apply`` with
``mutable=['batch_stats']``), running averages otherwise; no dropout (Keras has none here).
Module names follow Keras layer names where Keras names them (``conv2_block1/1_conv`` is
``conv2_block1_1_conv``, ``predictions`` is the head); Keras's unnamed Inception-ResNet
conv-BN pairs get structural names (``block35_3/branch_2_1/{conv,bn}``), and their Keras order
is given by :func:`irv2_convbn_paths`.  Parameter counts with a 1000-class head equal Keras's
``count_params()`` (which includes the BN moving statistics).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ResNetV2", "ResNet50V2", "ResNet152V2", "InceptionResNetV2", "SmallCNN", "ConvBN",
           "make_head", "build_classifier", "preprocess", "CLASSIFIERS", "MIN_INPUT_SIZE",
           "irv2_convbn_paths"]

Dtype = Any
KERNEL_INIT = nn.initializers.glorot_uniform()   # Keras's default for Conv2D and Dense


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv(features: int, kernel, strides=1, padding: Any = "SAME", use_bias: bool = True, *,
          dtype: Dtype, precision: Any, name: str) -> nn.Conv:
    return nn.Conv(features, _pair(kernel), strides=_pair(strides), padding=padding, use_bias=use_bias,
                   dtype=dtype, param_dtype=jnp.float32, precision=precision, kernel_init=KERNEL_INIT,
                   name=name)


def _bn(train: bool, eps: float, *, use_scale: bool = True, momentum: float = 0.99, dtype: Dtype,
        name: str) -> nn.BatchNorm:
    # Keras: momentum 0.99, biased batch variance computed as mean((x - mean)^2).
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=eps, use_scale=use_scale,
                        dtype=dtype, param_dtype=jnp.float32, use_fast_variance=False, name=name)


def make_head(num_classes: int, dtype: Dtype = jnp.float32, precision: Any = None) -> nn.Dense:
    """The classification head (a dense layer named ``predictions``, as in Keras)."""
    return nn.Dense(num_classes, dtype=dtype, param_dtype=jnp.float32, precision=precision,
                    kernel_init=KERNEL_INIT, name="predictions")


class _Classifier(nn.Module, kw_only=True):
    """What every classifier shares: the input cast to ``dtype``, ``trunk``, then a global
    average pool (float32) and the ``predictions`` head.

    Subclasses give ``trunk(x, train)``: images [N, H, W, C] in ``dtype`` -> feature map
    [N, h, w, D]; its layers compute in ``dtype`` at ``precision`` (float32 parameters).
    Fields are keyword-only.
    """
    num_classes: int = 1000
    dtype: Dtype = jnp.float32
    precision: Any = None

    def trunk(self, x: jax.Array, train: bool) -> jax.Array:
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
        """logits [N, num_classes] float32, or (logits, features [N, D] float32)."""
        x = self.trunk(x.astype(self.dtype), train)
        feats = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        logits = make_head(self.num_classes, self.dtype, self.precision)(feats.astype(self.dtype))
        logits = logits.astype(jnp.float32)
        return (logits, feats) if return_features else logits


# ----------------------------------------------------------------------------------------------
# ResNet-V2 (pre-activation bottlenecks).

RESNET_EPS = 1.001e-5


class PreactBottleneck(nn.Module):
    """Keras's ``residual_block_v2``: BN-ReLU, then 1x1 -> 3x3(stride) -> 1x1 (x4 channels)."""
    filters: int
    stride: int = 1
    conv_shortcut: bool = False
    dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kw = dict(dtype=self.dtype, precision=self.precision)
        preact = nn.relu(_bn(train, RESNET_EPS, dtype=self.dtype, name="preact_bn")(x))
        if self.conv_shortcut:
            shortcut = _conv(4 * self.filters, 1, self.stride, "VALID", name="0_conv", **kw)(preact)
        else:   # MaxPooling2D(1, strides=s) on the block input == subsampling
            shortcut = x[:, ::self.stride, ::self.stride, :] if self.stride > 1 else x
        y = _conv(self.filters, 1, 1, "VALID", use_bias=False, name="1_conv", **kw)(preact)
        y = nn.relu(_bn(train, RESNET_EPS, dtype=self.dtype, name="1_bn")(y))
        y = _conv(self.filters, 3, self.stride, ((1, 1), (1, 1)), use_bias=False, name="2_conv", **kw)(y)
        y = nn.relu(_bn(train, RESNET_EPS, dtype=self.dtype, name="2_bn")(y))
        y = _conv(4 * self.filters, 1, 1, "VALID", name="3_conv", **kw)(y)
        return shortcut + y


class ResNetV2(_Classifier, kw_only=True):
    """Keras-style ResNet-V2; stacks are ``conv2``..``conv5`` with blocks ``conv{k}_block{i}``."""
    stage_sizes: Sequence[int]
    widths: Sequence[int] = (64, 128, 256, 512)

    def trunk(self, x: jax.Array, train: bool) -> jax.Array:
        kw = dict(dtype=self.dtype, precision=self.precision)
        x = _conv(64, 7, 2, ((3, 3), (3, 3)), name="conv1_conv", **kw)(x)
        # Keras zero-pads before the max-pool; the stem has no ReLU, so the zeros can win.
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        x = nn.max_pool(x, (3, 3), (2, 2), "VALID")
        n_stacks = len(self.stage_sizes)
        for s, (blocks, filters) in enumerate(zip(self.stage_sizes, self.widths)):
            if blocks < 2:
                raise ValueError(f"every ResNetV2 stack needs >= 2 blocks, got {self.stage_sizes}")
            for i in range(1, blocks + 1):
                last = i == blocks
                stride = 2 if (last and s < n_stacks - 1) else 1
                x = PreactBottleneck(filters, stride, conv_shortcut=(i == 1),
                                     name=f"conv{s + 2}_block{i}", **kw)(x, train)
        return nn.relu(_bn(train, RESNET_EPS, dtype=self.dtype, name="post_bn")(x))


def ResNet50V2(num_classes: int = 1000, **kw) -> ResNetV2:
    return ResNetV2(stage_sizes=(3, 4, 6, 3), num_classes=num_classes, **kw)


def ResNet152V2(num_classes: int = 1000, **kw) -> ResNetV2:
    return ResNetV2(stage_sizes=(3, 8, 36, 3), num_classes=num_classes, **kw)


# ----------------------------------------------------------------------------------------------
# Inception-ResNet-V2.

IRV2_EPS = 1e-3


class ConvBN(nn.Module):
    """Keras's ``conv2d_bn``: conv (no bias) -> BN (no gamma by default) -> optional ReLU."""
    features: int
    kernel: Any = 1
    strides: int = 1
    padding: str = "SAME"
    use_scale: bool = False
    epsilon: float = IRV2_EPS
    activation: bool = True
    momentum: float = 0.99
    dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = _conv(self.features, self.kernel, self.strides, self.padding, use_bias=False,
                  dtype=self.dtype, precision=self.precision, name="conv")(x)
        x = _bn(train, self.epsilon, use_scale=self.use_scale, momentum=self.momentum, dtype=self.dtype,
                name="bn")(x)
        return nn.relu(x) if self.activation else x


def _c(filters: int, kernel: Any, stride: int = 1, padding: str = "SAME"):
    return (filters, kernel, stride, padding)


# A branch is (name, pool, convs): pool None, 'avg' (3x3/1 'SAME' average pool before the convs,
# padding not counted) or 'max' (3x3/2 'VALID' max pool, no convs).  Branches and their convs
# are listed in the order Keras creates them, which is the order of its auto-named layers.
MIXED_5B = (("branch_0", None, (_c(96, 1),)),
            ("branch_1", None, (_c(48, 1), _c(64, 5))),
            ("branch_2", None, (_c(64, 1), _c(96, 3), _c(96, 3))),
            ("branch_pool", "avg", (_c(64, 1),)))
BLOCK35 = (("branch_0", None, (_c(32, 1),)),
           ("branch_1", None, (_c(32, 1), _c(32, 3))),
           ("branch_2", None, (_c(32, 1), _c(48, 3), _c(64, 3))))
MIXED_6A = (("branch_0", None, (_c(384, 3, 2, "VALID"),)),
            ("branch_1", None, (_c(256, 1), _c(256, 3), _c(384, 3, 2, "VALID"))),
            ("branch_pool", "max", ()))
BLOCK17 = (("branch_0", None, (_c(192, 1),)),
           ("branch_1", None, (_c(128, 1), _c(160, (1, 7)), _c(192, (7, 1)))))
MIXED_7A = (("branch_0", None, (_c(256, 1), _c(384, 3, 2, "VALID"))),
            ("branch_1", None, (_c(256, 1), _c(288, 3, 2, "VALID"))),
            ("branch_2", None, (_c(256, 1), _c(288, 3), _c(320, 3, 2, "VALID"))),
            ("branch_pool", "max", ()))
BLOCK8 = (("branch_0", None, (_c(192, 1),)),
          ("branch_1", None, (_c(192, 1), _c(224, (1, 3)), _c(256, (3, 1)))))
# Stem: (name, conv) or ('max_pool', None); names after the TF-slim Inception-ResNet-V2 scopes.
IRV2_STEM = (("conv2d_1a_3x3", _c(32, 3, 2, "VALID")), ("conv2d_2a_3x3", _c(32, 3, 1, "VALID")),
             ("conv2d_2b_3x3", _c(64, 3)), ("max_pool", None), ("conv2d_3b_1x1", _c(80, 1, 1, "VALID")),
             ("conv2d_4a_3x3", _c(192, 3, 1, "VALID")), ("max_pool", None))
# (block prefix, branches, repeats, residual scale); the very last block8 has scale 1, no ReLU.
IRV2_REPEATS = (("block35", BLOCK35, 10, 0.17), ("block17", BLOCK17, 20, 0.1), ("block8", BLOCK8, 10, 0.2))


def _branches(x: jax.Array, spec, train: bool, dtype: Dtype, precision: Any) -> jax.Array:
    """Run the branches of an Inception module (in the calling module's scope) and concatenate."""
    outs = []
    for name, pool, convs in spec:
        y = x
        if pool == "avg":
            y = nn.avg_pool(y, (3, 3), (1, 1), "SAME", count_include_pad=False)
        elif pool == "max":
            y = nn.max_pool(y, (3, 3), (2, 2), "VALID")
        for j, (f, k, s, p) in enumerate(convs):
            y = ConvBN(f, k, s, p, dtype=dtype, precision=precision, name=f"{name}_{j}")(y, train)
        outs.append(y)
    return jnp.concatenate(outs, axis=-1)


class InceptionModule(nn.Module):
    """A concatenation of branches (mixed_5b, mixed_6a, mixed_7a)."""
    spec: Any
    dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return _branches(x, self.spec, train, self.dtype, self.precision)


class InceptionResBlock(nn.Module):
    """``x + scale * conv1x1(concat(branches(x)))``, then ReLU unless ``activation=False``."""
    spec: Any
    scale: float
    activation: bool = True
    dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        mixed = _branches(x, self.spec, train, self.dtype, self.precision)
        up = _conv(x.shape[-1], 1, 1, "SAME", use_bias=True, dtype=self.dtype, precision=self.precision,
                   name="conv")(mixed)
        x = x + jnp.asarray(self.scale, self.dtype) * up
        return nn.relu(x) if self.activation else x


class InceptionResNetV2(_Classifier, kw_only=True):
    """Keras's Inception-ResNet-V2 (features: conv_7b output pooled, 1536-d)."""

    def trunk(self, x: jax.Array, train: bool) -> jax.Array:
        kw = dict(dtype=self.dtype, precision=self.precision)
        for name, conv in IRV2_STEM:
            if conv is None:
                x = nn.max_pool(x, (3, 3), (2, 2), "VALID")
            else:
                x = ConvBN(*conv, name=name, **kw)(x, train)
        x = InceptionModule(MIXED_5B, name="mixed_5b", **kw)(x, train)
        for (prefix, spec, repeats, scale), reduction in zip(
                IRV2_REPEATS, (("mixed_6a", MIXED_6A), ("mixed_7a", MIXED_7A), None)):
            for i in range(1, repeats + 1):
                final = prefix == "block8" and i == repeats
                x = InceptionResBlock(spec, 1.0 if final else scale, activation=not final,
                                      name=f"{prefix}_{i}", **kw)(x, train)
            if reduction is not None:
                x = InceptionModule(reduction[1], name=reduction[0], **kw)(x, train)
        return ConvBN(1536, 1, name="conv_7b", **kw)(x, train)


def irv2_convbn_paths() -> List[Tuple[str, ...]]:
    """Module paths of Keras's unnamed Inception-ResNet-V2 conv-BN pairs, in Keras creation order.

    Keras auto-names these ``conv2d[_k]`` / ``batch_normalization[_k]`` with ``k`` growing in
    creation order, so sorting a file's auto-named layers by ``k`` lines them up with this list.
    """
    def branch_paths(prefix: str, spec) -> List[Tuple[str, ...]]:
        return [(prefix, f"{name}_{j}") for name, _, convs in spec for j in range(len(convs))]

    paths = [(name,) for name, conv in IRV2_STEM if conv is not None]
    paths += branch_paths("mixed_5b", MIXED_5B)
    reductions = (("mixed_6a", MIXED_6A), ("mixed_7a", MIXED_7A), None)
    for (prefix, spec, repeats, _), reduction in zip(IRV2_REPEATS, reductions):
        for i in range(1, repeats + 1):
            paths += branch_paths(f"{prefix}_{i}", spec)
        if reduction is not None:
            paths += branch_paths(*reduction)
    return paths


# ----------------------------------------------------------------------------------------------
# A small CNN for CPU runs.

class SmallCNN(_Classifier, kw_only=True):
    """``stages`` x (``convs_per_stage`` x [3x3 conv - BN - ReLU]) with a 2x2 max-pool after
    every stage but the last; widths ``width * 2**s``; global average pool; dense head.
    With the default 4 stages a 16 px input reaches 2x2 before pooling.  BN momentum is 0.9
    (not Keras's 0.99) so that the running statistics settle within the ~100 steps of a short
    CPU run; with 0.99 they still remember their initial values and eval mode lags."""
    num_classes: int        # required here (the Keras models default to ImageNet's 1000)
    width: int = 32
    stages: int = 4
    convs_per_stage: int = 2
    bn_momentum: float = 0.9

    def trunk(self, x: jax.Array, train: bool) -> jax.Array:
        for s in range(self.stages):
            for j in range(self.convs_per_stage):
                x = ConvBN(self.width * 2 ** s, 3, use_scale=True, epsilon=1e-3, momentum=self.bn_momentum,
                           dtype=self.dtype, precision=self.precision,
                           name=f"stage{s + 1}_conv{j + 1}")(x, train)
            if s < self.stages - 1:
                x = nn.max_pool(x, (2, 2), (2, 2), "SAME")
        return x


# ----------------------------------------------------------------------------------------------
# Registry.

CLASSIFIERS: Dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet50v2": ResNet50V2,
    "resnet152v2": ResNet152V2,
    "inception_resnet_v2": InceptionResNetV2,
}
MIN_INPUT_SIZE = {"small_cnn": 16, "resnet50v2": 32, "resnet152v2": 32, "inception_resnet_v2": 75}


def _check_name(name: str) -> str:
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; known: {', '.join(CLASSIFIERS)}")
    return name


def build_classifier(name: str, num_classes: int, dtype: Dtype = jnp.float32, **kw) -> nn.Module:
    """The registry model ``name`` with a ``num_classes`` head; ``kw`` go to its constructor
    (e.g. ``width`` for small_cnn, ``precision`` for any)."""
    return CLASSIFIERS[_check_name(name)](num_classes=int(num_classes), dtype=dtype, **kw)


def preprocess(name: str, images_uint8) -> jax.Array:
    """uint8 images ``[N, H, W, C]`` in [0, 255] -> the float32 input model ``name`` expects.

    Keras's ``resnet_v2`` and ``inception_resnet_v2`` ``preprocess_input`` use mode 'tf',
    ``x / 127.5 - 1``; small_cnn uses the same [-1, 1] range.
    """
    _check_name(name)
    x = jnp.asarray(images_uint8)
    if x.ndim != 4:
        raise ValueError(f"expected images [N, H, W, C], got shape {x.shape}")
    return x.astype(jnp.float32) / 127.5 - 1.0
