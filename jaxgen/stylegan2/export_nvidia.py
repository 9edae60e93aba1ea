"""Export a jaxgen StyleGAN2 run as NVIDIA state dicts (`.safetensors`) plus constructor kwargs.

  python -m jaxgen export_nvidia runs/ffhq_ft exports/ffhq_ft

RUN is anything `jaxgen.runs.open_run` opens as a StyleGAN2 run (a training
workdir, a networks directory, an NVIDIA .pkl); OUT is a new (or empty) folder.
It receives

  G.safetensors, D.safetensors, G_ema.safetensors   NVIDIA's full state dicts
  G_kwargs.json, D_kwargs.json                      NVIDIA's constructor kwargs

so that, in NVIDIA's stylegan2-ada-pytorch,

  G = training.networks.Generator(**json.load(open('G_kwargs.json')))
  G.load_state_dict(safetensors.torch.load_file('G_ema.safetensors'))   # strict

builds and fills the same network (likewise `Discriminator` with D_kwargs.json).
The keys and layouts are NVIDIA's: dense [out, in], conv OIHW, const [C, 4, 4],
`mapping.w_avg`, `*.noise_const`, and every `*.resample_filter` buffer NVIDIA's
modules register (a strict load needs them; they are rebuilt from the run's
FIR taps as NVIDIA's `upfirdn2d.setup_filter` does). The inverse command is
`python -m jaxgen pkl_to_orbax` (for .pkl) and `jaxgen.stylegan2.nvidia`.

The safetensors files are written by the `safetensors` package's numpy writer. Their
`__metadata__` holds the network name,
NVIDIA's class name, the kwargs JSON, the class names (label order), the source run and step.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from typing import Any, Dict, Mapping, Optional, Tuple

import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from jaxgen.errors import OutputError
from jaxgen.runs import Run, open_run
from jaxgen.stylegan2.discriminator import Discriminator
from jaxgen.stylegan2.generator import Generator
from jaxgen.stylegan2.nvidia import reference_variables, state_dict_to_variables, variables_to_state_dict
from jaxgen.stylegan2.resample import setup_filter
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.outputs import check_output, claim_output

OUTPUT_KIND = "nvidia_export"
OUT_FLAG = "OUT (the 2nd argument)"
NVIDIA_CLASSES = {"G": "training.networks.Generator", "G_ema": "training.networks.Generator",
                  "D": "training.networks.Discriminator"}
DEFAULT_FILTER = (1, 3, 3, 1)
BUFFERS = ("w_avg", "noise_const", "resample_filter")    # NVIDIA buffers; the rest are parameters
# numpy dtype name -> safetensors dtype code
_ST_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
              "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


# ------------------------------------------------------------------ constructor kwargs

def _defaults(cls: Any, kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """`kwargs` over the defaults of jaxgen module `cls` (a dataclass): every knob explicit."""
    out = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    out.update(kwargs)
    return out


def _num_fp16_res(kwargs: Mapping[str, Any]) -> int:
    """NVIDIA's num_fp16_res for jaxgen's (dtype, num_lowp_res).

    float16 runs keep their low-precision resolutions (None = all blocks); kwargs without a
    dtype come from a converted NVIDIA snapshot, whose num_lowp_res *is* its num_fp16_res;
    float32 and bfloat16 runs (NVIDIA has no bfloat16) export 0: everything in float32."""
    dtype = kwargs.get("dtype")
    name = None if dtype is None else jnp.dtype(dtype).name
    if name not in (None, "float16"):
        return 0
    n = kwargs.get("num_lowp_res")
    if n is None:
        return int(np.log2(kwargs["img_resolution"])) - 1 if name == "float16" else 0
    return int(n)


def _taps(v: Any) -> list:
    return [float(t) if not float(t).is_integer() else int(t) for t in v]


def nvidia_generator_kwargs(G_kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """NVIDIA `Generator(**kwargs)` arguments (JSON-able) from jaxgen G kwargs (run.json's).

    The inverse of `jaxgen.stylegan2.nvidia.generator_kwargs`; every setting jaxgen has is
    written out, so the result does not depend on NVIDIA's defaults."""
    k = _defaults(Generator, G_kwargs)
    return dict(
        z_dim=int(k["z_dim"]), c_dim=int(k["c_dim"]), w_dim=int(k["w_dim"]),
        img_resolution=int(k["img_resolution"]), img_channels=int(k["img_channels"]),
        mapping_kwargs=dict(num_layers=int(k["mapping_layers"]), lr_multiplier=k["mapping_lr_multiplier"],
                            w_avg_beta=k["w_avg_beta"], embed_features=k["embed_features"],
                            layer_features=k["layer_features"]),
        synthesis_kwargs=dict(channel_base=int(k["channel_base"]), channel_max=int(k["channel_max"]),
                              num_fp16_res=_num_fp16_res(G_kwargs), conv_clamp=k["conv_clamp"],
                              architecture=k["architecture"], resample_filter=_taps(k["resample_filter"]),
                              use_noise=bool(k["use_noise"])))


def nvidia_discriminator_kwargs(D_kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """NVIDIA `Discriminator(**kwargs)` arguments (JSON-able) from jaxgen D kwargs; the inverse
    of `jaxgen.stylegan2.nvidia.discriminator_kwargs`. D's mapping_kwargs hold only num_layers
    and lr_multiplier: NVIDIA passes w_avg_beta=None itself (another value would clash)."""
    k = _defaults(Discriminator, D_kwargs)
    return dict(
        c_dim=int(k["c_dim"]), img_resolution=int(k["img_resolution"]), img_channels=int(k["img_channels"]),
        architecture=k["architecture"], channel_base=int(k["channel_base"]), channel_max=int(k["channel_max"]),
        num_fp16_res=_num_fp16_res(D_kwargs), conv_clamp=k["conv_clamp"], cmap_dim=k["cmap_dim"],
        block_kwargs=dict(resample_filter=_taps(k["resample_filter"])),
        mapping_kwargs=dict(num_layers=int(k["mapping_layers"]), lr_multiplier=k["mapping_lr_multiplier"]),
        epilogue_kwargs=dict(mbstd_group_size=k["mbstd_group_size"],
                             mbstd_num_channels=int(k["mbstd_num_channels"])))


# ------------------------------------------------------------------ state dicts

# Layers (by name) that register a resample_filter buffer in NVIDIA's networks, and the subset
# of them built with the network's own taps (the others get NVIDIA's default [1,3,3,1]).
_FILTER_LAYERS = {"G": ("conv0", "conv1", "skip"), "D": ("fromrgb", "conv0", "conv1", "skip", "conv")}
_OWN_TAPS = {"G": ("conv0", "skip"), "D": ("conv1", "skip")}


def _filter_keys(keys, net: str) -> Dict[str, bool]:
    """{buffer key: built from the network's own taps (else NVIDIA's default)} for every
    `resample_filter` buffer NVIDIA registers in network `net` ('G' or 'D') with these keys.

    G: each SynthesisBlock `synthesis.b{res}` (own taps), its SynthesisLayers conv0 (own) and
    conv1 (default), and a resnet `skip` Conv2dLayer (own). D: each DiscriminatorBlock `b{res}`
    (own), its Conv2dLayers fromrgb, conv0 (default), conv1, skip (own), and the epilogue's
    `b4.conv`/`b4.fromrgb` (default; the epilogue itself has none). Mapping, ToRGB and dense
    layers have none."""
    out = {}
    for key in keys:
        parts = key.split(".")[:-1]
        if net == "G":
            if len(parts) < 2 or parts[0] != "synthesis":
                continue
            block, layer = ".".join(parts[:2]), parts[2] if len(parts) == 3 else None
        else:
            if not (parts and re.fullmatch(r"b\d+", parts[0])):
                continue
            block, layer = parts[0], parts[1] if len(parts) == 2 else None
        if net == "G" or block != "b4":                  # D's epilogue registers no filter of its own
            out[f"{block}.resample_filter"] = True
        if layer in _FILTER_LAYERS[net]:
            out[f"{block}.{layer}.resample_filter"] = layer in _OWN_TAPS[net] and block != "b4"
    return out


def add_resample_filters(state_dict: Dict[str, np.ndarray], net: str,
                         taps=DEFAULT_FILTER) -> Dict[str, np.ndarray]:
    """`state_dict` of network `net` ('G', 'G_ema' or 'D') plus every resample_filter buffer
    NVIDIA registers there: [4, 4] float32 for 4 taps, the outer product of the taps
    normalised to sum 1, as NVIDIA's `upfirdn2d.setup_filter` builds it. Modifies in place."""
    for key, own in _filter_keys(list(state_dict), "D" if net == "D" else "G").items():
        state_dict[key] = setup_filter(taps if own else DEFAULT_FILTER)
    return state_dict


def nvidia_state_dict(variables: Any, net: str, taps=DEFAULT_FILTER) -> Dict[str, np.ndarray]:
    """NVIDIA's complete state dict {key: float32 array in torch layout (dense [out, in],
    conv OIHW, const [C, 4, 4])} of the jaxgen variables of network `net`, buffers included."""
    return add_resample_filters(variables_to_state_dict(variables), net, taps)


def num_params(state_dict: Mapping[str, np.ndarray]) -> int:
    """Values in NVIDIA's parameters (its `num_params`): the state dict without its buffers."""
    return sum(int(np.size(v)) for k, v in state_dict.items() if k.rsplit(".", 1)[-1] not in BUFFERS)


def export_state_dicts(run: Run) -> Tuple[Dict[str, Dict[str, np.ndarray]], Dict[str, Dict[str, Any]]]:
    """({'G', 'D', 'G_ema'}: NVIDIA state dicts, {'G', 'D'}: NVIDIA kwargs) of a StyleGAN2 run.

    Each network's weights are first checked against the model its kwargs build (the
    converter's ConversionError names every missing or mis-shaped key), so a file NVIDIA's
    strict load_state_dict would refuse is never written."""
    g_kw, d_kw = run.info["G_kwargs"], run.info["D_kwargs"]
    refs = dict(G=reference_variables(run.model), D=reference_variables(run.discriminator))
    dicts = {}
    for net in ("G", "D", "G_ema"):
        sd = variables_to_state_dict(run.networks[net])
        state_dict_to_variables(sd, refs[net[0]])          # ConversionError on a misfit
        taps = (g_kw if net[0] == "G" else d_kw).get("resample_filter", DEFAULT_FILTER)
        dicts[net] = add_resample_filters(sd, net, taps)
    return dicts, dict(G=nvidia_generator_kwargs(g_kw), D=nvidia_discriminator_kwargs(d_kw))


# ------------------------------------------------------------------ safetensors

def write_safetensors(path, tensors: Mapping[str, np.ndarray],
                      metadata: Optional[Mapping[str, str]] = None) -> pathlib.Path:
    """Write `tensors` as a .safetensors file with the reference writer
    (`safetensors.numpy.save_file`), through a temporary file and a rename so that a crash
    never leaves a half-written file under the final name."""
    arrays = {name: np.asarray(a, order="C") for name, a in tensors.items()}   # keeps 0-d shapes
    for name, a in arrays.items():
        if a.dtype.name not in _ST_DTYPES:
            raise ValueError(f"{name}: dtype {a.dtype} has no safetensors code")
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(arrays, str(tmp), metadata={str(k): str(v) for k, v in (metadata or {}).items()} or None)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ command

def _metadata(run: Run, net: str, kwargs: Dict[str, Any]) -> Dict[str, str]:
    return {"format": "pt", "network": net, "class_name": NVIDIA_CLASSES[net],
            "init_kwargs": json.dumps(kwargs), "class_names": json.dumps(list(run.class_names)),
            "source": str(pathlib.Path(run.path).absolute()), "step": str(run.step),
            "written_by": "jaxgen.stylegan2.export_nvidia"}


def write_export(out, run: Run, dicts: Mapping[str, Dict[str, np.ndarray]],
                 kwargs: Mapping[str, Dict[str, Any]]) -> Dict[str, pathlib.Path]:
    """Write `export_state_dicts(run)`'s dicts and kwargs into folder `out` (claimed by the
    caller): {net}.safetensors and {G,D}_kwargs.json; {file stem: path}."""
    out = pathlib.Path(out)
    paths = {}
    for net, sd in dicts.items():
        paths[net] = write_safetensors(out / f"{net}.safetensors", sd, _metadata(run, net, kwargs[net[0]]))
    for net, kw in kwargs.items():
        paths[f"{net}_kwargs"] = out / f"{net}_kwargs.json"
        write_text_atomic(paths[f"{net}_kwargs"], json.dumps(kw, indent=2) + "\n")
    return paths


def check_export_output(out: pathlib.Path) -> None:
    """Refuse (before any work) a folder of other files, or one holding an export already."""
    check_output(out, OUTPUT_KIND, OUT_FLAG)
    if (out / "G.safetensors").exists():
        raise OutputError(f"{OUT_FLAG} {out} already holds an export (G.safetensors); "
                          "choose a new folder for this one")


def export_run(spec: str, out: pathlib.Path, which: str = "auto") -> Tuple[Run, Dict[str, Dict[str, np.ndarray]],
                                                                          Dict[str, pathlib.Path]]:
    """Export the StyleGAN2 run `spec` (its `which` checkpoint) into the new folder `out`; every check
    comes before the folder is made. Returns (run, {net: state dict}, {file key: path written})."""
    check_export_output(out)
    run = open_run(spec, which, kinds=("stylegan2",))
    dicts, kwargs = export_state_dicts(run)
    claim_output(out, OUTPUT_KIND, OUT_FLAG)
    return run, dicts, write_export(out, run, dicts, kwargs)


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen export_nvidia
    import runpy
    runpy.run_module("jaxgen.commands.export_nvidia", run_name="__main__")
