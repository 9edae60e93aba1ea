"""Does the training loop keep the device busy? img/s of the harness loop vs the bare jitted step.

  python bench/loop_overlap.py                    # StyleGAN2 acne.py:tiny widths, 32 px, batch 16
  python bench/loop_overlap.py --config configs/acne_classifier.py:tiny --res 64 --batch 64 --tick_steps 8
  python bench/loop_overlap.py --devices 2                 # 2 fake CPU devices: each step awaited
  python bench/loop_overlap.py --devices 2 --host_delay_ms 100   # a loader taking 100 ms a batch

Three ways of running the same jitted train step of one experiment, in one process,
interleaved (the order rotates every repetition) and repeated:

  bare         the step alone, on batches put on the devices beforehand;
  loop         one tick of the harness loop (jaxgen.harness.loop) with the batch prefetch
               thread (Experiment.prefetch = 2, the default);
  loop, no pf  the same tick with prefetch 0: each batch gathered on the host and put on the
               devices by the loop's thread just before its step.

Every figure is img/s over --tick_steps steps (16: one whole StyleGAN2 lazy-regularisation
cycle), timed until the steps' metrics are on the host (for the loop: the tick's
images_per_sec, measured before its end-of-tick work). Also shown:
what gathering one batch on the host and putting it on the devices costs (`host batch`), and
loop / bare per repetition (median over the repetitions): the target is at least 0.95. The
first tick (compilation) is not timed. --host_delay_ms adds that much waiting (a sleep, as a
slow loader's I/O would) to every batch the loop gathers, to show what the prefetch hides.
The experiment's evaluation, checkpoints and sample grids are off; the demo data is rendered
once into --data_dir. --record appends the table to bench/RESULTS.md with the command line.
"""
import argparse
import contextlib
import datetime
import importlib.util
import io
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time


def _fake_devices_from_argv() -> None:
    """--devices N asks XLA for N CPU devices; it has to be set before jax is imported."""
    for i, arg in enumerate(sys.argv):
        n = arg.split("=", 1)[1] if arg.startswith("--devices=") else (
            sys.argv[i + 1] if arg == "--devices" and i + 1 < len(sys.argv) else None)
        if n is not None and int(n) > 1:
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                       f" --xla_force_host_platform_device_count={int(n)}").strip()
            os.environ.setdefault("JAX_PLATFORMS", "cpu")


_fake_devices_from_argv()
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from jaxgen.classifiers.train import ClassifierExperiment  # noqa: E402
from jaxgen.dcgan.train import DCGANExperiment  # noqa: E402
from jaxgen.harness import logs, loop  # noqa: E402
from jaxgen.harness.parallel import DataParallel  # noqa: E402
from jaxgen.harness.schedule import Schedule  # noqa: E402
from jaxgen.stylegan2.train import StyleGAN2Experiment  # noqa: E402

EXPERIMENTS = {"classifier": ClassifierExperiment, "stylegan2": StyleGAN2Experiment, "dcgan": DCGANExperiment}
MODES = ("bare", "loop", "loop, no pf")


