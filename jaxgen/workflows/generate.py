"""Write a synthetic image-folder dataset from a trained generator.

  python -m jaxgen.workflows.generate --checkpoint runs/acne_tiny --out data/synthetic_tiny \
      --num_per_class 64 [--classes healthy,severe] [--psi 1.0] [--seed 0] [--best]

Any generator run `jaxgen.runs.open_run` opens (StyleGAN2 or DCGAN workdir,
networks directory, NVIDIA .pkl). One sub-folder per class
(`<class>/<class>_00000.png`, class names from the run's run.json; `--classes`
picks some of them by name), and `metadata.jsonl` with one line per image:
file, class, latent seed, truncation psi. Image i of class c always comes from
the latent seed (seed, c, i), whichever classes are picked.

Resumable: images already present (and complete) are kept, so an interrupted
export continues where it stopped. --out must be new, empty or an earlier
generate output (its `.jaxgen-output.json` marker); a folder of other files is
refused before the generator is even opened (`jaxgen.utils.outputs`). Paths are
checked to stay inside --out. Progress (images, rate, ETA) is printed every 10 s.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from jaxgen.cli import run_main, use_compile_cache
from jaxgen.errors import ConfigError
from jaxgen.runs import GENERATOR_KINDS, Run, open_run
from jaxgen.utils.files import inside, png_complete, save_png_atomic, write_text_atomic
from jaxgen.utils.images import to_uint8
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.utils.progress import Progress

OUTPUT_KIND = "generate"


def _legacy_output(folder: pathlib.Path) -> bool:
    """True for a generate output written before the marker: its metadata.jsonl rows."""
    try:
        first = (folder / "metadata.jsonl").read_text().split("\n", 1)[0]
        row = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(row, dict) and {"latent_seed", "checkpoint", "class_name"} <= set(row)


def pick_classes(g: Run, checkpoint: str, class_names: Optional[Sequence[str]] = None,
                 classes: Optional[Sequence[str]] = None) -> List[Tuple[int, str]]:
    """(class index, name) of the classes to export: all, or those named in `classes`.

    class_names renames the generator's classes (for a run without names).
    """
    k = g.num_classes
    names = list(class_names or g.class_names or ["all"])
    if k and len(names) != k:
        raise ConfigError(f"{len(names)} class names for the generator {checkpoint} with {k} classes")
    if not classes:
        return list(enumerate(names))
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ConfigError(f"--classes: {', '.join(map(repr, unknown))} not among the classes of "
                          f"{checkpoint} ({', '.join(names)}); pick some of those")
    return [(ci, n) for ci, n in enumerate(names) if n in classes]


def export_dataset(checkpoint: str, out: str, num_per_class: int, psi: float = 1.0, seed: int = 0,
                   best: bool = False, batch: int = 32, class_names: Optional[list] = None,
                   classes: Optional[Sequence[str]] = None, progress_every: float = 10.0) -> dict:
    """Write num_per_class images per class of the generator run `checkpoint` into `out` (resumable).

    classes: names of the classes to write (default all). Returns {'out', 'written' (new
    images), 'total' (rows of metadata.jsonl), 'classes'}.
    """
    out_dir = check_output(out, OUTPUT_KIND, legacy=_legacy_output)   # before opening anything
    if int(num_per_class) < 1:
        raise ConfigError(f"--num_per_class={num_per_class}: give at least 1 image per class")
    g = open_run(checkpoint, "best" if best else "latest", kinds=GENERATOR_KINDS)
    picked = pick_classes(g, checkpoint, class_names, classes)
    claim_output(out_dir, OUTPUT_KIND, legacy=_legacy_output)
    todo = {}
    for _, name in picked:
        cdir = inside(out_dir, out_dir / name)
        todo[name] = [i for i in range(num_per_class) if not png_complete(cdir / f"{name}_{i:05d}.png")]
    bar = Progress(sum(map(len, todo.values())), "generate: images", every=progress_every)
    for ci, name in picked:
        _write_class(g, out_dir / name, name, ci, todo[name], psi, seed, batch, bar)
        print(f"generate: {name}: {num_per_class} images ({len(todo[name])} new)", flush=True)
    rows = _metadata(out_dir, picked, num_per_class, psi, seed, checkpoint)
    return dict(out=str(out_dir), written=bar.done, total=len(rows), classes=[n for _, n in picked])


def _write_class(g: Run, cdir: pathlib.Path, name: str, ci: int, todo: List[int], psi: float,
                 seed: int, batch: int, bar: Progress) -> None:
    """Generate and save images `todo` of class number `ci` into `cdir`, `batch` at a time."""
    cdir.mkdir(exist_ok=True)
    for start in range(0, len(todo), batch):
        ids = todo[start:start + batch]
        # Latent i of class ci comes from seed (seed, ci, i): re-runs reproduce every image.
        z = np.stack([np.random.default_rng([seed, ci, i]).standard_normal(g.z_dim) for i in ids])
        imgs = to_uint8(g.generate(z.astype(np.float32), np.full(len(ids), ci), psi))
        for i, img in zip(ids, imgs):
            save_png_atomic(cdir / f"{name}_{i:05d}.png", img)
        bar.update(len(ids))


def _metadata(out_dir: pathlib.Path, picked: List[Tuple[int, str]], num_per_class: int, psi: float,
              seed: int, checkpoint: str) -> List[Dict]:
    """Write metadata.jsonl: the rows of the classes written now, after the earlier rows of others."""
    now = {name for _, name in picked}
    path = out_dir / "metadata.jsonl"
    rows = []
    if path.exists():   # classes exported by an earlier call with other --classes stay listed
        rows = [r for r in map(json.loads, filter(None, path.read_text().splitlines()))
                if r.get("class_name") not in now]
    for ci, name in picked:
        for i in range(num_per_class):
            rows.append(dict(file=f"{name}/{name}_{i:05d}.png", class_name=name, class_index=ci,
                             latent_seed=[seed, ci, i], psi=psi, checkpoint=str(checkpoint)))
    rows.sort(key=lambda r: (r.get("class_index", 0), r["file"]))
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def main(argv=None) -> int:
    """Command line: the generator, the output folder and what to generate."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="generator run, networks dir or NVIDIA .pkl")
    p.add_argument("--out", required=True, help="dataset folder: new, empty or an earlier generate output")
    p.add_argument("--num_per_class", type=int, default=64)
    p.add_argument("--classes", default="", help="comma-separated class names (default: all)")
    p.add_argument("--psi", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--best", action="store_true", help="use the best-FID checkpoint of a workdir")
    a = p.parse_args(argv)
    use_compile_cache()
    classes = [c.strip() for c in a.classes.split(",") if c.strip()]
    r = export_dataset(a.checkpoint, a.out, a.num_per_class, a.psi, a.seed, a.best, classes=classes)
    print(f"wrote {r['written']} new images; {r['total']} in {r['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
