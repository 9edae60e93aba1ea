"""The utility benchmark on the demo, end to end: pipeline, then synthetic-train / real-test.

  python bench/utility.py --workdir runs/utility_demo --record

1. `jaxgen.workflows.pipeline` on the embedded demo faces with the given configs
   (default: the :tiny ones; resumes when --workdir holds a pipeline run);
2. `jaxgen.classifiers.utility.run_utility`: the same classifier config trained on the
   real training faces, on the exported synthetic dataset (same count per class) and on
   both, --seeds seeds each, tested on the held-out real demo faces (rendered with
   another seed; never seen by the GAN, the sorter or the GA).

Writes <workdir>/utility/ (utility.json, utility.md, the PNGs) and, with --record,
bench/results/utility_demo.json (real_train_acc, synthetic_train_acc,
real_plus_synthetic_acc, gap, minutes, command, and the intervals) plus the table
appended to bench/RESULTS.md. `minutes` is the wall time of both stages in this
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

from jaxgen.classifiers.utility import run_utility  # noqa: E402
from jaxgen.cli import run_main, use_compile_cache  # noqa: E402
from jaxgen.workflows.pipeline import DEFAULTS, Configs, add_override_flags, run_pipeline  # noqa: E402


def record(result: dict, workdir: pathlib.Path, command: str, minutes: float) -> pathlib.Path:
    """bench/results/utility_demo.json and the table appended to bench/RESULTS.md."""
    arms = result["arms"]
    out = dict(real_train_acc=arms["real"]["accuracy"]["mean"],
               synthetic_train_acc=arms["synthetic"]["accuracy"]["mean"],
               real_plus_synthetic_acc=arms["real+synthetic"]["accuracy"]["mean"],
               gap=result["gap"]["mean"], minutes=round(minutes, 1), command=command,
               intervals={a: arms[a]["accuracy"] for a in arms}, gap_interval=result["gap"],
               macro_f1={a: arms[a]["macro_f1"]["mean"] for a in arms}, seeds=result["seeds"],
               date=datetime.date.today().isoformat(), host=f"{platform.machine()}, {platform.node()}")
    path = ROOT / "bench" / "results" / "utility_demo.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    table = (workdir / "utility" / "utility.md").read_text().split("\n", 2)[2]
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.write(f"\n## Utility benchmark on the demo, {out['date']}\n\n`{command}` "
                f"({out['minutes']} min on this host)\n\n{table}")
    return path


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
    p.add_argument("--record", action="store_true", help="write bench/results/utility_demo.json")
    a = p.parse_args(argv)
    use_compile_cache()
    command = "python bench/utility.py " + " ".join(shlex.quote(s) for s in (argv or sys.argv[1:]))
    t0 = time.time()
    configs = Configs.load(a.gan_config, a.classifier_config, a.evolve_config, a.set, a.set_classifier,
                           a.set_evolve, a.set_finetune)
    pipe = run_pipeline(configs, a.workdir, num_sort=a.num_sort, min_accept=a.min_accept)
    w = pathlib.Path(pipe["workdir"])
    res = run_utility(str(configs.gan.data.path), str(w / "synthetic"), pipe["test"], a.classifier_config,
                      str(w / "utility"), seeds=a.seeds, resolution=int(configs.gan.data.resolution),
                      overrides=a.set_classifier)
    minutes = (time.time() - t0) / 60
    print(f"utility benchmark: {minutes:.1f} min; gap real - synthetic {res['gap']['mean']:.3f}")
    if a.record:
        print(f"recorded in {record(res, w, command, minutes)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
