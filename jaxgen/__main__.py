"""`python -m jaxgen <command> [flags]` (or `jaxgen <command>`, once installed): every command.

  python -m jaxgen                                   # the commands, one line each
  python -m jaxgen demo_faces --out data/demo_acne   # run one
  python -m jaxgen <command> --help                  # its flags

Command `x` is the module jaxgen/commands/x.py, imported only when it runs (listing them
imports none). `train`, `evolve` and `evaluate` are the absl commands of train.py, evolve.py
and evaluate.py (the same flags); each other command's `main(argv)` parses its own flags and
returns an exit status.
An unknown command is one line on stderr, exit status 2.
"""
from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

from jaxgen.commands.common import run_main

COMMANDS = {
    "train": "train a StyleGAN2, DCGAN or classifier from a config (= python train.py)",
    "evolve": "evolve generator latents with a GA into an anonymous dataset (= python evolve.py)",
    "evaluate": "score generators, classifiers, synthetic datasets (= python evaluate.py MODE)",
    "generate": "export a checked synthetic dataset from a generator, with its datasheet",
    "demo": "`make demo`: labelled synthetic demo faces from a tiny GAN, judged by a classifier",
    "pipeline": "the acne paper's hierarchical pipeline (GAN, sorter, fine-tunes, GA) in one command",
    "labelled": "an unconditional GAN labelled by a classifier of the real faces, with a utility curve",
    "images": "pictures from a StyleGAN2 run: seeds, style mixing, interpolation, projected w",
    "project": "project images into a StyleGAN2 generator's w (or w+) space",
    "demo_faces": "render the procedural acne-severity demo faces as an image folder",
    "depth_faces": "render the procedural depth-map faces (4 expressions) as an image folder",
    "pack": "pack a dataset into random-access shards for training larger than memory",
    "nvidia_dataset": "convert between class folders and NVIDIA's dataset_tool.py zip",
    "pkl_to_orbax": "convert an official StyleGAN2-ADA .pkl into a jaxgen networks checkpoint",
    "export_nvidia": "export a StyleGAN2 run as NVIDIA state dicts (.safetensors) and kwargs",
    "xgb": "XGBoost on handcrafted features: synthetic-train / real-test",
}
ABSL_COMMANDS = ("train", "evolve", "evaluate")   # their module's run() reads sys.argv


def listing() -> str:
    """The usage line and one line per command."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()]
    return ("usage: python -m jaxgen <command> [flags]   (python -m jaxgen <command> --help: its flags)\n\n"
            "commands:\n" + "\n".join(lines))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command named by argv[0] (default sys.argv[1:]) on the rest; its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(listing())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; the commands: {', '.join(COMMANDS)} "
              "(python -m jaxgen lists them)", file=sys.stderr)
        return 2
    module = importlib.import_module(f"jaxgen.commands.{name}")
    if name in ABSL_COMMANDS:
        sys.argv = [f"python -m jaxgen {name}"] + rest
        module.run()        # absl: parses sys.argv, exits with main's status
        return 0
    return run_main(lambda: module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
