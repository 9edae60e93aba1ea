"""The evolve command's work: config -> per-class tasks -> GA rounds -> exported dataset.

`run_evolve` is what the evolve command (evolve.py, jaxgen/commands/evolve.py) and the
pipeline's evolve stage run; the pieces are jaxgen/evolve/: `tasks` builds the per-class
fitness tasks, `export` runs the GA rounds and writes the images, `export_folder` guards the
output folder.
"""
from __future__ import annotations

import pathlib
import time
from typing import Any

import jax

from jaxgen.evolve.export import evolve_dataset
from jaxgen.evolve.export_config import config_settings
from jaxgen.evolve.export_folder import check_export_folder, refuse_changed
from jaxgen.evolve.tasks import build_tasks
from jaxgen.utils.logger import logger


def run_evolve(config: Any, out: str, rebuild: bool = False) -> dict:
    """Build the fitness tasks from the evolve config and export to `out` (resumable).

    config: an evolve config (``jaxgen.config.evolve`` and configs/evolve_*.py); with
    ``config.distributed`` every host of a multi-host job calls this (jax.distributed).
    Returns the summary written to ``<out>/evolve.json``. `out` is checked first,
    before any model is built: a folder of the user's own files (anything but a
    new or empty folder or an earlier export) is refused with an OutputError, and so is an earlier
    export made with another config (its marker's settings), unless `rebuild` (evolve.py
    --rebuild): then that export's images are replaced.
    """
    t0 = time.time()
    check_export_folder(out)
    config_now = config_settings(config.to_dict())
    if not rebuild:   # before any model is built; the models' fingerprints are compared once they are
        refuse_changed(pathlib.Path(out), dict(config=config_now))
    if config.get("distributed", False):
        jax.distributed.initialize()
    tasks, ga_cfg, exp_cfg, settings = build_tasks(config)
    logger.info(f"evolve: {len(tasks)} classes x {exp_cfg.num_per_class} images; {ga_cfg.strategy} "
                f"pop {ga_cfg.popsize} x {ga_cfg.generations} generations, crossover {ga_cfg.crossover}; "
                f"terms {list(tasks[0].scorer.names)}")
    summary = evolve_dataset(tasks, ga_cfg, exp_cfg, out, settings, rebuild=rebuild, config=config_now)
    logger.info(f"evolve: done in {time.time() - t0:.0f}s: " + ", ".join(
        f"{k} {v['exported']}" for k, v in summary["classes"].items()) + f" images in {out}")
    return summary
