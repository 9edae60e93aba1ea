"""NVIDIA's TensorFlow-era StyleGAN2 / StyleGAN2-ADA networks -> NVIDIA PyTorch state dicts -> jaxgen.

A TF pickle (e.g. `stylegan2-ffhq-config-f.pkl`, read by
`jaxgen.utils.safe_pickle.load_tf_network_pkl`) holds `(G, D, Gs)` networks, each
with constructor `static_kwargs` and variables named by TF scope. This module
turns each into what NVIDIA's stylegan2-ada-pytorch `legacy.py` would build:
its init kwargs and its `state_dict()` (without the `resample_filter` buffers),
so `jaxgen.stylegan2.nvidia` finishes the conversion exactly as for a PyTorch
snapshot. The rules, from TF to PyTorch:

  G  `dlatent_avg` -> `mapping.w_avg`; `mapping/Dense{i}` -> `mapping.fc{i}`;
     `mapping/LabelEmbed` -> `mapping.embed`; `synthesis/4x4/Const/const`
     [1, C, 4, 4] -> `synthesis.b4.const` [C, 4, 4]; `synthesis/4x4/Conv` ->
     `b4.conv1`; `{r}x{r}/Conv0_up`, `Conv1`, `ToRGB`, `Skip` -> `b{r}.conv0`,
     `conv1`, `torgb`, `skip`; `synthesis/noise{i}` [1, 1, r, r] -> the noise_const
     of the i-th conv layer (4x4 conv1, then conv0/conv1 of each resolution).
     Per layer `mod_weight` -> `affine.weight`, `mod_bias` -> `affine.bias` + 1
     (TF adds the 1 at run time), `noise_strength` and `bias` as they are.
  D  `{r}x{r}/FromRGB`, `Conv0`, `Conv1_down`, `Skip` -> `b{r}.fromrgb`, `conv0`,
     `conv1`, `skip`; `4x4/Conv`, `4x4/Dense0`, `Output` -> `b4.conv`, `b4.fc`,
     `b4.out`; `LabelEmbed`, `Mapping{i}` -> `mapping.embed`, `mapping.fc{i}`.
  Layouts: dense [in, out] -> [out, in]; conv HWIO -> OIHW, where G's upsampling
  convs (`Conv0_up`, `Skip`) are also flipped in H and W (TF runs them as
  transposed convolutions).

The scalar `lod` (progressive-growing schedule, unused by StyleGAN2) is skipped.
Any other variable without a counterpart, an unknown static kwarg, a resample
kernel other than [1,3,3,1], `use_noise=False` or a pickle version below 4 is
a one-line ConversionError naming it (progressive-growing StyleGAN1 and StyleGAN2
configs A-D, whose `ToRGB_lod*`/`FromRGB_lod*` layers NVIDIA's converter does not
handle either, are refused that way).

Deviation kept from legacy.py: a D without `mbstd_group_size` in its kwargs gets
None (whole batch), as legacy.py gives it; TF StyleGAN2's D_stylegan2 used 4 there.
It has no weights and only matters when D itself is run on batches over 4.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from jaxgen.stylegan2.nvidia import (ConversionError, discriminator_from_state_dict, discriminator_kwargs,
                                     generator_from_state_dict, generator_kwargs)
from jaxgen.utils.pickle_records import TFNetwork
from jaxgen.utils.safe_pickle import load_tf_network_pkl

StateDict = Dict[str, np.ndarray]
Transform = Callable[[np.ndarray], np.ndarray]

# (TF static kwarg, NVIDIA init kwarg as "name" or "group.name", value when the kwarg is absent)
_G_KWARGS = (
    ("latent_size", "z_dim", 512), ("label_size", "c_dim", 0), ("dlatent_size", "w_dim", 512),
    ("resolution", "img_resolution", 1024), ("num_channels", "img_channels", 3),
    ("mapping_layers", "mapping_kwargs.num_layers", 8),
    ("label_fmaps", "mapping_kwargs.embed_features", None),
    ("mapping_fmaps", "mapping_kwargs.layer_features", None),
    ("mapping_nonlinearity", "mapping_kwargs.activation", "lrelu"),
    ("mapping_lrmul", "mapping_kwargs.lr_multiplier", 0.01),
    ("w_avg_beta", "mapping_kwargs.w_avg_beta", 0.995),
    ("fmap_base", "synthesis_kwargs.channel_base", 16384),  # doubled: _doubled_base
    ("fmap_max", "synthesis_kwargs.channel_max", 512),
    ("num_fp16_res", "synthesis_kwargs.num_fp16_res", 0),
    ("conv_clamp", "synthesis_kwargs.conv_clamp", None),
    ("architecture", "synthesis_kwargs.architecture", "skip"),
    ("resample_kernel", "synthesis_kwargs.resample_filter", [1, 3, 3, 1]),
    ("use_noise", "synthesis_kwargs.use_noise", True),
    ("nonlinearity", "synthesis_kwargs.activation", "lrelu"),
)
_D_KWARGS = (
    ("label_size", "c_dim", 0), ("resolution", "img_resolution", 1024), ("num_channels", "img_channels", 3),
    ("architecture", "architecture", "resnet"), ("fmap_base", "channel_base", 16384),  # doubled
    ("fmap_max", "channel_max", 512), ("num_fp16_res", "num_fp16_res", 0),
    ("conv_clamp", "conv_clamp", None), ("mapping_fmaps", "cmap_dim", None),
    ("nonlinearity", "block_kwargs.activation", "lrelu"),
    ("resample_kernel", "block_kwargs.resample_filter", [1, 3, 3, 1]),
    ("freeze_layers", "block_kwargs.freeze_layers", 0),
    ("mapping_layers", "mapping_kwargs.num_layers", 0),
    ("mapping_fmaps", "mapping_kwargs.embed_features", None),
    ("mapping_fmaps", "mapping_kwargs.layer_features", None),
    ("nonlinearity", "mapping_kwargs.activation", "lrelu"),
    ("mapping_lrmul", "mapping_kwargs.lr_multiplier", 0.1),
    ("mbstd_group_size", "epilogue_kwargs.mbstd_group_size", None),
    ("mbstd_num_features", "epilogue_kwargs.mbstd_num_channels", 1),
    ("nonlinearity", "epilogue_kwargs.activation", "lrelu"),
)
# Run-time options with no effect on the weights or the converted network.
_G_IGNORED = frozenset({"truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure"})
_D_IGNORED = frozenset({"structure"})

_LEAVES = {"weight": "weight", "bias": "bias", "noise_strength": "noise_strength",
           "mod_weight": "affine.weight", "mod_bias": "affine.bias"}
_G_LAYERS = {"Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb", "Skip": "skip"}
_G_LAYERS_4 = {"Conv": "conv1", "ToRGB": "torgb"}
_D_LAYERS = {"FromRGB": "fromrgb", "Conv0": "conv0", "Conv1_down": "conv1", "Skip": "skip"}
_D_LAYERS_4 = {"FromRGB": "fromrgb", "Conv": "conv", "Dense0": "fc"}


def _init_kwargs(net: TFNetwork, table, ignored: frozenset, role: str) -> Dict[str, Any]:
    """NVIDIA init kwargs (nested dicts) from a TF network's static kwargs, via `table`."""
    if net.version < 4:
        raise ConversionError(f"TF network {role} is pickle version {net.version}; only versions 4 "
                              "(StyleGAN2) and 5 (StyleGAN2-ADA) are supported")
    static = dict(net.static_kwargs)
    if "dlatent_avg_beta" in static:  # G_main's own name for it
        static.setdefault("w_avg_beta", static.pop("dlatent_avg_beta"))
    unknown = sorted(map(str, set(static) - {t[0] for t in table} - ignored))
    if unknown:
        raise ConversionError(f"TF network {role}: unsupported static kwarg(s) {', '.join(unknown)} "
                              f"(built by {net.build_func_name}); this converter knows NVIDIA's "
                              "StyleGAN2 / StyleGAN2-ADA G_main and D networks")
    out: Dict[str, Any] = {}
    for tf_name, path, default in table:
        *groups, leaf = path.split(".")
        d = out
        for g in groups:
            d = d.setdefault(g, {})
        d[leaf] = static.get(tf_name, default)
    return out


