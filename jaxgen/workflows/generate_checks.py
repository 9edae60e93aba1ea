"""What a generator export is checked and described against: its real training faces (every
candidate is compared with them by an identity model and refused when it is a near-copy), the
held-out real faces of its datasheet, and the classes it writes.

`prepare_checks` loads and embeds them once per export (the pixel check's threshold calibrated on
the training faces unless given); `pick_classes` maps --classes to the generator's class indices.
Used by `jaxgen.workflows.generate.export_dataset`; one-line errors name the flag to fix.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

from jaxgen.data import load_dataset, load_image_folder
from jaxgen.data.demo_faces import write_demo_holdout
from jaxgen.data.folder import ImageDataset
from jaxgen.errors import ConfigError
from jaxgen.identity.search import IdentityCheck, make_embedder
from jaxgen.runs import Run
from jaxgen.utils.logger import logger

DRAWN = ("demo", "depth_demo")   # the embedded drawn faces: dlib cannot tell them apart


@dataclasses.dataclass
class Checks:
    """What every export is checked and described against (see `prepare_checks`)."""

    train: ImageDataset                 # the generator's real training faces
    holdout: Optional[ImageDataset]     # real faces it never saw (None: no datasheet)
    identity: IdentityCheck             # train embedded once
    source: str                         # where train came from, for the records


def _run_data(g: Run) -> Optional[Dict[str, Any]]:
    """The `data` section of the run's config.json (None: no readable one, e.g. an NVIDIA .pkl)."""
    try:
        data = json.loads((pathlib.Path(g.path) / "config.json").read_text()).get("data")
    except (OSError, ValueError, AttributeError):
        return None
    return data if isinstance(data, dict) and data.get("source") in ("folder",) + DRAWN else None


def _training_faces(g: Run, checkpoint: str, real: str, data: Optional[dict]) -> Tuple[ImageDataset, str]:
    """The generator's real training faces at its resolution: --real, else its config's data."""
    if real:
        if not pathlib.Path(real).is_dir():
            raise ConfigError(f"--real {real}: not a folder; give the generator's training images "
                              "(class sub-folders)")
        return load_image_folder(real, g.resolution, g.channels, cache_dir=None), real
    if data is None:
        raise ConfigError(f"--real: {checkpoint} does not say which faces it was trained on; give "
                          "--real <folder of its training images>: every export is checked against them")
    return load_dataset(data), str(data["path"])


def _holdout_faces(g: Run, holdout: str, data: Optional[dict], names: Sequence[str]) -> ImageDataset:
    """Held-out real faces for the datasheet: --holdout, else a demo run's `_test` render."""
    if not holdout:
        if data is None or data.get("source") != "demo":
            raise ConfigError("--holdout: give held-out real faces the generator never saw (class "
                              "sub-folders) for the export's datasheet, or --no_datasheet to skip it")
        holdout = write_demo_holdout(data, names)
    elif not pathlib.Path(holdout).is_dir():
        raise ConfigError(f"--holdout {holdout}: not a folder; give held-out real images (class sub-folders)")
    return load_image_folder(holdout, g.resolution, g.channels, cache_dir=None)


def prepare_checks(g: Run, checkpoint: str, picked: Sequence[str], real: str = "", holdout: str = "",
                   identity: str = "auto", threshold: float = -1.0, datasheet: bool = True,
                   percentile: float = 1.0) -> Checks:
    """Load and embed what the export is checked against (the pixel check's threshold calibrated
    on the training faces unless --identity_threshold gives it); one-line errors name the flag."""
    data = _run_data(g)
    train, source = _training_faces(g, checkpoint, real, data)
    unconditional = list(picked) == ["all"]     # one class: compared with every real face
    missing = [] if unconditional else [n for n in picked if n not in train.class_names]
    if missing:
        raise ConfigError(f"--real {source} has no class {', '.join(map(repr, missing))} of the generator "
                          f"(it has {', '.join(train.class_names)}); give the folder it was trained on")
    hold = _holdout_faces(g, holdout, data, train.class_names) if datasheet else None
    if identity == "auto":
        identity = "pixel" if not real and data is not None and data["source"] in DRAWN else "dlib"
    if identity not in ("dlib", "pixel"):
        raise ConfigError(f"--identity={identity!r}: use 'auto', 'dlib' or 'pixel' (every export is checked)")
    embedder = make_embedder(identity, threshold, percentile=percentile)
    try:
        check = IdentityCheck(embedder, train.images, train.paths).require()
    except ValueError as e:
        raise ConfigError(f"--real {source}: {e}") from None
    logger.info(f"generate: identity check against {len(train)} real faces from {source} with {check.name} "
                f"(threshold {check.threshold:g}{_calibration_note(check)})" + (
                    "; the pixel check is NOT an identity model, it finds near-copies only"
                    if identity == "pixel" else ""))
    return Checks(train, hold, check, source)


def _calibration_note(check: IdentityCheck) -> str:
    """', calibrated: ...' for the log line of a calibrated threshold ('' otherwise)."""
    c = check.calibration
    if not c or c.get("method") != "calibrated":
        return "" if not c else f", {c['method']}"
    return (f", calibrated: percentile {c['percentile']:g} of {c['sample']} training faces' distances to "
            f"their nearest other one, {c['quantiles']['p1']:.3f}/{c['quantiles']['p50']:.3f} at 1%/50%, "
            f"{c['share_within_fixed']:.0%} within the fixed {c['cap']:g}")


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
