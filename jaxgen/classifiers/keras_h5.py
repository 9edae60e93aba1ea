"""Load Keras weight files (.h5) into the Flax classifiers of :mod:`jaxgen.classifiers.models`.

What: ``load_keras_h5(path, model_name, num_classes, include_top=False)`` reads a Keras weights
file with h5py (no TensorFlow/Keras needed) and returns Flax ``{'params', 'batch_stats'}`` for
``build_classifier(model_name, num_classes)``.

Why: the downstream classifiers start from Keras's ImageNet weights
(``resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5`` and friends), and a model trained
in Keras should be usable here unchanged.

Layouts read (each layer becomes ``{layer name: [(role or None, array), ...]}``):

* Keras 3 ``model.save_weights('x.weights.h5')``: ``layers/<key>/vars/<0..n-1>``, where ``key``
  is a per-class counter (``conv2d_17``) and the layer's real name is the ``name`` attribute of
  ``vars`` (falls back to ``key`` if absent); weights are positional (conv/dense: kernel[, bias];
  BN: [gamma,] beta, moving_mean, moving_variance).  Nested models are walked recursively.
  A ``.keras`` archive is read through its ``model.weights.h5``.
* Legacy Keras 2 ``.h5`` (the official ImageNet files, ``save_weights('x.h5')``; also Keras 3's
  ``model.save('x.h5')``, which nests the same layout under ``model_weights``): root attribute
  ``layer_names``, one group per layer with attribute ``weight_names`` such as
  ``conv1_conv/kernel:0``, whose last component gives the role.

Mapping: Keras kernels are HWIO (conv) / [in, out] (dense) like Flax's, so arrays are copied
as they are; BN ``gamma, beta`` -> ``params .../scale, bias`` and ``moving_mean, moving_variance``
-> ``batch_stats .../mean, var``; Keras ``scale=False`` BNs (Inception-ResNet-V2) have no gamma.
ResNetV2 layer ``conv2_block1_1_conv`` is module ``conv2_block1/1_conv``; the named
Inception-ResNet layers are ``block35_1_conv -> block35_1/conv``, ``conv_7b(_bn) ->
conv_7b/{conv,bn}``, and its auto-named ``conv2d_k`` / ``batch_normalization_k`` layers are
sorted by ``k`` (Keras's creation order, whatever the offset) and paired with
:func:`models.irv2_convbn_paths`.  The head is ``predictions``; with ``include_top=False`` it is
ignored in the file and freshly initialised (``models.make_head``).  Any file layer left
unmatched, model layer missing, or shape disagreement raises :class:`KerasH5Error` listing them.

Verified (tests/test_classifier_models.py, Keras 3.15 / TF 2.21): Keras 3 ``.weights.h5`` for
ResNet50V2, ResNet152V2 and Inception-ResNet-V2 (eval logits and pooled features match Keras);
Keras 3's legacy ``model.save('x.h5')`` and a Keras-2-style file written by the test from the
same weights (root ``layer_names``, ``:0``-suffixed weight names, auto-names numbered from 1, as
in the official ImageNet files) for Inception-ResNet-V2, and a ``.keras`` archive for ResNet50V2
(all load to identical variables).  The official ImageNet downloads themselves could not be
fetched offline, so their layout is covered only through that Keras-2-style file.
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import h5py
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxgen.classifiers import models
from jaxgen.errors import UserError

__all__ = ["load_keras_h5", "read_keras_h5", "keras_layer_map", "KerasH5Error", "KERAS_MODELS"]

KERAS_MODELS = ("resnet50v2", "resnet152v2", "inception_resnet_v2")
_ROLES = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")
_AUTO = re.compile(r"^(conv2d|batch_normalization)(?:_(\d+))?$")
Layers = Dict[str, List[Tuple[Optional[str], np.ndarray]]]


class KerasH5Error(UserError, ValueError):
    """The file is not a Keras weights file, or does not fit the requested model."""


# ----------------------------------------------------------------------------------------------
# Reading.

def _decode(v) -> str:
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def _read_keras3(group: h5py.Group, out: Layers) -> None:
    for key in group:
        g = group[key]
        if not isinstance(g, h5py.Group):
            continue
        v = g.get("vars")
        if isinstance(v, h5py.Group) and len(v):
            name = _decode(v.attrs.get("name", key))
            idx = sorted((k for k in v if k.isdigit()), key=int)
            out[name] = [(None, np.asarray(v[k])) for k in idx]
        if isinstance(g.get("layers"), h5py.Group):   # a nested model
            _read_keras3(g["layers"], out)


def _read_legacy(root: h5py.Group, out: Layers) -> None:
    for lname in (_decode(n) for n in root.attrs["layer_names"]):
        g = root[lname]
        weights = []
        for w in (_decode(n) for n in g.attrs.get("weight_names", [])):
            role = w.rsplit("/", 1)[-1].split(":")[0]
            weights.append((role if role in _ROLES else None, np.asarray(g[w])))
        if weights:
            out[lname] = weights


def read_keras_h5(path: str) -> Tuple[str, Layers]:
    """(layout, ``{layer name: [(role or None, array), ...]}``) of a Keras weights file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Keras weights file {path!r} does not exist")
    src: Any = path
    if zipfile.is_zipfile(path):   # a .keras archive
        with zipfile.ZipFile(path) as z:
            if "model.weights.h5" not in z.namelist():
                raise KerasH5Error(f"{path}: a zip archive without model.weights.h5 is not a .keras file")
            src = io.BytesIO(z.read("model.weights.h5"))
    try:
        f = h5py.File(src, "r")
    except OSError as e:
        raise KerasH5Error(f"{path}: not an HDF5 file, so not a Keras .h5 weights file ({e})") from None
    out: Layers = {}
    with f:
        if "layer_names" in f.attrs:
            layout = "keras2_h5"
            _read_legacy(f, out)
        elif isinstance(f.get("model_weights"), h5py.Group) and "layer_names" in f["model_weights"].attrs:
            layout = "keras2_h5_model"
            _read_legacy(f["model_weights"], out)
        elif isinstance(f.get("layers"), h5py.Group):
            layout = "keras3_weights_h5"
            _read_keras3(f["layers"], out)
        else:
            raise KerasH5Error(
                f"{path}: no Keras weights found: expected a 'layers' group (Keras 3 .weights.h5) or a "
                f"'layer_names' attribute (legacy Keras .h5); top-level keys: {sorted(f.keys())[:10]}")
    if not out:
        raise KerasH5Error(f"{path}: Keras weights file ({layout}) holds no layer weights")
    return layout, out


