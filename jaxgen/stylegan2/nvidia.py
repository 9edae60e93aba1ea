"""NVIDIA StyleGAN2-ADA state dicts <-> jaxgen Flax variables.

A state dict is a flat mapping from NVIDIA's dotted keys (e.g.
`synthesis.b8.conv0.affine.weight`) to numpy arrays, as stored in
`G.state_dict()`/`D.state_dict()` (and in the `shared/fixtures/*_G.npz`
files). The jaxgen modules use the same names, so converting means:

  * dense weights [out, in] -> [in, out];
  * conv weights OIHW -> HWIO;
  * `synthesis.b4.const` [C, 4, 4] -> [4, 4, C];
  * `mapping.w_avg` and `*.noise_const` go to the `buffers` collection;
  * `*.resample_filter` buffers are dropped (jaxgen rebuilds them from the
    config; a non-default filter is rejected rather than silently changed).

The converted tree is checked against the tree the jaxgen model itself
initialises, so a wrong config (resolution, channels, mapping layers) fails
with the list of mismatching keys and shapes instead of producing garbage.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxgen.stylegan2.discriminator import Discriminator
from jaxgen.stylegan2.generator import Generator
from jaxgen.stylegan2.resample import setup_filter
from jaxgen.errors import UserError

StateDict = Mapping[str, np.ndarray]
Variables = Dict[str, Any]


class ConversionError(UserError, ValueError):
    """The weights do not fit the model built from the given config."""


def _required(init_kwargs: Any, keys: Sequence[str], what: str) -> Dict[str, int]:
    """{key: int} of `keys` in NVIDIA's init kwargs of network `what`; ConversionError when the
    kwargs are missing or lack one (e.g. a pickle of another network, or one saved without
    torch_utils.persistence), so a foreign pickle fails in one line instead of a KeyError."""
    if not isinstance(init_kwargs, Mapping):
        init_kwargs = {}
    missing = [k for k in keys if not isinstance(init_kwargs.get(k), (int, np.integer))
               or isinstance(init_kwargs.get(k), bool)]
    if missing:
        got = ", ".join(sorted(map(str, init_kwargs))[:8]) or "none"
        raise ConversionError(
            f"not a StyleGAN2-ADA snapshot: the {what} network's init kwargs lack {', '.join(missing)} "
            f"(it has: {got}); give a network-snapshot-*.pkl written by NVIDIA's stylegan2-ada-pytorch "
            "train.py, or a jaxgen run")
    return {k: int(init_kwargs[k]) for k in keys}


def generator_kwargs(init_kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """jaxgen `Generator` arguments from NVIDIA's Generator init kwargs (e.g. a snapshot's G);
    ConversionError when they are not a StyleGAN2-ADA Generator's."""
    out = _required(init_kwargs, ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"), "G")
    m = dict(init_kwargs.get("mapping_kwargs") or {})
    s = dict(init_kwargs.get("synthesis_kwargs") or {})
    _take(out, m, "num_layers", "mapping_layers")
    _take(out, m, "lr_multiplier", "mapping_lr_multiplier")
    for k in ("w_avg_beta", "embed_features", "layer_features"):
        _take(out, m, k, k)
    for k in ("channel_base", "channel_max", "architecture", "conv_clamp", "resample_filter"):
        _take(out, s, k, k)
    if s.get("num_fp16_res"):
        out["num_lowp_res"] = int(s["num_fp16_res"])  # with dtype left float32 it changes nothing
    _check_activation(m, s)
    return out


def discriminator_kwargs(init_kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """jaxgen `Discriminator` arguments from NVIDIA's Discriminator init kwargs; ConversionError
    when they are not a StyleGAN2-ADA Discriminator's."""
    out = _required(init_kwargs, ("c_dim", "img_resolution", "img_channels"), "D")
    for k in ("architecture", "channel_base", "channel_max", "conv_clamp", "cmap_dim"):
        _take(out, init_kwargs, k, k)
    b = dict(init_kwargs.get("block_kwargs") or {})
    m = dict(init_kwargs.get("mapping_kwargs") or {})
    e = dict(init_kwargs.get("epilogue_kwargs") or {})
    _take(out, b, "resample_filter", "resample_filter")
    _take(out, m, "num_layers", "mapping_layers")
    _take(out, m, "lr_multiplier", "mapping_lr_multiplier")
    _take(out, e, "mbstd_group_size", "mbstd_group_size")
    _take(out, e, "mbstd_num_channels", "mbstd_num_channels")
    _check_activation(b, e)
    return out


def _take(out: Dict[str, Any], src: Mapping[str, Any], key: str, name: str) -> None:
    if key in src and src[key] is not None:
        v = src[key]
        out[name] = tuple(v) if isinstance(v, list) else v
    elif key in src and name in ("conv_clamp", "cmap_dim", "embed_features", "layer_features",
                                 "w_avg_beta", "mbstd_group_size"):
        out[name] = None


def _check_activation(*kwargs: Mapping[str, Any]) -> None:
    for kw in kwargs:
        act = kw.get("activation", "lrelu")
        if act != "lrelu":
            raise ConversionError(f"activation {act!r} is not supported by the converter (only 'lrelu')")


# (leaf name, ndim) -> axis permutation from NVIDIA's layout to jaxgen's.
_LAYOUTS = {("weight", 2): (1, 0),           # [out, in] -> [in, out]
            ("weight", 4): (2, 3, 1, 0),     # OIHW -> HWIO
            ("const", 3): (1, 2, 0)}         # [C, H, W] -> [H, W, C]


def _permute(key: str, v: np.ndarray, inverse: bool = False) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    perm = _LAYOUTS.get((key.rsplit(".", 1)[-1], v.ndim))
    if perm is None:
        return v
    return np.ascontiguousarray(v.transpose(np.argsort(perm) if inverse else perm))


def _collection(key: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    return "buffers" if leaf in ("w_avg", "noise_const") else "params"


def state_dict_to_variables(state_dict: StateDict, reference: Variables) -> Variables:
    """Convert an NVIDIA state dict into Flax variables shaped like `reference`.

    `reference` is the variables dict of the jaxgen model (e.g. from
    `model.init` or `jax.eval_shape(model.init, ...)`). Raises ConversionError
    naming every missing, unexpected or mis-shaped key.
    """
    expected = flatten_dict(dict(reference))
    flat = {}
    problems = []
    seen = set()
    default_f = setup_filter((1, 3, 3, 1))
    for key, value in state_dict.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "resample_filter":
            if np.asarray(value).shape == default_f.shape and np.allclose(value, default_f, atol=1e-7):
                continue
            problems.append(f"{key}: non-default resample filter is not supported by this converter")
            continue
        path = (_collection(key),) + tuple(key.split("."))
        arr = _permute(key, value)
        if path not in expected:
            problems.append(f"unexpected key {key} {tuple(np.shape(value))}")
            continue
        want = tuple(expected[path].shape)
        if tuple(arr.shape) != want:
            problems.append(f"{key}: shape {tuple(np.shape(value))} converts to {arr.shape}, "
                            f"but the model built from the config needs {want}")
            continue
        flat[path] = arr
        seen.add(path)
    for path in sorted(set(expected) - seen):
        problems.append(f"missing key {'.'.join(path[1:])} ({path[0]}) {tuple(expected[path].shape)}")
    if problems:
        raise ConversionError("weights do not match the model config:\n  " + "\n  ".join(problems[:40])
                              + (f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""))
    return unflatten_dict(flat)


def variables_to_state_dict(variables: Variables) -> Dict[str, np.ndarray]:
    """Inverse of `state_dict_to_variables` (without the resample filters)."""
    out = {}
    for col in ("params", "buffers"):
        for path, v in flatten_dict(dict(variables.get(col, {}))).items():
            key = ".".join(path)
            out[key] = _permute(key, np.asarray(v), inverse=True)
    return out


def build_generator(init_kwargs: Mapping[str, Any], **overrides: Any) -> Generator:
    """A jaxgen Generator configured as NVIDIA's with these init kwargs."""
    return Generator(**{**generator_kwargs(init_kwargs), **overrides})


def build_discriminator(init_kwargs: Mapping[str, Any], **overrides: Any) -> Discriminator:
    """A jaxgen Discriminator configured as NVIDIA's with these init kwargs."""
    return Discriminator(**{**discriminator_kwargs(init_kwargs), **overrides})


def reference_variables(model: Any) -> Variables:
    """Abstract (shape-only) variables of a jaxgen G or D, without running it."""
    n = 4
    if isinstance(model, Generator):
        z = np.zeros([n, model.z_dim], np.float32)
        c = np.zeros([n, model.c_dim], np.float32)
        fn = lambda k: model.init({"params": k, "noise": k}, z, c)  # noqa: E731
    else:
        img = np.zeros([n, model.img_resolution, model.img_resolution, model.img_channels], np.float32)
        c = np.zeros([n, model.c_dim], np.float32)
        fn = lambda k: model.init({"params": k}, img, c)  # noqa: E731
    return jax.eval_shape(fn, jax.random.key(0))


def generator_from_state_dict(state_dict: StateDict, init_kwargs: Mapping[str, Any], **overrides: Any):
    """(Generator, variables) from an NVIDIA G state dict and its init kwargs."""
    g = build_generator(init_kwargs, **overrides)
    return g, state_dict_to_variables(state_dict, reference_variables(g))


def discriminator_from_state_dict(state_dict: StateDict, init_kwargs: Mapping[str, Any], **overrides: Any):
    """(Discriminator, variables) from an NVIDIA D state dict and its init kwargs."""
    d = build_discriminator(init_kwargs, **overrides)
    return d, state_dict_to_variables(state_dict, reference_variables(d))
