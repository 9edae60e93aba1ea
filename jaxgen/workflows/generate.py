"""Write a synthetic image-folder dataset from a trained generator.

  python -m jaxgen.workflows.generate --checkpoint runs/acne_tiny --out data/synthetic_tiny \
      --num_per_class 64 [--psi 1.0] [--seed 0] [--best]

Any generator run `jaxgen.runs.open_run` opens (StyleGAN2 or DCGAN workdir,
networks directory, NVIDIA .pkl). One sub-folder per class
(`<class>/<class>_00000.png`, class names from the run's run.json), and
`metadata.jsonl` with one line per image: file, class, latent seed, truncation psi. Resumable: images already present (and complete)
are kept, so an interrupted export continues where it stopped. Paths are
checked to stay inside --out.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Optional

import numpy as np

from jaxgen.runs import GENERATOR_KINDS, open_run
from jaxgen.utils.files import inside, png_complete, save_png_atomic, write_text_atomic
from jaxgen.utils.images import to_uint8


def export_dataset(checkpoint: str, out: str, num_per_class: int, psi: float = 1.0, seed: int = 0,
                   best: bool = False, batch: int = 32, class_names: Optional[list] = None) -> dict:
    """Write num_per_class images per class of the generator run `checkpoint` into `out` (resumable)."""
    g = open_run(checkpoint, "best" if best else "latest", kinds=GENERATOR_KINDS)
    k = g.num_classes
    names = list(class_names or g.class_names or ["all"])
    if k and len(names) != k:
        raise ValueError(f"{len(names)} class names for a generator with {k} classes")
    out_dir = pathlib.Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / "metadata.jsonl"
    written = 0
    rows = []
    for ci, name in enumerate(names):
        cdir = inside(out_dir, out_dir / name)
        cdir.mkdir(exist_ok=True)
        todo = [i for i in range(num_per_class) if not png_complete(cdir / f"{name}_{i:05d}.png")]
        for start in range(0, len(todo), batch):
            ids = todo[start:start + batch]
            # Latent i of class ci comes from seed (seed, ci, i): re-runs reproduce every image.
            z = np.stack([np.random.default_rng([seed, ci, i]).standard_normal(g.z_dim) for i in ids])
            imgs = to_uint8(g.generate(z.astype(np.float32), np.full(len(ids), ci), psi))
            for i, img in zip(ids, imgs):
                path = cdir / f"{name}_{i:05d}.png"
                save_png_atomic(path, img)
                written += 1
        for i in range(num_per_class):
            rows.append(dict(file=f"{name}/{name}_{i:05d}.png", class_name=name, class_index=ci,
                             latent_seed=[seed, ci, i], psi=psi, checkpoint=str(checkpoint)))
        print(f"generate: {name}: {num_per_class} images ({len(todo)} new)", flush=True)
    write_text_atomic(meta_path, "".join(json.dumps(r) + "\n" for r in rows))
    return dict(out=str(out_dir), written=written, total=len(rows), classes=list(names))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--num_per_class", type=int, default=64)
    p.add_argument("--psi", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--best", action="store_true", help="use the best-FID checkpoint of a workdir")
    a = p.parse_args(argv)
    r = export_dataset(a.checkpoint, a.out, a.num_per_class, a.psi, a.seed, a.best)
    print(f"wrote {r['written']} new images; {r['total']} in {r['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
