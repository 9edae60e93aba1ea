"""--label_by: an export whose candidates a classifier of the real faces labels (the acne paper's
sorting step).

`LabelRule` (`label_rule` of the flags) says which candidates a class keeps: 'top' (the most
confident, above --min_conf) or 'threshold' (the first above --min_conf, in stream order), from a
pool of --pool_multiple x the wanted images. `Teacher` is the classifier: uint8 images [N, H, W, C]
-> softmax [N, K]; `qualifying` ranks a pool's candidates for one class. The export loop that draws
the pools and writes the kept images: `jaxgen.workflows.generate_writers`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.classifiers.sorting import to_classifier_input
from jaxgen.errors import ConfigError
from jaxgen.runs import Run


@dataclasses.dataclass(frozen=True)
class LabelRule:
    """How --label_by keeps candidates: 'top' or 'threshold', the confidence floor, the pool size
    (pool_multiple x num_per_class x K unconditional, x num_per_class per class conditional)."""

    keep: str
    min_conf: float
    pool_multiple: float
    allow_short: bool


def label_rule(label_by: str, keep: Optional[str], min_conf: Optional[float], pool_multiple: Optional[float],
               allow_short: bool) -> Optional[LabelRule]:
    """The LabelRule of the flags (defaults filled in), None without --label_by; one-line errors."""
    if not label_by:
        given = [f for f, v in (("--keep", keep), ("--min_conf", min_conf), ("--pool_multiple", pool_multiple),
                                ("--allow_short", allow_short or None)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --label_by CLASSIFIER_RUN (they pick labelled "
                              "candidates)")
        return None
    keep = keep or "top"
    if keep not in ("top", "threshold"):
        raise ConfigError(f"--keep={keep!r}: use 'top' (most confident per class) or 'threshold' (--min_conf)")
    min_conf = (0.5 if keep == "threshold" else 0.0) if min_conf is None else float(min_conf)
    if not 0.0 <= min_conf <= 1.0:
        raise ConfigError(f"--min_conf={min_conf:g}: a probability in [0, 1]")
    pool_multiple = 4.0 if pool_multiple is None else float(pool_multiple)
    if pool_multiple < 1:
        raise ConfigError(f"--pool_multiple={pool_multiple:g}: give at least 1 (candidates per wanted image)")
    return LabelRule(keep, min_conf, pool_multiple, bool(allow_short))


def rule_setting(rule: Optional[LabelRule]) -> Optional[Dict[str, Any]]:
    """The label rule as stored with the export's settings: --allow_short left out (it changes
    no image, so a rerun may add it)."""
    return None if rule is None else {k: v for k, v in dataclasses.asdict(rule).items() if k != "allow_short"}


class Teacher:
    """The classifier run of --label_by: softmax probabilities of uint8 images.

    probs(images uint8 [N, H, W, C]) -> float32 [N, K], K in the order of the run's class_names
    (= the export's classes). Images are mapped to the classifier's resolution and channels by
    `to_classifier_input`; batches are zero-padded to `batch` rows so one compilation serves all.
    """

    def __init__(self, run: Run, batch: int):
        self.run, self.path, self.names, self.batch = run, str(run.path), list(run.class_names), int(batch)
        model, res, ch = run.model, run.resolution, run.channels
        self._fn = jax.jit(lambda v, x: jax.nn.softmax(model.apply(
            v, to_classifier_input(x.astype(jnp.float32) / 127.5 - 1.0, res, ch), train=False), -1))

    def probs(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, C] -> float32 [N, K] softmax, `batch` rows at a time."""
        out = [np.zeros((0, len(self.names)), np.float32)]
        for s in range(0, len(images), self.batch):
            x = np.asarray(images[s:s + self.batch])
            n = len(x)
            if n < self.batch:
                x = np.concatenate([x, np.zeros((self.batch - n,) + x.shape[1:], x.dtype)])
            out.append(np.asarray(self._fn(self.run.variables, x), np.float32)[:n])
        return np.concatenate(out)


def qualifying(probs: np.ndarray, k: int, rule: LabelRule) -> np.ndarray:
    """Candidate ids (rows of probs [P, K]) that may be kept for class k, in the order they are
    tried: argmax k and p_k >= min_conf; 'top' by p_k, highest first (ties: lower id), 'threshold'
    in stream order."""
    ok = np.flatnonzero((probs.argmax(-1) == k) & (probs[:, k] >= rule.min_conf))
    return ok[np.argsort(-probs[ok, k], kind="stable")] if rule.keep == "top" else ok


def short_message(name: str, found: int, drawn: int, want: int, rule: LabelRule, refused: int = -1) -> str:
    """The one-line error of a class the pool cannot fill (refused >= 0: after the identity check)."""
    check = "" if refused < 0 else f" and passed the identity check ({refused} near-copies refused)"
    return (f"generate: {name}: only {found} of {drawn} candidates were put in {name} by the classifier "
            f"with confidence >= {rule.min_conf:g}{check}, {want} wanted: raise "
            f"--pool_multiple (now {rule.pool_multiple:g}), lower --min_conf or train the generator more; "
            "--allow_short writes what was found")
