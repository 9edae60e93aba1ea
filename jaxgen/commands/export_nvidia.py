"""Export a jaxgen StyleGAN2 run as NVIDIA state dicts (`.safetensors`) plus constructor kwargs.

  python -m jaxgen export_nvidia runs/ffhq_ft exports/ffhq_ft

OUT receives G.safetensors, D.safetensors, G_ema.safetensors (NVIDIA's full state dicts) and
G_kwargs.json, D_kwargs.json (their constructor kwargs); in stylegan2-ada-pytorch
`training.networks.Generator(**json.load(open('G_kwargs.json')))` then loads G_ema.safetensors
strictly. The layouts and buffers: jaxgen/stylegan2/export_nvidia.py.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from jaxgen.commands.common import command_parser, run_main
from jaxgen.stylegan2.export_nvidia import export_run, num_params


def parser() -> argparse.ArgumentParser:
    """RUN, OUT and --which."""
    p = command_parser("export_nvidia", __doc__)
    p.add_argument("run", help="a StyleGAN2 run: training workdir, networks directory or NVIDIA .pkl")
    p.add_argument("out", type=pathlib.Path, help="output folder: new or empty")
    p.add_argument("--which", choices=("auto", "latest", "best"), default="auto",
                   help="a workdir's checkpoint: latest (auto) or best-FID")
    return p


def main(argv=None) -> int:
    """Export RUN's G, D and G_ema into OUT; print what was written and how to load it."""
    args = parser().parse_args(argv)
    run, dicts, paths = export_run(args.run, args.out, args.which)
    step = "" if run.step is None else f", checkpoint step {run.step}"
    print(f"exported {run.path} ({run.resolution}px, c_dim {run.num_classes}{step}) -> {args.out}")
    for net, sd in dicts.items():
        size = paths[net].stat().st_size
        print(f"{paths[net]}: {len(sd)} tensors, {num_params(sd):,} params, {size / 2**20:.2f} MiB")
    print(f"kwargs: {paths['G_kwargs']}, {paths['D_kwargs']}")
    print("load in stylegan2-ada-pytorch: G = training.networks.Generator(**json.load(open('G_kwargs.json'))); "
          "G.load_state_dict(safetensors.torch.load_file('G_ema.safetensors'))")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
