"""`make demo`: train the tiny StyleGAN2-ADA on the embedded demo faces, then show how well it
renders the classes, as a classifier trained on the real demo faces sees them.

  python -m jaxgen.workflows.demo --workdir runs/demo [--set train.total_kimg=4]

Steps (each resumes; a finished one is skipped):

  gan         configs/acne.py:tiny on the demo faces                       <workdir>/gan/
  classifier  configs/acne_classifier.py:tiny on the same real faces       <workdir>/classifier/
  fidelity    64 faces per class from the GAN's EMA generator, classified:
              the share put in the intended class (chance: 1/4)            <workdir>/fidelity.json,
                                                                            fidelity.md, samples.png

The last sample grid of the GAN is <workdir>/gan/samples/fakes_*.png; samples.png
shows 8 generated faces per class with that class's fidelity in the row label.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any, Dict, Sequence

import numpy as np

from jaxgen.classifiers.sorting import class_fidelity
from jaxgen.classifiers.train import train_classifier
from jaxgen.cli import run_main, use_compile_cache
from jaxgen.config import load_config
from jaxgen.runs import open_run
from jaxgen.stylegan2.train import train_and_evaluate
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.images import save_grid
from jaxgen.utils.outputs import check_output, claim_output

OUTPUT_KIND = "demo"
REPO = pathlib.Path(__file__).resolve().parents[2]
GAN, CLASSIFIER = f"{REPO}/configs/acne.py:tiny", f"{REPO}/configs/acne_classifier.py:tiny"


def fidelity_table(fid: Dict[str, Any]) -> str:
    """Markdown: per class, the share of generated faces the classifier puts in it, and its votes."""
    names = list(fid["per_class"])
    lines = ["| generated as | classified as intended | mean confidence | " + " | ".join(names) + " |",
             "| --- | ---: | ---: |" + " ---: |" * len(names)]
    for n, r in fid["per_class"].items():
        votes = " | ".join(str(r["predicted"].get(m, 0)) for m in names)
        lines.append(f"| {n} | {r['accuracy']:.3f} | {r['mean_conf']:.3f} | {votes} |")
    lines.append(f"| **mean** | **{fid['accuracy']:.3f}** (chance {fid['chance']:.3f}) | | " + " | " * (len(names) - 1) + "|")
    return "\n".join(lines) + "\n"


def _samples(gen, fid: Dict[str, Any], path: pathlib.Path, cols: int = 8) -> None:
    """samples.png: `cols` generated faces per class (latents of seed 7), labelled with fidelity."""
    rows, labels = [], []
    for ci, name in enumerate(gen.class_names):
        z = np.random.default_rng([7, ci]).standard_normal((cols, gen.z_dim)).astype(np.float32)
        rows.append(gen.generate(z, np.full(cols, ci)))
        labels.append(f"{name} {fid['per_class'][name]['accuracy']:.0%}")
    save_grid(np.concatenate(rows), path, cols=cols, row_labels=labels)


def run_demo(workdir: str, overrides: Sequence[str] = (), log=print, gan: str = GAN,
             classifier: str = CLASSIFIER, classifier_overrides: Sequence[str] = (),
             num_per_class: int = 64) -> Dict[str, Any]:
    """The three steps of the module docstring (config specs overridable for tests); returns
    the fidelity dict."""
    gan_cfg = load_config(gan, overrides)
    cls_cfg = load_config(classifier, classifier_overrides)
    for k in ("source", "path", "resolution", "num_per_class", "seed", "demo_version"):
        cls_cfg.data[k] = gan_cfg.data[k]      # the classifier learns the GAN's real faces
    w = check_output(workdir, OUTPUT_KIND, "--workdir")
    claim_output(w, OUTPUT_KIND, "--workdir")
    train_and_evaluate(gan_cfg, str(w / "gan"))        # both resume, or return when done
    train_classifier(cls_cfg, str(w / "classifier"))
    gen, clf = open_run(str(w / "gan"), kinds=("stylegan2",)), open_run(str(w / "classifier"), kinds=("classifier",))
    fid = class_fidelity(gen, clf, num_per_class=num_per_class, seed=int(gan_cfg.seed))
    write_text_atomic(w / "fidelity.json", json.dumps(fid, indent=1))
    table = fidelity_table(fid)
    write_text_atomic(w / "fidelity.md", "# Class fidelity of the demo GAN\n\nFaces generated per class, "
                      "classified by a classifier trained on the real demo faces.\n\n" + table)
    _samples(gen, fid, w / "samples.png")
    log("demo: how the classifier trained on the real demo faces sees the GAN's faces:\n" + table)
    log(f"demo: sample grid {w / 'samples.png'}; training grids in {w / 'gan' / 'samples'}")
    return fid


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a GAN config value, e.g. --set train.total_kimg=4 (repeatable)")
    a = p.parse_args(argv)
    use_compile_cache()
    run_demo(a.workdir, a.set)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