def _doubled_base(fmap_base: Any, role: str) -> int:
    """PyTorch channel_base of a TF fmap_base (TF counts feature maps at half the scale)."""
    if not isinstance(fmap_base, (int, np.integer)) or isinstance(fmap_base, bool):
        raise ConversionError(f"TF network {role}: fmap_base={fmap_base!r} is not an integer")
    return int(fmap_base) * 2


def _check_options(kw: Mapping[str, Any], role: str) -> None:
    if list(np.ravel(kw.get("resample_filter", [1, 3, 3, 1]))) != [1, 3, 3, 1]:
        raise ConversionError(f"TF network {role}: resample_kernel={kw['resample_filter']!r} is not "
                              "supported (only the default [1, 3, 3, 1])")
    if kw.get("use_noise", True) is not True:
        raise ConversionError(f"TF network {role}: use_noise={kw['use_noise']!r} is not supported")


def generator_init_kwargs(net: TFNetwork, role: str = "G") -> Dict[str, Any]:
    """NVIDIA `Generator` init kwargs of a TF G / Gs (z_dim, ..., mapping_kwargs, synthesis_kwargs),
    as legacy.py derives them; ConversionError naming unknown or unsupported kwargs."""
    out = _init_kwargs(net, _G_KWARGS, _G_IGNORED, role)
    m, s = out["mapping_kwargs"], out["synthesis_kwargs"]
    m["w_avg_beta"] = 1 if m["w_avg_beta"] is None else m["w_avg_beta"]  # TF None: no tracking
    s["channel_base"] = _doubled_base(s["channel_base"], role)
    _check_options(s, role)
    return out


