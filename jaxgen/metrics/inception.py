"""The FID Inception-v3 network in Flax, its weight loader, and a batched feature extractor.

What: a port of the Inception-v3 graph that pytorch-fid 0.3.0 uses for FID (the TensorFlow
``inception-2015-12-05`` graph as ported to PyTorch in ``pt_inception-2015-12-05-6726825d.pth``),
together with the input handling of pytorch-fid's ``InceptionV3([3], resize_input=True,
normalize_input=True)`` wrapper.

Why: FID numbers are only comparable with published ones when the features come from
exactly this network and input pipeline.  It differs from torchvision's Inception-v3 in four
blocks: the pool branches of Mixed_5b/5c/5d (InceptionA), Mixed_6b-6e (InceptionC) and
Mixed_7b (InceptionE) average over the valid pixels only (TF's padding semantics), and
Mixed_7c's pool branch is a 3x3 *max* pool.  Its classifier has 1008 outputs.

Shapes (NHWC throughout; torch's NCHW outputs are ours transposed):

* input ``[N, H, W, 3]`` float in [0, 1];  resized to 299x299 with PyTorch's
  ``F.interpolate(mode='bilinear', align_corners=False)`` (:func:`resize_bilinear_torch`,
  no anti-aliasing, unlike ``jax.image.resize``), then mapped to [-1, 1];
* stem 299 -> 149 -> 147 -> 73 (max-pool) -> 71 -> 35 (max-pool), then Mixed_5b-5d ``[35,35,256/288]``,
  Mixed_6a-6e ``[17,17,768]``, Mixed_7a-7c ``[8,8,1280/2048]``;
* ``pool3 [N, 2048]`` = spatial mean of Mixed_7c (the FID features) and ``logits [N, 1008]``.

Parameters are named after the PyTorch state-dict keys: ``Mixed_6b.branch7x7_2.conv.weight``
is ``params['Mixed_6b']['branch7x7_2']['conv']['kernel']`` (OIHW -> HWIO), ``*.bn.weight/bias``
are ``scale/bias`` and ``*.bn.running_mean/var`` are ``batch_stats[...]['bn']['mean'/'var']``.
BatchNorm always runs in inference mode (eps 1e-3).  The stage outputs are sown into the
``'intermediates'`` collection as one dict keyed by the torch module names (``STAGES``).

Convolutions default to ``precision='highest'`` so that GPUs do not silently drop to TF32,
which would move the features by far more than FID's tolerance.
"""
from __future__ import annotations

import functools
import os
import zipfile
from typing import Any, Dict, Mapping, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxgen.utils.safe_pickle import load_torch_file
from jaxgen.errors import UserError

__all__ = ["FIDInceptionV3", "InceptionFeatures", "InceptionWeightsError", "load_fid_inception_weights",
           "variables_from_state_dict", "resize_bilinear_torch", "STAGES", "FID_WEIGHTS_URL"]

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   + FID_WEIGHTS_FILENAME)
STAGES = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
          "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
          "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")
INPUT_SIZE = 299
BN_EPS = 1e-3


# ----------------------------------------------------------------------------------------------
# Resizing with torch's bilinear semantics.

