"""The utility benchmark on the demo, end to end: a generator method, then synthetic-train / real-test.

  python bench/utility.py --workdir runs/utility_demo --record                   # hierarchical pipeline
  python bench/utility.py --method labelled --workdir runs/utility_labelled --curve 0.25,0.5 \
      --synthetic_multiple 1,4,16 --teacher_arm --record

1. --method pipeline: `jaxgen.workflows.pipeline` (the acne paper's hierarchy: base,
   sorter, per-class fine-tunes, GA) on the embedded demo faces with the given configs
   (default: the :tiny ones; resumes when --workdir holds a pipeline run);
   --method labelled: `jaxgen.workflows.labelled` (an unconditional GAN whose samples the
   real-trained sorter labels, exported at the largest --synthetic_multiple), with
   generator snapshots at the --curve fractions of its kimg;
2. `jaxgen.classifiers.utility.run_utility`: the same classifier config trained on the
   real training faces, on the exported synthetic dataset (same count per class; with
   --synthetic_multiple 1,4,16 also on 4x and 16x that count), with --teacher_arm on the
   1x synthetic faces labelled by the export's teacher classifier, and on both real and
   1x synthetic, --seeds seeds each, tested on the held-out real demo faces (rendered
   with another seed; never seen by the GAN, the sorter or the GA).

Writes <workdir>/utility/ (utility.json, utility.md, the PNGs) and, with --record,
bench/results/utility_demo.json (real_train_acc, synthetic_train_acc (1x),
best_synthetic_train_acc, best_multiple, real_plus_synthetic_acc, gap (1x), best_gap,
minutes, command, curve ({kimg: 1x gap}, --method labelled with --curve: the snapshots
are exported at 1x and trained on, and utility_curve.png/json are written into
<workdir>/utility_curve/), the gaps and intervals) plus the
table appended to bench/RESULTS.md. `minutes` is the wall time of both stages in this
invocation (a resumed run counts only what it did now; the pipeline's own step
times are in <workdir>/.<step>.done).
"""
import argparse
import datetime
import json
import pathlib
import platform
import shlex
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxgen.classifiers.utility import parse_multiples, run_curve, run_utility  # noqa: E402
from jaxgen.classifiers.utility_arms import TEACHER_ARM  # noqa: E402
from jaxgen.commands.common import run_main, use_compile_cache  # noqa: E402
from jaxgen.commands.pipeline import add_override_flags  # noqa: E402
from jaxgen.workflows.labelled import parse_fractions, run_labelled  # noqa: E402
from jaxgen.workflows.pipeline import DEFAULTS, Configs, run_pipeline  # noqa: E402


def record(result: dict, workdir: pathlib.Path, command: str, minutes: float, curve=None) -> pathlib.Path:
    """bench/results/utility_demo.json and the table appended to bench/RESULTS.md.

    curve: {kimg: gap} of generator snapshots (default: the result's 'curve', if any)."""
    arms = result["arms"]
    out = dict(real_train_acc=arms["real"]["accuracy"]["mean"],
               synthetic_train_acc=arms["synthetic"]["accuracy"]["mean"],
               best_synthetic_train_acc=result["best_synthetic_train_acc"]["mean"],
               best_multiple=result["best_multiple"],
               real_plus_synthetic_acc=arms["real+synthetic"]["accuracy"]["mean"],
               gap=result["gap"]["mean"], best_gap=result["best_gap"]["mean"], minutes=round(minutes, 1),
               command=command, multiples=result.get("multiples", [1]),
               gaps={a: g["mean"] for a, g in result["gaps"].items()},
               intervals={a: arms[a]["accuracy"] for a in arms}, gap_interval=result["gap"],
               macro_f1={a: arms[a]["macro_f1"]["mean"] for a in arms}, seeds=result["seeds"],
               date=datetime.date.today().isoformat(), host=f"{platform.machine()}, {platform.node()}")
    if TEACHER_ARM in arms:
        out.update(teacher_label_acc=arms[TEACHER_ARM]["accuracy"]["mean"],
                   teacher_gap=result["gaps"][TEACHER_ARM]["mean"], teachers=result.get("teachers", []))
    curve = result.get("curve") if curve is None else curve
    if curve is not None:
        out["curve"] = curve
    path = ROOT / "bench" / "results" / "utility_demo.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    table = (workdir / "utility" / "utility.md").read_text().split("\n", 2)[2]
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.write(f"\n## Utility benchmark on the demo, {out['date']}\n\n`{command}` "
                f"({out['minutes']} min on this host)\n\n{table}")
    return path


