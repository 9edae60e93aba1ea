"""`evaluate.py`: score a generator checkpoint (or a folder of images) against real data.

  python evaluate.py fid --checkpoint runs/acne --real data/acne \
      --inception_weights weights/pt_inception-2015-12-05-6726825d.pth
  python evaluate.py fid --fakes out/synthetic --real data/acne --metrics fid,kid,pr \
      --feature_net random_inception        # no Inception weights: labelled fallback

--checkpoint takes any generator run `jaxgen.runs.open_run` opens: a StyleGAN2 or
DCGAN training workdir (its latest checkpoint; --best for the best-FID one), a
networks directory (pkl_to_orbax output) or an official NVIDIA .pkl.
Writes <out>/metrics.json and <out>/metrics.md (a table), and prints the table.
--out defaults to a folder BESIDE the model or image folder, never inside it
(`runs/acne_tiny` -> `runs/acne_tiny_eval`, `out/synthetic` -> `out/synthetic_eval`);
it must be new, empty or an earlier evaluate output, and is checked before
anything is loaded (`jaxgen.utils.outputs`). Generating the fakes and extracting
features print progress lines (count/total, rate, ETA) every 10 s.
"""
from __future__ import annotations

import datetime
import json
import pathlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from PIL import Image

from jaxgen.data import load_image_folder, scan_image_folder
from jaxgen.errors import ConfigError
from jaxgen.metrics import suite
from jaxgen.runs import GENERATOR_KINDS, open_run
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import beside, check_output, claim_output, has_files
from jaxgen.utils.progress import Progress

OUTPUT_KIND = "evaluate"
NAMES = {"fid": "FID", "kid": "KID", "kid_std": "KID std", "is": "IS", "is_std": "IS std",
         "precision": "Precision", "recall": "Recall", "ssim_nn": "SSIM (nearest real)",
         "psnr_nn": "PSNR dB (nearest real)"}


def markdown_table(results: Dict[str, Any], title: str) -> str:
    """The results as a markdown table of metrics, then the settings and a note on fallbacks."""
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


def default_out(checkpoint: str = "", fakes: str = "") -> pathlib.Path:
    """Where results go without --out: beside the model (or fakes folder), `<name>_eval`."""
    return beside(checkpoint or fakes, "eval")


def run(checkpoint: str = "", fakes: str = "", real: str = "", metrics: Sequence[str] = suite.ALL_METRICS,
        num_fakes: int = 10000, psi: float = 1.0, seed: int = 0, inception_weights: str = "",
        feature_net: str = "", out: Optional[str] = None, best: bool = False,
        cache_dir: Optional[str] = "data/.metric_cache", channels: Optional[int] = None,
        progress_every: float = 10.0) -> Dict[str, Any]:
    """Compute the metrics and write metrics.json / metrics.md into `out` (default: beside the model)."""
    if bool(checkpoint) == bool(fakes):
        raise ConfigError("give exactly one of --checkpoint (a generator) or --fakes (an image folder)")
    if not real:
        raise ConfigError("--real <image folder> is required (the real data to compare against)")
    if int(num_fakes) < 1:
        raise ConfigError(f"--num_fakes={num_fakes}: give at least 1 generated image to score")
    out_dir = check_output(out or default_out(checkpoint, fakes), OUTPUT_KIND,
                           legacy=has_files("metrics.json"))   # before anything heavy
    net = None
    if {"fid", "kid", "is", "pr"} & set(metrics):
        net = suite.make_feature_net(inception_weights, feature_net)
    if checkpoint:
        fake_imgs, reals = _generated(checkpoint, real, num_fakes, psi, seed, best, progress_every)
    else:
        fk = load_image_folder(fakes, _folder_resolution(fakes), channels or 3)
        fake_imgs = fk.images[:num_fakes]
        reals = load_image_folder(real, fk.resolution, fk.channels)
    if net is not None:
        net = _counting(net, [("fakes", len(fake_imgs)), ("reals", len(reals.images))], progress_every)
    res = suite.compute_metrics(fake_imgs, reals.images, metrics, net, cache_dir)
    source = str(checkpoint or fakes)
    res.update(source=source, real=str(real), psi=psi, date=datetime.datetime.now().isoformat(timespec="seconds"))
    _write(out_dir, res, f"Metrics of {pathlib.Path(source).name} vs {pathlib.Path(real).name}")
    return res


def _generated(checkpoint: str, real: str, num_fakes: int, psi: float, seed: int, best: bool,
               progress_every: float) -> Tuple[np.ndarray, Any]:
    """(uint8 fakes [num_fakes, R, R, C] of the generator, the reals at its size), with progress."""
    g = open_run(checkpoint, "best" if best else "latest", kinds=GENERATOR_KINDS)
    reals = load_image_folder(real, g.resolution, g.channels)
    k = g.num_classes
    if k and reals.num_classes != k:
        raise ConfigError(f"the generator {checkpoint} has {k} classes but --real {real} has "
                          f"{reals.num_classes}; give the real folder it was trained on")
    probs = np.bincount(reals.labels, minlength=k) / len(reals.labels) if k else None
    sample = lambda z, labels: g.generate(z, labels, psi)  # noqa: E731
    bar = Progress(num_fakes, "evaluate: generating fakes", every=progress_every)
    batches = suite.generator_batches(sample, g.z_dim, k, num_fakes, seed=seed, label_probs=probs)
    return np.concatenate(list(bar.iterate(batches, size=len))), reals


class _Counted:
    """A FeatureNet fn that counts the images it embeds: one Progress per phase, in order.

    compute_metrics embeds the fakes, then the reals (skipped when cached), so the
    phases are ('fakes', N) then ('reals', M); a phase's Progress starts at its first batch.
    """

    def __init__(self, fn, phases: List[Tuple[str, int]], every: float):
        self.fn, self.phases, self.every = fn, list(phases), every
        self.bar: Optional[Progress] = None

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        if self.bar is None and self.phases:
            what, total = self.phases.pop(0)
            self.bar = Progress(total, f"evaluate: features of {what}", every=self.every)
        out = self.fn(images)
        if self.bar is not None:
            self.bar.update(len(images))
            if self.bar.done >= self.bar.total:
                self.bar = None
        return out


def _counting(net: suite.FeatureNet, phases: List[Tuple[str, int]], every: float) -> suite.FeatureNet:
    """`net` with progress lines while it embeds (the same name, so the same caches)."""
    return suite.FeatureNet(net.name, net.comparable, _Counted(net.fn, phases, every))


def _write(out_dir: pathlib.Path, res: Dict[str, Any], title: str) -> None:
    """metrics.json and metrics.md into the (claimed) output folder; the table logged (a command's stdout)."""
    claim_output(out_dir, OUTPUT_KIND, legacy=has_files("metrics.json"))
    write_text_atomic(out_dir / "metrics.json", json.dumps(res, indent=2))
    md = markdown_table(res, title)
    write_text_atomic(out_dir / "metrics.md", md)
    logger.info(md)
    logger.info(f"written: {out_dir / 'metrics.json'}, {out_dir / 'metrics.md'}")


def _folder_resolution(folder: str) -> int:
    """The size of the first image of a folder, rounded down to a power of two."""
    items, _ = scan_image_folder(folder)
    if not items:
        raise ConfigError(f"no images in --fakes {folder}")
    with Image.open(items[0][0]) as im:
        side = min(im.size)
    return 1 << (max(side, 4).bit_length() - 1)