def _linear_taps(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of 1-D linear interpolation, align_corners=False.

    Follows PyTorch's CPU kernel for a float32 tensor: the source coordinate of output pixel
    d is ``scale * (d + 0.5) - 0.5`` with ``scale = float32(in / out)``, evaluated as one fused
    multiply-add (a single rounding to float32, emulated here in float64, where the product is
    exact), and clamped below at 0; its two taps are ``floor`` and ``floor + 1`` (clamped to the
    last pixel) with weights ``1 - frac`` and ``frac``.
    """
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    src = (scale * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    w0 = (np.float32(1.0) - w1).astype(np.float32)
    return i0, i1, w0, w1


def resize_bilinear_torch(x: jax.Array, size: Union[int, Sequence[int]]) -> jax.Array:
    """``F.interpolate(x, size, mode='bilinear', align_corners=False)`` for NHWC ``x``.

    Separable: interpolates along W, then H (the order of PyTorch's CPU kernel), as a pair
    of static gathers and a weighted sum, so the result is exact float32 arithmetic on any
    backend (a matmul formulation would be subject to TF32 on GPUs).  No anti-aliasing on
    downscaling, matching PyTorch (``antialias=False``).  Returns float32 ``[N, h, w, C]``.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else tuple(size)
    x = jnp.asarray(x, jnp.float32)
    _, in_h, in_w, _ = x.shape
    if (in_h, in_w) == (out_h, out_w):
        return x  # the interpolation weights are exactly (1, 0): an identity
    i0, i1, w0, w1 = _linear_taps(in_w, out_w)
    x = (jnp.take(x, i0, axis=2) * w0[None, None, :, None]
         + jnp.take(x, i1, axis=2) * w1[None, None, :, None])
    i0, i1, w0, w1 = _linear_taps(in_h, out_h)
    return (jnp.take(x, i0, axis=1) * w0[None, :, None, None]
            + jnp.take(x, i1, axis=1) * w1[None, :, None, None])


# ----------------------------------------------------------------------------------------------
# The network.

class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (inference, eps 1e-3) -> ReLU; torch ``BasicConv2d``."""

    features: int
    kernel: Tuple[int, int] = (1, 1)
    stride: int = 1
    padding: Tuple[int, int] = (0, 0)
    precision: Any = "highest"

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride),
                    padding=((ph, ph), (pw, pw)), use_bias=False, precision=self.precision,
                    name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x)


def _avg_pool_valid(x):
    """3x3 stride-1 average pool, padding 1, dividing by the number of in-image pixels."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_s2(x):
    return nn.max_pool(x, (3, 3), (2, 2), "VALID")


class _Block(nn.Module, kw_only=True):
    """An Inception block: ``conv`` makes its BasicConv2d layers, all at its ``precision``.

    Keyword-only fields (the blocks add their own, without defaults, after ``precision``).
    """

    precision: Any = "highest"

    def conv(self, features: int, kernel: Tuple[int, int] = (1, 1), stride: int = 1,
             padding: Tuple[int, int] = (0, 0), *, name: str) -> BasicConv2d:
        return BasicConv2d(features, kernel, stride, padding, self.precision, name=name)


class InceptionA(_Block, kw_only=True):
    """35x35 block (Mixed_5b/5c/5d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool(valid)-1x1."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        conv = self.conv
        b1 = conv(64, name="branch1x1")(x)
        b5 = conv(48, name="branch5x5_1")(x)
        b5 = conv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = conv(64, name="branch3x3dbl_1")(x)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = conv(self.pool_features, name="branch_pool")(_avg_pool_valid(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block, kw_only=True):
    """Grid reduction 35 -> 17 (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    @nn.compact
    def __call__(self, x):
        conv = self.conv
        b3 = conv(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = conv(64, name="branch3x3dbl_1")(x)
        bd = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = conv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_s2(x)], axis=-1)


class InceptionC(_Block, kw_only=True):
    """17x17 block (Mixed_6b-6e) with factorised 7x7 convs and an avgpool(valid) branch."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        conv = self.conv
        c7 = self.channels_7x7
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        b1 = conv(192, name="branch1x1")(x)
        b7 = conv(c7, name="branch7x7_1")(x)
        b7 = conv(c7, **row, name="branch7x7_2")(b7)
        b7 = conv(192, **col, name="branch7x7_3")(b7)
        bd = conv(c7, name="branch7x7dbl_1")(x)
        bd = conv(c7, **col, name="branch7x7dbl_2")(bd)
        bd = conv(c7, **row, name="branch7x7dbl_3")(bd)
        bd = conv(c7, **col, name="branch7x7dbl_4")(bd)
        bd = conv(192, **row, name="branch7x7dbl_5")(bd)
        bp = conv(192, name="branch_pool")(_avg_pool_valid(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block, kw_only=True):
    """Grid reduction 17 -> 8 (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    @nn.compact
    def __call__(self, x):
        conv = self.conv
        b3 = conv(192, name="branch3x3_1")(x)
        b3 = conv(320, (3, 3), stride=2, name="branch3x3_2")(b3)
        b7 = conv(192, name="branch7x7x3_1")(x)
        b7 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = conv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_s2(x)], axis=-1)


class InceptionE(_Block, kw_only=True):
    """8x8 block (Mixed_7b: avgpool(valid) branch, Mixed_7c: 3x3 max-pool branch)."""

    pool: str = "avg"  # 'avg' (FIDInceptionE_1) or 'max' (FIDInceptionE_2)

    @nn.compact
    def __call__(self, x):
        conv = self.conv
        row, col = dict(kernel=(1, 3), padding=(0, 1)), dict(kernel=(3, 1), padding=(1, 0))
        b1 = conv(320, name="branch1x1")(x)
        b3 = conv(384, name="branch3x3_1")(x)
        b3 = [conv(384, **row, name="branch3x3_2a")(b3), conv(384, **col, name="branch3x3_2b")(b3)]
        bd = conv(448, name="branch3x3dbl_1")(x)
        bd = conv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = [conv(384, **row, name="branch3x3dbl_3a")(bd), conv(384, **col, name="branch3x3dbl_3b")(bd)]
        if self.pool == "max":
            pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))  # pads with -inf, like torch
        else:
            pooled = _avg_pool_valid(x)
        bp = conv(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, *b3, *bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's FID Inception-v3 with its input handling; returns pool3 and logits.

    ``__call__(x)``: ``x`` is float ``[N, H, W, 3]`` in [0, 1] (or already in [-1, 1] at
    299 px when ``resize_input=normalize_input=False``).  Returns
    ``{'pool3': [N, 2048], 'logits': [N, num_classes]}`` in float32.  Apply with
    ``mutable=['intermediates']`` to also get ``{stage: output}`` for every name in ``STAGES``
    as ``state['intermediates']['stages'][0]``.
    """

    resize_input: bool = True
    normalize_input: bool = True
    num_classes: int = 1008
    precision: Any = "highest"
    input_size: int = INPUT_SIZE  # 299 for FID; smaller (>= 75) only for non-standard feature nets

    @nn.compact
    def __call__(self, x) -> Dict[str, jax.Array]:
        x = jnp.asarray(x, jnp.float32)
        if self.resize_input:
            x = resize_bilinear_torch(x, (self.input_size, self.input_size))
        if self.normalize_input:
            x = 2 * x - 1
        p = self.precision
        conv = functools.partial(BasicConv2d, precision=p)
        stages = [
            conv(32, (3, 3), stride=2, name="Conv2d_1a_3x3"),
            conv(32, (3, 3), name="Conv2d_2a_3x3"),
            conv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3"),
            conv(80, name="Conv2d_3b_1x1"),
            conv(192, (3, 3), name="Conv2d_4a_3x3"),
            InceptionA(pool_features=32, precision=p, name="Mixed_5b"),
            InceptionA(pool_features=64, precision=p, name="Mixed_5c"),
            InceptionA(pool_features=64, precision=p, name="Mixed_5d"),
            InceptionB(precision=p, name="Mixed_6a"),
            InceptionC(channels_7x7=128, precision=p, name="Mixed_6b"),
            InceptionC(channels_7x7=160, precision=p, name="Mixed_6c"),
            InceptionC(channels_7x7=160, precision=p, name="Mixed_6d"),
            InceptionC(channels_7x7=192, precision=p, name="Mixed_6e"),
            InceptionD(precision=p, name="Mixed_7a"),
            InceptionE(pool="avg", precision=p, name="Mixed_7b"),
            InceptionE(pool="max", precision=p, name="Mixed_7c"),
        ]
        outputs = {}
        for stage in stages:
            x = outputs[stage.name] = stage(x)
            if stage.name in ("Conv2d_2b_3x3", "Conv2d_4a_3x3"):
                x = _max_pool_s2(x)  # the wrapper's max-pools after the two stem groups
        self.sow("intermediates", "stages", outputs)
        pool3 = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_classes, precision=p, name="fc")(pool3)
        return {"pool3": pool3, "logits": logits}


# ----------------------------------------------------------------------------------------------
# Weights: torch state dict <-> Flax variables.

class InceptionWeightsError(UserError, ValueError):
    """A weights file whose keys or shapes are not those of the FID Inception network."""


_LEAF_TO_TORCH = {("params", "kernel"): "weight", ("params", "scale"): "weight", ("params", "bias"): "bias",
                  ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


@functools.lru_cache(maxsize=None)
def _template(num_classes: int = 1008) -> Dict[str, Tuple[Tuple[str, ...], Tuple[int, ...]]]:
    """``{torch_key: (flax_path, flax_shape)}`` for every array of the network."""
    shapes = jax.eval_shape(FIDInceptionV3(num_classes=num_classes).init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
    out = {}
    for path, leaf in flatten_dict(shapes).items():
        torch_key = ".".join(path[1:-1] + (_LEAF_TO_TORCH[(path[0], path[-1])],))
        out[torch_key] = (path, tuple(leaf.shape))
    return out


def _to_torch_layout(a: np.ndarray) -> np.ndarray:
    return a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T if a.ndim == 2 else a


def _from_torch_layout(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 3, 1, 0) if a.ndim == 4 else a.T if a.ndim == 2 else a


def _listing(title: str, items: Sequence[str], limit: int = 25) -> str:
    shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
    return f"{len(items)} {title}: {shown}"


def variables_from_state_dict(state_dict: Mapping[str, Any], source: str = "state dict") -> Dict[str, Any]:
    """Convert pytorch-fid FID Inception state-dict arrays to Flax ``{'params', 'batch_stats'}``.

    ``*.bn.num_batches_tracked`` entries may be present or absent (unused in inference).
    Raises :class:`InceptionWeightsError` listing every missing, unexpected or mis-shaped key.
    """
    template = _template()
    bn_prefixes = {k.rsplit(".", 1)[0] for k in template if k.endswith(".running_mean")}
    keys = [str(k) for k in state_dict]
    ignorable = {k for k in keys if k.endswith(".num_batches_tracked") and k.rsplit(".", 1)[0] in bn_prefixes}
    missing = sorted(set(template) - set(keys))
    unexpected = sorted(set(keys) - set(template) - ignorable)
    bad_shape = []
    for k in sorted(set(template) & set(keys)):
        want = tuple(_to_torch_layout(np.empty(template[k][1], np.uint8)).shape)
        got = tuple(np.shape(state_dict[k]))
        if got != want:
            bad_shape.append(f"{k} {list(got)} (expected {list(want)})")
    if missing or unexpected or bad_shape:
        parts = [_listing(t, v) for t, v in (("missing keys", missing), ("unexpected keys", unexpected),
                                             ("keys with the wrong shape", bad_shape)) if v]
        raise InceptionWeightsError(
            f"{source} is not a pytorch-fid FID Inception state dict ({FID_WEIGHTS_FILENAME} layout): "
            + "; ".join(parts))
    flat = {path: jnp.asarray(_from_torch_layout(np.asarray(state_dict[k], np.float32)))
            for k, (path, _) in template.items()}
    return unflatten_dict(flat)


def _missing_file_message(path: str) -> str:
    return (f"FID Inception weights not found at {path!r}. Download {FID_WEIGHTS_FILENAME} "
            f"(pytorch-fid's converted TF inception-2015-12-05 weights) from {FID_WEIGHTS_URL} "
            "and pass its path with --inception_weights=/path/to/" + FID_WEIGHTS_FILENAME
            + " (config field metrics.inception_weights, e.g. "
            "--config.metrics.inception_weights=/path/to/" + FID_WEIGHTS_FILENAME + ").")


def load_fid_inception_weights(path: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """Load FID Inception weights from a ``.pth`` (``torch.save`` zip or legacy) or ``.npz``.

    ``.pth`` files go through the restricted unpickler
    (:func:`jaxgen.utils.safe_pickle.load_torch_file`), which never runs pickled code; a
    dict holding the state dict under ``'state_dict'`` is also accepted.  ``.npz`` files must
    use the same keys.  Returns Flax variables for :class:`FIDInceptionV3`.
    Raises FileNotFoundError (saying where to get the file), InceptionWeightsError for wrong
    keys/shapes, and safe_pickle's errors for unreadable or unsafe files.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(_missing_file_message(path))
    is_npz = False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        is_npz = not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names)
    if is_npz:
        with np.load(path, allow_pickle=False) as npz:
            state = {k: npz[k] for k in npz.files}
    else:
        state = load_torch_file(path)
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise InceptionWeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    return variables_from_state_dict(state, source=path)