def load_config(args: argparse.Namespace):
    """The config `path[:variant]` with the benchmark's batch, resolution and data folder."""
    path, _, variant = args.config.partition(":")
    spec = importlib.util.spec_from_file_location("bench_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(variant)
    c.train.batch_size = args.batch
    c.data.resolution = args.res
    c.data.num_per_class = args.num_per_class
    if c.data.source == "demo":
        c.data.path = str(pathlib.Path(args.data_dir) / f"demo_{args.res}px_{args.num_per_class}")
    if "metrics" in c:
        c.metrics.every_ticks = 0
    return c


def make_loop(config, workdir: pathlib.Path, tick_steps: int, delay_ms: float) -> "loop._Loop":
    """A harness loop over the experiment `config.task` names, with ticks of `tick_steps` steps,
    `delay_ms` more per batch and no evaluation, checkpoint or sample grid (the timed part of a
    tick is its steps either way)."""
    logs.open_tensorboard = lambda w: None   # metrics.jsonl only: TensorFlow's import is not timed
    exp = EXPERIMENTS[config.get("task", "stylegan2")](config, workdir)
    if delay_ms > 0:
        exp.batch = slowed(exp.batch, delay_ms / 1000)
    exp.schedule = Schedule(exp.schedule.batch_size, 10 ** 9, tick_steps, 10 ** 6, 10 ** 6, 1)
    exp.evaluate = lambda *a: {}
    exp.after_tick = lambda *a: None
    exp.tick_line = lambda stats: ""
    dp = DataParallel()
    dp.check_batch(exp.schedule.batch_size, exp.num_examples, exp.batch_setting)
    state, meta = loop._restore_or_init(exp, workdir, dp)
    workdir.mkdir(parents=True, exist_ok=True)
    return loop._Loop(exp, workdir, dp, state, meta)


def slowed(batch_fn, seconds: float):
    """batch_fn that first waits `seconds` (like a loader reading files; the GIL is released)."""
    def batch(step):
        time.sleep(seconds)
        return batch_fn(step)
    return batch


def loop_tick(lp: "loop._Loop", prefetch: int) -> float:
    """img/s of one harness tick with `prefetch` (its progress line is not printed)."""
    lp.exp.prefetch = prefetch
    with contextlib.redirect_stdout(io.StringIO()):
        lp._tick()
    return float(lp.history[-1]["images_per_sec"])


def bare_steps(lp: "loop._Loop", n: int) -> float:
    """img/s of `n` calls of the loop's jitted step on batches put on the devices beforehand
    (awaiting each step where the loop does: several CPU devices)."""
    staged = [lp._device_batch(s) for s in range(lp.step, lp.step + n)]
    jax.block_until_ready(staged)
    per_step = []
    t0 = time.perf_counter()
    for batch in staged:
        lp.state, metrics = lp.step_fn(lp.state, *batch, lp.key)
        per_step.append(metrics)
        if lp.dp.block_every_step:
            jax.block_until_ready(lp.state)
    jax.device_get(per_step)
    dt = time.perf_counter() - t0
    lp.step += n
    lp.nimg += n * lp.sched.batch_size
    return n * lp.sched.batch_size / dt


def host_batch_ms(lp: "loop._Loop", n: int = 8) -> float:
    """Mean ms to gather one batch on the host and put it on the devices."""
    t0 = time.perf_counter()
    for s in range(lp.step, lp.step + n):
        jax.block_until_ready(lp._device_batch(s))
    return (time.perf_counter() - t0) / n * 1000


def measure(lp: "loop._Loop", reps: int, tick_steps: int) -> dict:
    """{mode: [img/s per repetition]} with the modes interleaved, the order rotating."""
    loop_tick(lp, 2)                         # compiles the step
    bare_steps(lp, tick_steps)
    out = {m: [] for m in MODES}
    run = {"bare": lambda: bare_steps(lp, tick_steps), "loop": lambda: loop_tick(lp, 2),
           "loop, no pf": lambda: loop_tick(lp, 0)}
    for r in range(reps):
        for m in MODES[r % 3:] + MODES[:r % 3]:
            out[m].append(run[m]())
            print(f"  rep {r + 1} {m}: {out[m][-1]:.2f} img/s", flush=True)
    return out


def table(res: dict, args: argparse.Namespace, batch_ms: float, step_ms: float) -> list:
    """Markdown rows: median / min / max img/s per mode and the median of loop/bare per repetition."""
    rows = ["| config | devices | batch | res | loader delay | mode | img/s median | min | max | "
            "vs bare (median of reps) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in MODES:
        ratio = statistics.median(a / b for a, b in zip(res[m], res["bare"]))
        rows.append(f"| {args.config} | {jax.device_count()} | {args.batch} | {args.res} | "
                    f"{args.host_delay_ms:g} ms | {m} | "
                    f"{statistics.median(res[m]):.2f} | {min(res[m]):.2f} | {max(res[m]):.2f} | "
                    f"{ratio:.3f} |")
    rows.append(f"\nhost batch (loader delay + gather + put on the devices): {batch_ms:.2f} ms; bare step: "
                f"{step_ms:.1f} ms ({batch_ms / step_ms * 100:.1f}% of a step); {args.reps} repetitions of "
                f"{args.tick_steps} steps per mode")
    return rows


def record(rows: list, head: str) -> None:
    out = pathlib.Path(__file__).with_name("RESULTS.md")
    cmd = "python bench/loop_overlap.py " + " ".join(sys.argv[1:])
    with open(out, "a") as f:
        f.write(f"\n### Training loop vs bare step (host pipeline), {datetime.date.today()}\n\n"
                f"`{cmd}`\n\n{head}\n\n" + "\n".join(rows) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/acne.py:tiny")
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--num_per_class", type=int, default=64)
    ap.add_argument("--tick_steps", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--devices", type=int, default=1, help="fake CPU devices (set before jax starts)")
    ap.add_argument("--host_delay_ms", type=float, default=0.0, help="simulated loader time per batch")
    ap.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "jaxgen_bench_data"))
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = ap.parse_args()
    dev = jax.devices()[0]
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        lp = make_loop(load_config(args), pathlib.Path(tmp) / "run", args.tick_steps, args.host_delay_ms)
        res = measure(lp, args.reps, args.tick_steps)
        batch_ms = host_batch_ms(lp)
        lp.ckpt.close()
        lp.log.close()
    step_ms = lp.sched.batch_size / statistics.median(res["bare"]) * 1000
    head = (f"Device: {dev.platform} ({dev.device_kind}), {jax.device_count()} device(s), jax {jax.__version__}, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; load average "
            f"{load0[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    rows = table(res, args, batch_ms, step_ms)
    print(head + "\n\n" + "\n".join(rows), flush=True)
    if args.record:
        record(rows, head)


if __name__ == "__main__":
    main()