# ----------------------------------------------------------------------------------------------
# Mapping Keras layers to module paths.

def _model_layers(variables) -> Dict[Tuple[str, ...], Dict[str, Any]]:
    """{module path: {'kind': conv|dense|bn, 'scale': bool, 'shapes': {leaf: shape}}}."""
    mods: Dict[Tuple[str, ...], Dict[str, Any]] = {}
    for col in ("params", "batch_stats"):
        for k, v in flatten_dict(variables.get(col, {})).items():
            mods.setdefault(k[:-1], {"shapes": {}})["shapes"][k[-1]] = tuple(v.shape)
    for m in mods.values():
        s = m["shapes"]
        m["kind"] = "bn" if "mean" in s else ("conv" if len(s["kernel"]) == 4 else "dense")
        m["scale"] = "scale" in s
    return mods


def keras_layer_map(model_name: str, module_paths, file_names) -> Tuple[Dict[str, Tuple[str, ...]],
                                                                        List[str]]:
    """({Keras layer name: module path} for the model's layers, descriptions of model layers the
    file cannot name).  ``file_names`` are needed only to order Inception-ResNet's auto-names."""
    mapping: Dict[str, Tuple[str, ...]] = {}
    unnamed: List[str] = []
    if model_name == "inception_resnet_v2":
        auto: Dict[str, List[Tuple[int, str]]] = {"conv2d": [], "batch_normalization": []}
        for n in file_names:
            m = _AUTO.match(n)
            if m:
                auto[m.group(1)].append((int(m.group(2) or 0), n))
        convs, bns = (sorted(auto[k]) for k in ("conv2d", "batch_normalization"))
        convbn = models.irv2_convbn_paths()
        for i, p in enumerate(convbn):
            for lst, leaf, kind in ((convs, "conv", "conv2d"), (bns, "bn", "batch_normalization")):
                if i < len(lst):
                    mapping[lst[i][1]] = p + (leaf,)
                else:
                    unnamed.append(f"<auto-named {kind} #{i + 1} = {'/'.join(p + (leaf,))}>")
        special = {("conv_7b", "conv"): "conv_7b", ("conv_7b", "bn"): "conv_7b_bn"}
        taken = set(convbn)
        for p in module_paths:
            if p in special:
                mapping[special[p]] = p
            elif p[:-1] not in taken:
                mapping["_".join(p)] = p
    else:
        for p in module_paths:
            mapping["_".join(p)] = p
    return mapping, unnamed