# ----------------------------------------------------------------------------------------------
# Batched, jitted feature extraction.

class InceptionFeatures:
    """Jitted FID feature extractor: ``feats(images) -> {'pool3': [N,2048], 'logits': [N,1008]}``.

    ``images``: uint8 ``[N, H, W, 3]`` in 0..255, or float in [0, 1] (numpy or jax); ``C == 1``
    (grayscale) is repeated to RGB, as pytorch-fid's ``PIL.convert('RGB')`` does.  Any H, W:
    images are resized to 299 inside the jitted function (one compilation per input
    shape/dtype).  Runs in batches of ``batch_size``; the last batch is zero-padded to the
    same shape and the padding rows are dropped.  Results are float32 numpy arrays.
    ``variables`` may also be a path, passed to :func:`load_fid_inception_weights`.
    """

    def __init__(self, variables: Union[Mapping[str, Any], str, "os.PathLike[str]"], batch_size: int = 64,
                 precision: Any = "highest", input_size: int = INPUT_SIZE):
        if isinstance(variables, (str, os.PathLike)):
            variables = load_fid_inception_weights(variables)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.model = FIDInceptionV3(precision=precision, input_size=input_size)
        self.variables = jax.device_put(dict(variables))
        self._run = jax.jit(self._forward)

    def _forward(self, variables, batch):
        """float32 [B, H, W, 3] in [0, 1] -> {'pool3', 'logits'}."""
        return self.model.apply(variables, batch)

    @staticmethod
    def _prepare(chunk, xp):
        """uint8 or float [B, H, W, 1|3] -> float32 RGB in [0, 1], before the jitted network: so
        uint8, float and grayscale inputs of one size share one compiled program (and uint8
        gives exactly what its float / 255 gives)."""
        x = chunk.astype(xp.float32)
        if chunk.dtype == np.uint8:
            x = x / xp.float32(255.0)  # torchvision ToTensor: float(x) / 255
        return xp.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x

    def __call__(self, images) -> Dict[str, np.ndarray]:
        xp = jnp if isinstance(images, jax.Array) else np
        images = images if xp is jnp else np.asarray(images)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"expected images [N, H, W, 3] or [N, H, W, 1], got shape {images.shape}")
        if not (images.dtype == np.uint8 or jnp.issubdtype(images.dtype, jnp.floating)):
            raise ValueError(f"expected uint8 (0..255) or float ([0, 1]) images, got {images.dtype}")
        n, bs = images.shape[0], self.batch_size
        if n == 0:
            return {"pool3": np.zeros((0, 2048), np.float32), "logits": np.zeros((0, 1008), np.float32)}
        done, pending = [], None
        for start in range(0, n, bs):
            chunk = images[start:start + bs]
            if chunk.shape[0] < bs:
                pad = [(0, bs - chunk.shape[0])] + [(0, 0)] * 3
                chunk = xp.pad(chunk, pad)
            out = self._run(self.variables, self._prepare(chunk, xp))  # dispatched asynchronously
            if pending is not None:
                done.append(jax.device_get(pending))  # fetch the previous batch meanwhile
            pending = out
        done.append(jax.device_get(pending))
        return {k: np.concatenate([d[k] for d in done])[:n].astype(np.float32) for k in ("pool3", "logits")}
