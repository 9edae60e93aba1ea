"""XGBoost on handcrafted features: train, evaluate, synthetic-train / real-test.

  python -m jaxgen xgb --train SYN_DIR --test REAL_DIR --resolution 64 --out reports/xgb

Trains on --train (e.g. synthetic faces), tests on --test (real ones, the same class names)
and prints accuracy, macro scores and the confusion matrix; --out (new, empty or an earlier
xgb report) receives report.json/.md and confusion_matrix.png. The features and the model:
jaxgen/features/xgb.py.
"""
from __future__ import annotations

import argparse
import json
import sys

from jaxgen.commands.common import command_parser, run_main
from jaxgen.features.handcrafted import FEATURES
from jaxgen.features.xgb import synthetic_to_real_xgb


def parser() -> argparse.ArgumentParser:
    """The train and test folders, the image size, the feature blocks, --out and the seed."""
    ap = command_parser("xgb", __doc__)
    ap.add_argument("--train", required=True, help="synthetic image folder (class sub-folders)")
    ap.add_argument("--test", required=True, help="real image folder (same class names)")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--features", default=",".join(FEATURES), help="comma-separated blocks")
    ap.add_argument("--out", default=None, help="folder for report.json/.md and the PNG")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv=None) -> int:
    """Train on --train, test on --test; print the headline metrics as JSON."""
    a = parser().parse_args(argv)
    rep = synthetic_to_real_xgb(a.train, a.test, a.resolution, a.channels,
                                tuple(a.features.split(",")), seed=a.seed, out_dir=a.out, claim=True)
    print(json.dumps({k: rep[k] for k in ("accuracy", "macro", "confusion_matrix")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
