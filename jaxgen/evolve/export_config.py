"""What an evolve export is asked for, and the settings that decide its images.

`ClassTask` (one class: scorer, inputs, target, identity references) and `ExportConfig` (how
many images, how they are drawn and checked) are what `jaxgen.evolve.export.evolve_dataset`
runs. `export_settings` / `config_settings` are what its marker stores and a resume compares
(`settings_diff` names the difference; `jaxgen.evolve.export_folder.refuse_changed` refuses it).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Dict, List, Optional

import jax
import numpy as np

from jaxgen.evolve.fitness import Inputs, Scorer
from jaxgen.evolve.ga import GAConfig

__all__ = ["ClassTask", "ExportConfig", "export_settings", "config_settings", "settings_diff"]


@dataclasses.dataclass
class ClassTask:
    """Everything the export needs for one class (built by ``jaxgen.evolve.tasks``)."""

    name: str
    scorer: Scorer
    inputs: Inputs                     # fitness inputs; the export sets the bank each round
    target: Optional[int]              # classifier index of this class (None: no classifier)
    generator: str                     # where G came from (for the metadata)
    ref_files: List[str]               # identity references, for nearest-face metadata
    identity_name: str = ""            # the identity embedder's name, for the metadata
    near_copy: Any = None              # identity.IdentityCheck of a pixel identity: the shift-tolerant
                                       # check (calibrated threshold) export applies instead of the term's


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """How many images per class, how they are drawn and checked (see the module doc)."""

    num_per_class: int = 16
    per_round: int = 4
    max_rounds: int = 0               # 0: 4 * ceil(num_per_class / per_round)
    psi: float = 0.7                  # truncation of each round's starting latent
    seed: int = 0
    require_class: bool = True
    min_diversity: float = 0.05
    bank_size: int = 1024

    @property
    def rounds(self) -> int:
        """The most rounds per class."""
        return self.max_rounds or 4 * math.ceil(self.num_per_class / self.per_round)


def settings_diff(stored: Any, now: Any, key: str = "") -> List[str]:
    """'key: old -> new' of every leaf where two settings dicts differ (keys joined by dots)."""
    if isinstance(stored, dict) and isinstance(now, dict):
        return [d for k in sorted(set(stored) | set(now), key=str)
                for d in settings_diff(stored.get(k), now.get(k), f"{key}.{k}" if key else str(k))]
    return [] if stored == now else [f"{key}: {stored!r} -> {now!r}"]


def _sha256(tree: Any, cache: Dict[int, str]) -> Optional[str]:
    """A SHA-256 (20 hex digits) of a pytree of arrays (model weights); cached by the tree's id."""
    if id(tree) not in cache:
        leaves = jax.tree_util.tree_leaves(tree)
        h = hashlib.sha256()
        for leaf in leaves:
            a = np.ascontiguousarray(np.asarray(leaf))
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        cache[id(tree)] = h.hexdigest()[:20] if leaves else None
    return cache[id(tree)]


def export_settings(tasks: List[ClassTask], ga_cfg: GAConfig, cfg: ExportConfig) -> Dict[str, Any]:
    """What decides an export's images, compared when it is resumed: the GA, the export settings
    but how many images (num_per_class, max_rounds: a rerun may ask for more), and per class the
    generator (path, SHA-256 of its weights and of the term models'), the fitness terms, the
    target class, the identity references and the near-copy threshold in use."""
    cache: Dict[int, str] = {}
    export = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("num_per_class", "max_rounds")}
    classes = {t.name: dict(generator=t.generator, weights=_sha256(t.inputs.g_vars, cache),
                            term_models={k: _sha256(v, cache) for k, v in sorted(t.inputs.term_vars.items())},
                            terms=[term.describe() for term in t.scorer.terms], target=t.target,
                            references=len(t.ref_files), identity=t.identity_name,
                            threshold=None if t.near_copy is None else round(float(t.near_copy.threshold), 4))
               for t in tasks}
    return dict(ga=dataclasses.asdict(ga_cfg), export=export, classes=classes)


def config_settings(config: Dict[str, Any]) -> Dict[str, Any]:
    """evolve.py's config (a dict) as an export compares it: without where it writes, how it is
    distributed and how many images it asks for (a rerun may ask for more of the same)."""
    return {k: v for k, v in config.items() if k not in ("out", "distributed", "num_per_class", "max_rounds")}
