"""FID during training: G_ema is scored every N ticks and plotted; the harness keeps best/.

The feature network is set up once at the start of a run (so a missing Inception
weights file stops the run immediately, with instructions, not hours later);
real-image features are computed once and cached on disk. fid.jsonl holds one
row per evaluation; a resumed run drops the rows after its checkpoint first
(`drop_after`), as the harness does with metrics.jsonl.
"""
from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Dict, Optional

import jax
import numpy as np

from jaxgen.harness.logs import keep_rows, read_rows
from jaxgen.metrics import suite
from jaxgen.utils.labels import one_hot_labels


class FIDTracker:
    """FID/KID of G_ema every `metrics_cfg.every_ticks` ticks (0: off) into workdir/fid.jsonl."""

    def __init__(self, metrics_cfg: Any, G, real_images: np.ndarray, workdir: pathlib.Path,
                 label_probs: Optional[np.ndarray], write: bool = True):
        self.every = int(metrics_cfg.every_ticks)
        self.num_fakes = int(metrics_cfg.num_fakes)
        self.G, self.reals, self.workdir, self.label_probs = G, real_images, workdir, label_probs
        self.write = write  # False on all but the first host (all hosts compute, one writes)
        self.cache_dir = metrics_cfg.cache_dir or None
        self.net = None
        if self.every > 0:
            if not (metrics_cfg.inception_weights or metrics_cfg.feature_net):
                raise ValueError(
                    "config.metrics.every_ticks > 0 computes FID during training, which needs "
                    "--config.metrics.inception_weights=<path to pt_inception-2015-12-05-6726825d.pth> "
                    "(the standard FID weights), or a fallback feature network such as "
                    "--config.metrics.feature_net=random_inception (not comparable to published FID), "
                    "or --config.metrics.every_ticks=0 to turn FID off")
            self.net = suite.make_feature_net(metrics_cfg.inception_weights, metrics_cfg.feature_net)
        self.key = "fid" if (self.net is None or self.net.comparable) else f"fid_{self.net.name}"
        self.history_path = workdir / "fid.jsonl"
        self._gen = jax.jit(lambda v, z, c: G.apply(v, z, c, noise_mode="const"))

    def due(self, tick: int, done: bool) -> bool:
        return self.every > 0 and (done or tick % self.every == 0)

    def drop_after(self, step: int) -> None:
        """Remove the rows of evaluations after train step `step` (a resumed run redoes them)."""
        keep_rows(self.history_path, "step", step, self.write)

    def evaluate(self, ema_vars: Dict, kimg: float, step: int) -> Dict[str, float]:
        """FID and KID of G_ema; appends to fid.jsonl and redraws fid.png."""
        t0 = time.time()
        k = int(self.G.c_dim)

        def sample(z, labels):
            return self._gen(ema_vars, z, one_hot_labels(labels, k))
        fakes = np.concatenate(list(suite.generator_batches(
            sample, int(self.G.z_dim), k, self.num_fakes, seed=123, label_probs=self.label_probs)))
        res = suite.compute_metrics(fakes, self.reals, ("fid", "kid"), self.net, self.cache_dir)
        out = {k: float(v) for k, v in res.items() if k.startswith(("fid", "kid"))}
        row = dict(kimg=kimg, step=step, seconds=time.time() - t0, **out)
        if self.write:
            with open(self.history_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            self.plot()
        return out

    def plot(self) -> pathlib.Path:
        """fid.png: the tracked FID over kimg."""
        from matplotlib.figure import Figure  # heavy optional dependency: only when plotting
        rows = read_rows(self.history_path)
        fig = Figure(figsize=(6, 4), dpi=100)
        ax = fig.subplots()
        ax.plot([r["kimg"] for r in rows], [r[self.key] for r in rows], "o-")
        ax.set_xlabel("kimg")
        label = "FID" if self.key == "fid" else f"FID ({self.net.name}; not comparable to published FID)"
        ax.set_ylabel(label if len(label) < 30 else "FID*")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.workdir / "fid.png"
        fig.savefig(path)
        return path
