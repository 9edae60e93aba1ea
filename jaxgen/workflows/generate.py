"""Write a synthetic image-folder dataset from a trained generator.

  python -m jaxgen.workflows.generate --checkpoint runs/acne_tiny --out data/synthetic_tiny \
      --num_per_class 64 [--psi 1.0] [--seed 0] [--best]

One sub-folder per class (`<class>/<class>_00000.png`, class names from the
run's model.json), and `metadata.jsonl` with one line per image: file, class,
latent seed, truncation psi. Resumable: images already present (and complete)
are kept, so an interrupted export continues where it stopped. Paths are
checked to stay inside --out.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Optional

import jax
import numpy as np
from PIL import Image

from jaxgen.utils.images import to_uint8


def _inside(root: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    root, path = root.resolve(), path.resolve()
    if root != path and root not in path.parents:
        raise ValueError(f"refusing to write {path}: outside the output directory {root}")
    return path


def export_dataset(checkpoint: str, out: str, num_per_class: int, psi: float = 1.0, seed: int = 0,
                   best: bool = False, batch: int = 32, class_names: Optional[list] = None) -> dict:
    from jaxgen.metrics.evaluate import load_generator
    G, ema, info = load_generator(checkpoint, best)
    out_dir = pathlib.Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = G.c_dim
    names = class_names or info.get("class_names") or ([f"class{i}" for i in range(k)] if k else ["all"])
    if k and len(names) != k:
        raise ValueError(f"{len(names)} class names for a generator with {k} classes")
    gen = jax.jit(lambda v, z, c: G.apply(v, z, c, truncation_psi=psi, noise_mode="const"))
    meta_path = out_dir / "metadata.jsonl"
    written = 0
    rows = []
    for ci, name in enumerate(names):
        cdir = _inside(out_dir, out_dir / name)
        cdir.mkdir(exist_ok=True)
        todo = [i for i in range(num_per_class) if not _complete(cdir / f"{name}_{i:05d}.png")]
        for start in range(0, len(todo), batch):
            ids = todo[start:start + batch]
            # Latent i of class ci comes from seed (seed, ci, i): re-runs reproduce every image.
            z = np.stack([np.random.default_rng([seed, ci, i]).standard_normal(G.z_dim) for i in ids])
            c = np.zeros([len(ids), k], np.float32)
            if k:
                c[:, ci] = 1
            imgs = to_uint8(np.asarray(gen(ema, z.astype(np.float32), c)))
            for i, img in zip(ids, imgs):
                path = cdir / f"{name}_{i:05d}.png"
                tmp = path.with_suffix(".tmp.png")
                Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(tmp)
                tmp.replace(path)
                written += 1
        for i in range(num_per_class):
            rows.append(dict(file=f"{name}/{name}_{i:05d}.png", class_name=name, class_index=ci,
                             latent_seed=[seed, ci, i], psi=psi, checkpoint=str(checkpoint)))
        print(f"generate: {name}: {num_per_class} images ({len(todo)} new)", flush=True)
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(meta_path)
    return dict(out=str(out_dir), written=written, total=len(rows), classes=list(names))


def _complete(path: pathlib.Path) -> bool:
    if not path.exists():
        return False
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - a truncated file is regenerated
        return False


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
