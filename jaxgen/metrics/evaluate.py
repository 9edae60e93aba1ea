"""`evaluate.py`: score a generator checkpoint (or a folder of images) against real data.

  python evaluate.py --checkpoint runs/acne --real data/acne \
      --inception_weights weights/pt_inception-2015-12-05-6726825d.pth
  python evaluate.py --fakes out/synthetic --real data/acne --metrics fid,kid,pr \
      --feature_net random_inception        # no Inception weights: labelled fallback

--checkpoint takes any generator run `jaxgen.runs.open_run` opens: a StyleGAN2 or
DCGAN training workdir (its latest checkpoint; --best for the best-FID one), a
networks directory (pkl_to_orbax output) or an official NVIDIA .pkl.
Writes <out>/metrics.json and <out>/metrics.md (a table), and prints the table.
"""
from __future__ import annotations

import datetime
import json
import pathlib
from typing import Any, Dict, Optional, Sequence

import numpy as np

from PIL import Image

from jaxgen.data import load_image_folder, scan_image_folder
from jaxgen.metrics import suite
from jaxgen.runs import GENERATOR_KINDS, open_run

NAMES = {"fid": "FID", "kid": "KID", "kid_std": "KID std", "is": "IS", "is_std": "IS std",
         "precision": "Precision", "recall": "Recall", "ssim_nn": "SSIM (nearest real)",
         "psnr_nn": "PSNR dB (nearest real)"}


def markdown_table(results: Dict[str, Any], title: str) -> str:
    rows = [f"# {title}", "", "| metric | value |", "| --- | --- |"]
    for k, v in results.items():
        if isinstance(v, float) and k != "psi":
            suffix = "_" + str(results.get("feature_net"))
            base = k[: -len(suffix)] if k.endswith(suffix) else k
            name = NAMES.get(base, base)
            if base != k:
                name += f" [{results['feature_net']}]"
            rows.append(f"| {name} | {v:.6g} |")
    rows.append("")
    for k in ("num_fakes", "num_reals", "feature_net", "comparable_to_published", "source", "real"):
        if k in results:
            rows.append(f"- {k}: {results[k]}")
    if results.get("comparable_to_published") is False:
        rows.append("- NOTE: features from a fallback network; these numbers are NOT comparable "
                    "with published FID/KID/IS/precision/recall.")
    return "\n".join(rows) + "\n"


def run(checkpoint: str = "", fakes: str = "", real: str = "", metrics: Sequence[str] = suite.ALL_METRICS,
        num_fakes: int = 10000, psi: float = 1.0, seed: int = 0, inception_weights: str = "",
        feature_net: str = "", out: Optional[str] = None, best: bool = False,
        cache_dir: Optional[str] = "data/.metric_cache", channels: Optional[int] = None) -> Dict[str, Any]:
    """Compute the metrics and write metrics.json / metrics.md into `out`."""
    if bool(checkpoint) == bool(fakes):
        raise ValueError("give exactly one of --checkpoint (a generator) or --fakes (an image folder)")
    if not real:
        raise ValueError("--real <image folder> is required (the real data to compare against)")
    net = None
    if {"fid", "kid", "is", "pr"} & set(metrics):
        net = suite.make_feature_net(inception_weights, feature_net)
    if checkpoint:
        g = open_run(checkpoint, "best" if best else "latest", kinds=GENERATOR_KINDS)
        reals = load_image_folder(real, g.resolution, g.channels)
        k = g.num_classes
        if k and reals.num_classes != k:
            raise ValueError(f"the generator has {k} classes but {real} has {reals.num_classes}")
        probs = np.bincount(reals.labels, minlength=k) / len(reals.labels) if k else None
        sample = lambda z, labels: g.generate(z, labels, psi)  # noqa: E731
        fake_imgs = np.concatenate(list(suite.generator_batches(sample, g.z_dim, k, num_fakes, seed=seed,
                                                                label_probs=probs)))
        source = str(checkpoint)
    else:
        fk = load_image_folder(fakes, _folder_resolution(fakes), channels or 3)
        fake_imgs = fk.images[:num_fakes]
        reals = load_image_folder(real, fk.resolution, fk.channels)
        source = str(fakes)
    res = suite.compute_metrics(fake_imgs, reals.images, metrics, net, cache_dir)
    res.update(source=source, real=str(real), psi=psi, date=datetime.datetime.now().isoformat(timespec="seconds"))
    out_dir = pathlib.Path(out) if out else (pathlib.Path(checkpoint or fakes) / "eval")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(res, indent=2))
    md = markdown_table(res, f"Metrics of {pathlib.Path(source).name} vs {pathlib.Path(real).name}")
    (out_dir / "metrics.md").write_text(md)
    print(md)
    print(f"written: {out_dir / 'metrics.json'}, {out_dir / 'metrics.md'}")
    return res


def _folder_resolution(folder: str) -> int:
    """The size of the first image of a folder, rounded down to a power of two."""
    items, _ = scan_image_folder(folder)
    if not items:
        raise ValueError(f"no images in {folder}")
    with Image.open(items[0][0]) as im:
        side = min(im.size)
    return 1 << (max(side, 4).bit_length() - 1)