def discriminator_init_kwargs(net: TFNetwork, role: str = "D") -> Dict[str, Any]:
    """NVIDIA `Discriminator` init kwargs of a TF D, as legacy.py derives them."""
    out = _init_kwargs(net, _D_KWARGS, _D_IGNORED, role)
    out["channel_base"] = _doubled_base(out["channel_base"], role)
    _check_options(out["block_kwargs"], role)
    return out


def _drop_leading(n: int) -> Transform:
    """Drop `n` leading unit axes ([1, C, 4, 4] -> [C, 4, 4]; [1, 1, r, r] -> [r, r])."""
    def fn(v: np.ndarray) -> np.ndarray:
        if v.ndim < n or v.shape[:n] != (1,) * n:
            raise ConversionError(f"shape {v.shape} lacks {n} leading unit axes")
        return v.reshape(v.shape[n:])
    return fn


def _layer_transform(leaf: str, flip: bool = False) -> Transform:
    """TF -> PyTorch layout of one layer variable: dense [in, out] -> [out, in], conv
    HWIO -> OIHW (flipped in H, W for TF's transposed upsampling convs), mod_bias + 1."""
    def fn(v: np.ndarray) -> np.ndarray:
        if leaf == "mod_bias":
            return v + np.float32(1)
        if leaf in ("weight", "mod_weight") and v.ndim == 2:
            return v.T
        if leaf == "weight" and v.ndim == 4:
            return (v[::-1, ::-1] if flip else v).transpose(3, 2, 0, 1)
        return v
    return fn


def _noise_key(i: int) -> str:
    """PyTorch key of TF `synthesis/noise{i}`: layer 0 is b4.conv1, then conv0, conv1 per resolution."""
    if i == 0:
        return "synthesis.b4.conv1.noise_const"
    return f"synthesis.b{2 ** ((i + 5) // 2)}.conv{1 - i % 2}.noise_const"


def _generator_target(name: str) -> Optional[Tuple[str, Transform]]:
    """(PyTorch key, transform) of one TF G variable; None when it has no counterpart."""
    if name == "dlatent_avg":
        return "mapping.w_avg", _layer_transform("dlatent_avg")  # kept as it is
    if m := re.fullmatch(r"mapping/(LabelEmbed|Dense(\d+))/(weight|bias)", name):
        layer = "embed" if m[2] is None else f"fc{int(m[2])}"
        return f"mapping.{layer}.{m[3]}", _layer_transform(m[3])
    if name == "synthesis/4x4/Const/const":
        return "synthesis.b4.const", _drop_leading(1)
    if m := re.fullmatch(r"synthesis/noise(\d+)", name):
        return _noise_key(int(m[1])), _drop_leading(2)
    m = re.fullmatch(r"synthesis/(\d+)x(\d+)/(\w+)/(\w+)", name)
    if not m or m[1] != m[2] or m[4] not in _LEAVES:
        return None
    res, layer, leaf = int(m[1]), m[3], m[4]
    torch_layer = (_G_LAYERS_4 if res == 4 else _G_LAYERS).get(layer)
    if torch_layer is None:
        return None
    key = f"synthesis.b{res}.{torch_layer}.{_LEAVES[leaf]}"
    return key, _layer_transform(leaf, flip=layer in ("Conv0_up", "Skip"))