def _labelled(a, configs: Configs, multiples) -> tuple:
    """--method labelled: run_labelled, the utility arms on its export, then the curve over its
    snapshots (the last point is the main run's 1x arm). Returns (utility result, workdir)."""
    run = run_labelled(configs.gan, configs.classifier, a.workdir, max(multiples), parse_fractions(a.curve),
                       a.pool_multiple)
    w, res_px = pathlib.Path(run["workdir"]), int(configs.gan.data.resolution)
    real = str(configs.gan.data.path)
    res = run_utility(real, run["synthetic"], run["test"], a.classifier_config, str(w / "utility"), seeds=a.seeds,
                      resolution=res_px, overrides=a.set_classifier, multiples=multiples, teacher=a.teacher_arm)
    real_acc = [s["accuracy"] for s in res["arms"]["real"]["seeds"]]
    last = {run["final_kimg"]: [s["accuracy"] for s in res["arms"]["synthetic"]["seeds"]]}
    curve = run_curve(real, run["curve"], run["test"], a.classifier_config, str(w / "utility_curve"), real_acc,
                      final=last, seeds=a.seeds, resolution=res_px, overrides=a.set_classifier)
    res["curve"] = curve["curve"]
    return res, w


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="pipeline workdir (new, or a pipeline run to resume)")
    p.add_argument("--gan_config", default=DEFAULTS["gan"])
    p.add_argument("--classifier_config", default=DEFAULTS["classifier"])
    p.add_argument("--evolve_config", default=DEFAULTS["evolve"])
    add_override_flags(p)
    p.add_argument("--num_sort", type=int, default=64)
    p.add_argument("--min_accept", type=float, default=0.1, help="see jaxgen.workflows.pipeline")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--synthetic_multiple", default="1",
                   help="synthetic arms on m x the real count per class, e.g. 1,4,16 (default 1)")
    p.add_argument("--teacher_arm", action="store_true",
                   help="also train on the 1x synthetic faces with the export's teacher labels")
    p.add_argument("--method", default="pipeline", choices=("pipeline", "labelled"),
                   help="pipeline: the acne paper's hierarchy; labelled: an unconditional GAN labelled by the sorter")
    p.add_argument("--curve", default="", help="--method labelled: snapshot fractions of the GAN's kimg, e.g. 0.25,0.5")
    p.add_argument("--pool_multiple", type=float, default=4.0, help="--method labelled: candidates per kept face")
    p.add_argument("--record", action="store_true", help="write bench/results/utility_demo.json")
    a = p.parse_args(argv)
    multiples = parse_multiples(a.synthetic_multiple)
    parse_fractions(a.curve)
    if a.curve and a.method != "labelled":
        p.error("--curve needs --method labelled (the pipeline's fine-tunes and GA are not snapshotted)")
    use_compile_cache()
    command = "python bench/utility.py " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))
    t0 = time.time()
    configs = Configs.load(a.gan_config, a.classifier_config, a.evolve_config, a.set, a.set_classifier,
                           a.set_evolve, a.set_finetune)
    if a.method == "labelled":
        res, w = _labelled(a, configs, multiples)
    else:
        pipe = run_pipeline(configs, a.workdir, num_sort=a.num_sort, min_accept=a.min_accept)
        w = pathlib.Path(pipe["workdir"])
        res = run_utility(str(configs.gan.data.path), str(w / "synthetic"), pipe["test"], a.classifier_config,
                          str(w / "utility"), seeds=a.seeds, resolution=int(configs.gan.data.resolution),
                          overrides=a.set_classifier, multiples=multiples, teacher=a.teacher_arm)
    minutes = (time.time() - t0) / 60
    print(f"utility benchmark: {minutes:.1f} min; gap real - synthetic {res['gap']['mean']:.3f}; best "
          f"multiple x{res['best_multiple']}: gap {res['best_gap']['mean']:.3f}")
    if a.record:
        print(f"recorded in {record(res, w, command, minutes)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
