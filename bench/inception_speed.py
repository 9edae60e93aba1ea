"""Throughput of FID Inception feature extraction (pool3 + logits) with InceptionFeatures.

  python bench/inception_speed.py                          # N=64, 299 and 64 px, fixture weights
  python bench/inception_speed.py --n 32 --batch 16 --record
  python bench/inception_speed.py --torch_python /path/to/venv/bin/python   # side-by-side

Times ``InceptionFeatures(images_uint8)`` on N seeded uint8 images of each size (64 px
includes the bilinear resize to 299 inside the jitted function), after one warm-up call
that compiles; reports the best of --reps timed calls, including host->device transfer and
fetching the results.  The weights are the random test fixture by default (speed does not
depend on the values) or a real ``pt_inception-2015-12-05-6726825d.pth`` via --weights.

If ``pytorch_fid`` is importable here, or --torch_python names an interpreter where it is,
the same computation is timed with pytorch-fid's ``InceptionV3([3])`` (its weight download
replaced by the fixture weights; nothing is fetched) on the same images, and the max abs
pool3 difference between the two is printed.  --record appends the Markdown table and the
exact command to bench/RESULTS.md.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_WEIGHTS = REPO.parent / "shared" / "fixtures" / "fid_inception_weights.npz"


def make_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish seeded uint8 [n, size, size, 3] images (identical in both processes)."""
    rng = np.random.default_rng(seed + size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    f = rng.uniform(1, 6, (n, 3, 2))
    base = 0.5 + 0.4 * np.sin(2 * np.pi * (f[..., 0, None, None] * yy + f[..., 1, None, None] * xx))
    img = base.transpose(0, 2, 3, 1) + 0.05 * rng.standard_normal((n, size, size, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def best_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_jax(args, sizes):
    import jax
    from jaxgen.metrics.inception import InceptionFeatures, load_fid_inception_weights

    feats = InceptionFeatures(load_fid_inception_weights(args.weights), batch_size=args.batch)
    dev = jax.devices()[0]
    rows, pool3 = [], {}
    for size in sizes:
        imgs = make_images(args.n, size)
        t0 = time.perf_counter()
        feats(imgs[:args.batch])  # compiles for this input shape
        compile_s = time.perf_counter() - t0
        pool3[size] = feats(imgs)["pool3"]
        dt = best_time(lambda: feats(imgs), args.reps)
        rows.append(dict(backend=f"jaxgen (JAX {jax.__version__}, {dev.platform}: {dev.device_kind})",
                         size=size, n=args.n, batch=args.batch, ips=args.n / dt, first_s=compile_s))
    return rows, pool3


def bench_torch(args, sizes):
    """pytorch-fid's own network on the CPU (runs wherever pytorch_fid imports)."""
    import torch
    import pytorch_fid
    from pytorch_fid import inception as pf

    if args.weights.endswith(".npz"):
        with np.load(args.weights) as w:
            state = {k: torch.from_numpy(w[k]) for k in w.files}
    else:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
    pf.load_state_dict_from_url = lambda *a, **k: state  # no download: fixture weights
    model = pf.InceptionV3([3]).eval()
    rows, pool3 = [], {}
    for size in sizes:
        imgs = torch.from_numpy(make_images(args.n, size)).permute(0, 3, 1, 2).contiguous()

        def run():
            out = []
            with torch.no_grad():
                for i in range(0, args.n, args.batch):
                    out.append(model(imgs[i:i + args.batch].float() / 255)[0][:, :, 0, 0].numpy())
            return np.concatenate(out)

        t0 = time.perf_counter()
        pool3[size] = run()
        first_s = time.perf_counter() - t0
        dt = best_time(run, args.reps)
        rows.append(dict(backend=f"pytorch-fid {pytorch_fid.__version__} (torch {torch.__version__}, cpu, "
                                 f"{torch.get_num_threads()} threads)",
                         size=size, n=args.n, batch=args.batch, ips=args.n / dt, first_s=first_s))
    return rows, pool3


def torch_side(args, sizes):
    """Run bench_torch here if pytorch_fid imports, else in --torch_python; None if neither."""
    try:
        import pytorch_fid  # noqa: F401
        return bench_torch(args, sizes)
    except ImportError:
        if not args.torch_python:
            print("pytorch_fid not importable and no --torch_python: JAX rows only")
            return None
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [args.torch_python, __file__, "--torch_only", tmp, "--n", str(args.n), "--batch", str(args.batch),
               "--reps", str(args.reps), "--weights", str(args.weights), "--sizes", *map(str, sizes)]
        subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONPATH=""))
        rows = json.loads(pathlib.Path(tmp, "rows.json").read_text())
        with np.load(pathlib.Path(tmp, "pool3.npz")) as z:
            pool3 = {int(k): z[k] for k in z.files}
    return rows, pool3


def table(rows, diffs) -> str:
    lines = ["| backend | input | N | batch | images/s | ms/image | first call (s) | max abs pool3 diff vs jaxgen |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        d = diffs.get((r["backend"], r["size"]), "")
        d = f"{d:.1e}" if d != "" else "-"
        lines.append(f"| {r['backend']} | uint8 {r['size']}x{r['size']} | {r['n']} | {r['batch']} | "
                     f"{r['ips']:.1f} | {1000 / r['ips']:.1f} | {r['first_s']:.1f} | {d} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=64, help="images per timed call")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sizes", type=int, nargs="+", default=[299, 64])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help=".npz or .pth FID Inception weights")
    p.add_argument("--torch_python", default="", help="interpreter with pytorch_fid for a side-by-side row")
    p.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    p.add_argument("--torch_only", default="", help=argparse.SUPPRESS)  # internal: child process mode
    args = p.parse_args()

    if args.torch_only:
        rows, pool3 = bench_torch(args, args.sizes)
        pathlib.Path(args.torch_only, "rows.json").write_text(json.dumps(rows))
        np.savez(pathlib.Path(args.torch_only, "pool3.npz"), **{str(k): v for k, v in pool3.items()})
        return

    rows, pool3 = bench_jax(args, args.sizes)
    diffs = {}
    other = torch_side(args, args.sizes)
    if other is not None:
        t_rows, t_pool3 = other
        for r in t_rows:
            diffs[(r["backend"], r["size"])] = float(np.abs(t_pool3[r["size"]] - pool3[r["size"]]).max())
        rows += t_rows
    rows.sort(key=lambda r: (-r["size"], r["backend"]))
    md = table(rows, diffs)
    print(md)
    if args.record:
        cmd = "python " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:])
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        host = f"{platform.machine()}, {os.cpu_count()} CPU cores, load average {load} at the end"
        section = (f"\n## FID Inception features (InceptionFeatures), {datetime.date.today()}, {host}\n\n"
                   f"```\n{cmd}\n```\n\nBest of {args.reps} calls on N seeded images, each call including "
                   "host->device transfer, the resize to 299 (64 px rows) and fetching pool3 + logits; "
                   "'first call' includes compilation (JAX) or warm-up (torch). Fixture weights unless "
                   "--weights says otherwise.\n\n" + md + "\n")
        with open(REPO / "bench" / "RESULTS.md", "a") as f:
            f.write(section)
        print(f"appended to {REPO / 'bench' / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