def _roles(kind: str, scale: bool, n: int) -> List[str]:
    if kind == "bn":
        return ["gamma", "beta", "moving_mean", "moving_variance"] if scale else \
            ["beta", "moving_mean", "moving_variance"]
    return ["kernel", "bias"][:n]


_TARGET = {"kernel": ("params", "kernel"), "bias": ("params", "bias"), "gamma": ("params", "scale"),
           "beta": ("params", "bias"), "moving_mean": ("batch_stats", "mean"),
           "moving_variance": ("batch_stats", "var")}


def _fmt(names, limit: int = 12, sep: str = ", ") -> str:
    names = list(names)
    more = f"{sep}... ({len(names) - limit} more)" if len(names) > limit else ""
    return sep.join(names[:limit]) + more


def load_keras_h5(path: str, model_name: str, num_classes: int, include_top: bool = False,
                  rng: Optional[jax.Array] = None) -> Dict[str, Dict]:
    """Flax variables ``{'params', 'batch_stats'}`` for ``build_classifier(model_name, num_classes)``
    from a Keras weights file.

    ``include_top=False``: every layer but ``predictions`` is loaded (the file's head, if any,
    is ignored) and the head is freshly initialised from ``rng`` (default key 0).
    ``include_top=True``: the file must hold a ``predictions`` layer with ``num_classes`` outputs.
    Raises :class:`KerasH5Error` on unmatched/missing layers or shape mismatches,
    ``ValueError`` for a model without a Keras counterpart.
    """
    if model_name not in KERAS_MODELS:
        raise ValueError(f"no Keras weights for model {model_name!r}; load_keras_h5 supports "
                         f"{', '.join(KERAS_MODELS)}")
    model = models.build_classifier(model_name, num_classes)
    size = models.MIN_INPUT_SIZE[model_name]
    shapes = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, size, size, 3)), train=False),
                            jax.random.key(0))
    layout, layers = read_keras_h5(path)
    mods = _model_layers(shapes)
    mapping, missing = keras_layer_map(model_name, list(mods), list(layers))
    head = ("predictions",)
    unmatched = [n for n in layers if n not in mapping and not (n == "predictions" and not include_top)]
    missing += [n for n, p in mapping.items() if n not in layers and (include_top or p != head)]
    if unmatched or missing:
        raise KerasH5Error(
            f"{path} ({layout}) does not fit {model_name}: {len(unmatched)} file layers unmatched "
            f"[{_fmt(unmatched)}]; {len(missing)} model layers missing from the file [{_fmt(missing)}]")
    flat: Dict[Tuple[str, ...], np.ndarray] = {}
    errors: List[str] = []
    for name, path_ in mapping.items():
        if path_ == head and not include_top:
            continue
        m, weights = mods[path_], layers[name]
        file_roles = [r for r, _ in weights]
        roles = file_roles if all(file_roles) else _roles(m["kind"], m["scale"], len(weights))
        want = {_TARGET[r] for r in _roles(m["kind"], m["scale"], 2 if "bias" in m["shapes"] else 1)}
        if len(roles) != len(weights) or {_TARGET[r] for r in roles} != want:
            errors.append(f"{name}: weights {file_roles if all(file_roles) else len(weights)} do not fit "
                          f"{m['kind']} {'/'.join(path_)} with {sorted(m['shapes'])}")
            continue
        for role, (_, arr) in zip(roles, weights):
            col, leaf = _TARGET[role]
            if tuple(arr.shape) != m["shapes"][leaf]:
                errors.append(f"{name}/{role}: shape {tuple(arr.shape)} != {m['shapes'][leaf]} "
                              f"of {'/'.join(path_)}/{leaf}")
            flat[(col,) + path_ + (leaf,)] = np.asarray(arr, np.float32)
    if errors:
        raise KerasH5Error(f"{path} ({layout}) does not fit {model_name} with {num_classes} classes: "
                           + _fmt(errors, sep="; "))
    if not include_top:
        dim = mods[head]["shapes"]["kernel"][0]
        fresh = models.make_head(num_classes).init(jax.random.key(0) if rng is None else rng,
                                                   jnp.zeros((1, dim)))["params"]
        for leaf, v in fresh.items():
            flat[("params",) + head + (leaf,)] = v
    out = unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})
    return {"params": out["params"], "batch_stats": out["batch_stats"]}
