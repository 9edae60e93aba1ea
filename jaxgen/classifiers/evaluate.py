"""Use a trained classifier: predict classes, and the papers' report on a labelled test folder.

`evaluate_classifier(workdir, test_path)` gives the synthetic-train / real-test
report (accuracy, per-class and macro precision/recall/F1, top-k, one-vs-rest AUC,
confusion matrix as JSON + PNG); `evaluate_classifiers` does it for several runs
and writes a comparison table. `predict(model, variables, images)` returns class
probabilities (used to sort generated faces in the hierarchical pipeline).
Runs are opened with `jaxgen.runs.open_run` (their best-validation checkpoint).

Reports go to the folder the caller names, or by default BESIDE the classifier's
workdir, never inside it (`runs/cls_real` tested on `data/demo_acne_test` ->
`runs/cls_real_eval_demo_acne_test`). An output folder must be new, empty or an
earlier report of this kind; it is checked before any model is loaded
(`jaxgen.utils.outputs`).
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.classifiers.metrics import classification_metrics
from jaxgen.classifiers.report import write_comparison, write_report
from jaxgen.data import load_image_folder
from jaxgen.errors import ConfigError
from jaxgen.runs import open_run
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import beside, check_output, claim_output, has_files

OUTPUT_KIND = "classifier-eval"


def default_report_dir(workdir: str, test_path: str) -> pathlib.Path:
    """Where a classifier's report goes without --out: beside its workdir, `<run>_eval_<test>`."""
    return beside(workdir, f"eval_{pathlib.Path(test_path).name}")


def _legacy_report(folder: pathlib.Path) -> bool:
    """True for a report folder written before the output marker (report.json or comparison.md)."""
    return has_files("report.json")(folder) or has_files("comparison.md")(folder)


def model_input(images_uint8: jnp.ndarray) -> jnp.ndarray:
    """uint8 images [N, H, W, C] -> float32 in [-1, 1], the range every registry model expects."""
    return images_uint8.astype(jnp.float32) / 255.0 * 2.0 - 1.0


def predict(model, variables, images_uint8: np.ndarray, batch: int = 64) -> np.ndarray:
    """Class probabilities [N, K] for uint8 images [N, H, W, C] (at the classifier's resolution)."""
    fn = jax.jit(lambda v, x: jax.nn.softmax(model.apply(v, model_input(x), train=False), -1))
    out = [np.asarray(fn(variables, images_uint8[i:i + batch])) for i in range(0, len(images_uint8), batch)]
    return np.concatenate(out) if out else np.zeros([0, 0], np.float32)


def evaluate_classifier(workdir: str, test_path: str, out_dir: Optional[str] = None,
                        title: str = "", claim: bool = True) -> Dict[str, Any]:
    """The papers' report of the best checkpoint on a test folder (e.g. real images).

    out_dir: default `default_report_dir` (beside the workdir). claim=False when the
    caller has claimed a folder above it (`evaluate_classifiers`).
    """
    out = pathlib.Path(out_dir) if out_dir else default_report_dir(workdir, test_path)
    if claim:
        check_output(out, OUTPUT_KIND, legacy=_legacy_report)
    run = open_run(workdir, kinds=("classifier",))
    names = list(run.class_names)
    test = load_image_folder(test_path, run.resolution, run.channels, require_labels=True)
    if list(test.class_names) != names:
        raise ConfigError(f"--test {test_path} has classes {list(test.class_names)}, the classifier "
                          f"{workdir} {names}; the test folder needs the same class sub-folders")
    probs = predict(run.model, run.variables, test.images)
    m = classification_metrics(test.labels, probs.argmax(-1), len(names), names, scores=probs)
    hist_file = pathlib.Path(workdir) / "history.json"
    history = json.loads(hist_file.read_text()) if hist_file.exists() else None
    if claim:
        claim_output(out, OUTPUT_KIND, legacy=_legacy_report)
    paths = write_report(out, m, names, title or f"{pathlib.Path(workdir).name} on "
                         f"{pathlib.Path(test_path).name}", history=history)
    return dict(metrics=m, paths={k: str(v) for k, v in paths.items()})


def evaluate_classifiers(workdirs: Sequence[str], test_path: str, out_dir: Optional[str] = None) -> Dict[str, Any]:
    """Evaluate several classifiers on one test folder; per-run reports + a comparison table.

    With out_dir: out_dir/<run name>/ per run and out_dir/comparison.md; without it,
    each report lies beside its run (no comparison table).
    """
    if not test_path:
        raise ConfigError("--test <labelled image folder> is required with --classifier")
    root = pathlib.Path(out_dir) if out_dir else None
    for w in workdirs:   # every output folder is checked before any model is loaded
        check_output(root if root else default_report_dir(w, test_path), OUTPUT_KIND,
                     legacy=_legacy_report)
    if root is not None:
        claim_output(root, OUTPUT_KIND, legacy=_legacy_report)
    reports = {}
    for w in workdirs:
        name = pathlib.Path(w).name
        res = evaluate_classifier(w, test_path, str(root / name) if root else None, claim=root is None)
        reports[name] = m = res["metrics"]
        logger.info(f"{name}: accuracy {m['accuracy']:.4f}  report {res['paths'].get('md', '')}")
    if len(reports) > 1 and root is not None:
        write_comparison(root, reports)
        logger.info((root / "comparison.md").read_text())
    return reports
