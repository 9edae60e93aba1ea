"""Throw-away (issue 27 lever): an ensemble teacher (3 real-trained seeds) labelling the 36-kimg
labelled generator's samples, keep top vs threshold; students at 1x/4x, 3 seeds each."""
import sys, json, numpy as np
sys.path.insert(0, "/work/main")
from jaxgen.commands.common import use_compile_cache
use_compile_cache()
import jaxgen.workflows.generate as G
from jaxgen.classifiers.utility import run_utility

SEEDS = [f"/work/main/runs/utility_labelled/utility/runs/real/seed{s}" for s in range(3)]
_orig = G.open_teacher

class Ens:
    def __init__(self, ts):
        self.ts = ts; t = ts[0]
        self.run, self.path, self.names, self.batch = t.run, t.path, t.names, t.batch
    def probs(self, x):
        return np.mean([t.probs(x) for t in self.ts], 0)

def open_ens(label_by, g, ck, cn, batch):
    return Ens([_orig(p, g, ck, cn, batch) for p in SEEDS])

variant = sys.argv[1]
single = len(sys.argv) > 2 and sys.argv[2] == "single"
if not single:
    G.open_teacher = open_ens
else:
    SEEDS[0] = "/work/main/runs/utility_labelled/cls_real"
keep, mc = (("top", None) if variant == "top" else ("threshold", float(variant)))
out = f"/work/main/runs/study27/{'single' if single else 'ens'}_{variant}"
G.export_dataset("/work/main/runs/utility_labelled/snapshots/kimg36", out, 512, seed=0,
                 real="data/demo_acne", holdout="data/demo_acne_test", identity="pixel", datasheet=False,
                 label_by=SEEDS[0], keep=keep, min_conf=mc, pool_multiple=8.0)
r = run_utility("data/demo_acne", out, "data/demo_acne_test", "configs/acne_classifier.py:tiny",
                out + "_utility", seeds=3, multiples=(1, 4), arms=("real", "synthetic"))
print("RESULT", variant, json.dumps({a: v["accuracy"]["mean"] for a, v in r["arms"].items()}),
      json.dumps({a: g["mean"] for a, g in r["gaps"].items()}))