def _discriminator_target(name: str) -> Optional[Tuple[str, Transform]]:
    """(PyTorch key, transform) of one TF D variable; None when it has no counterpart."""
    if m := re.fullmatch(r"(LabelEmbed|Mapping(\d+))/(weight|bias)", name):
        layer = "embed" if m[2] is None else f"fc{int(m[2])}"
        return f"mapping.{layer}.{m[3]}", _layer_transform(m[3])
    if m := re.fullmatch(r"Output/(weight|bias)", name):
        return f"b4.out.{m[1]}", _layer_transform(m[1])
    m = re.fullmatch(r"(\d+)x(\d+)/(\w+)/(weight|bias)", name)
    if not m or m[1] != m[2]:
        return None
    res, leaf = int(m[1]), m[4]
    torch_layer = (_D_LAYERS_4 if res == 4 else _D_LAYERS).get(m[3])
    return None if torch_layer is None else (f"b{res}.{torch_layer}.{leaf}", _layer_transform(leaf))


def _state_dict(net: TFNetwork, target: Callable[[str], Any], role: str) -> StateDict:
    """Every TF variable of `net` (and its components) under its PyTorch key and layout."""
    out: StateDict = {}
    source: Dict[str, str] = {}
    leftover = []
    for name, value in net.all_variables().items():
        if name.rsplit("/", 1)[-1] == "lod" and np.ndim(value) == 0:
            continue  # progressive-growing schedule; StyleGAN2 networks do not use it
        hit = target(name)
        if hit is None:
            leftover.append(name)
            continue
        key, fn = hit
        if key in out:
            raise ConversionError(f"TF network {role}: variables {source[key]} and {name} both map to {key}")
        try:
            out[key] = np.array(fn(np.asarray(value, np.float32)), np.float32, order="C")  # 0-d stays 0-d
        except ConversionError as e:
            raise ConversionError(f"TF network {role}: variable {name}: {e}") from None
        source[key] = name
    if leftover:
        hint = (" (progressive-growing StyleGAN1 / StyleGAN2 config A-D layers are not supported)"
                if any("_lod" in n for n in leftover) else "")
        more = f" and {len(leftover) - 6} more" if len(leftover) > 6 else ""
        raise ConversionError(f"TF network {role}: variable(s) with no StyleGAN2 counterpart: "
                              f"{', '.join(leftover[:6])}{more}{hint}")
    return out


def generator_state_dict(net: TFNetwork, role: str = "G") -> StateDict:
    """NVIDIA `Generator.state_dict()` (without resample filters) of a TF G / Gs."""
    return _state_dict(net, _generator_target, role)


def discriminator_state_dict(net: TFNetwork, role: str = "D") -> StateDict:
    """NVIDIA `Discriminator.state_dict()` (without resample filters) of a TF D."""
    return _state_dict(net, _discriminator_target, role)


def generator_from_tf(net: TFNetwork, role: str = "G"):
    """(jaxgen Generator, Flax variables, NVIDIA init kwargs) of a TF G / Gs."""
    init = generator_init_kwargs(net, role)
    G, variables = generator_from_state_dict(generator_state_dict(net, role), init)
    return G, variables, init


def discriminator_from_tf(net: TFNetwork, role: str = "D"):
    """(jaxgen Discriminator, Flax variables, NVIDIA init kwargs) of a TF D."""
    init = discriminator_init_kwargs(net, role)
    D, variables = discriminator_from_state_dict(discriminator_state_dict(net, role), init)
    return D, variables, init


def convert_tf_snapshot(path) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(info with jaxgen G_kwargs/D_kwargs, {'G', 'D', 'G_ema'} Flax variables) of a TF
    `(G, D, Gs)` pickle; G_ema is Gs. Same result shape as pkl_to_orbax.convert_snapshot."""
    nets = load_tf_network_pkl(path)
    _, g_vars, g_init = generator_from_tf(nets["G"], "G")
    _, ema_vars, _ = generator_from_tf(nets["Gs"], "Gs")
    _, d_vars, d_init = discriminator_from_tf(nets["D"], "D")
    info = dict(G_kwargs=generator_kwargs(g_init), D_kwargs=discriminator_kwargs(d_init))
    return info, dict(G=g_vars, D=d_vars, G_ema=ema_vars)
