"""Input pipeline throughput: images/s a packed dataset delivers vs NVIDIA's loader (issue 29 item 4).

  python bench/input_speed.py --nvlabs /tmp/nvlabs --pyspng_path /tmp/pyspng_pkg
  python bench/input_speed.py --nvlabs /tmp/nvlabs --res 256,1024 --reps 3 --record

For each resolution the same N synthetic face images (the demo faces of
jaxgen.data.demo_faces, 16 rendered at 64 px, each image a random crop of one of them
upscaled to R px with a colour cast and Gaussian grain, so that PNGs are not trivially
small) are written once in NVIDIA's dataset_tool layout (`00000/img00000000.png`, ...,
dataset.json with labels; PNG compress_level 0, what dataset_tool.py writes, unless
--png_level) and packed from that folder with `python -m jaxgen pack` ('raw', and
'png' for the second row). Then, interleaved (jaxgen raw, NVIDIA, jaxgen png, NVIDIA
with PIL, ...) and repeated --reps times:

  jaxgen   the way training reads: `batch_at_step(images, labels, step, B, seed,
           mirror=True)` from the streamed PackedImages (stream 'always') in a
           `Prefetcher` thread (depth 2, the loop's), the main thread taking the batches;
  NVIDIA   `torch.utils.data.DataLoader(ImageFolderDataset(folder, use_labels=True,
           xflip=True), sampler=InfiniteSampler, batch_size=B, num_workers=3,
           prefetch_factor=2)`: their train.py defaults (pin_memory off: no GPU), imported
           from the checkout --nvlabs names (never copied here; on torch 2.x, whose Sampler
           no longer takes a data_source, a no-op Sampler.__init__ is put back for it). Their dataset decodes PNGs
           with pyspng when it imports (--pyspng_path: a folder holding it, put on sys.path)
           and PIL otherwise; the 'PIL' row forces PIL.

Each figure is the steady state of a fresh iterator: --warm batches are taken first
(worker start-up, the prefetch queues filling and draining), then --batches batches are
timed. Both deliver uint8 batches with labels (NVIDIA NCHW + one-hot, jaxgen NHWC +
int32); nothing else runs in the process. The ratio column is jaxgen / NVIDIA (pyspng)
per repetition, median over repetitions (> 1: jaxgen delivers more).

The files were just written, so every read is from a warm page cache (the set is far
smaller than RAM): this measures decode/copy/IPC cost, not the disk.

Also printed: the images/s the training step consumes at each size (a few jitted
StyleGAN2-ADA steps on this machine, bench/train_speed.py's `bench`, --step_preset
widths), beside NVIDIA's published single-node rates from their README's "Expected
training time" table (sec/kimg -> img/s; measured on Tesla V100s, the README says), which
is the rate a loader must sustain on a GPU machine.

--record appends the tables to bench/RESULTS.md with the command, CPU model and cores and
the load averages before and after.
"""
import argparse
import datetime
import io
import json
import os
import pathlib
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from jaxgen.data.demo_faces import render_face  # noqa: E402
from jaxgen.data.pack import pack_dataset  # noqa: E402
from jaxgen.data.packed import load_packed  # noqa: E402
from jaxgen.harness.batches import Prefetcher, batch_at_step  # noqa: E402

CLASSES = ("healthy", "mild", "moderate", "severe")
# NVIDIA's README, "Expected training time" (stylegan2-ada-pytorch, --cfg=auto, Tesla V100):
# resolution -> {GPUs: (sec/kimg low, high)}.
NVIDIA_SEC_PER_KIMG = {256: {1: (21.6, 24.2), 8: (4.4, 5.5)},
                       1024: {1: (154.3, 161.6), 8: (20.2, 20.6)}}
RESULTS_HEADER = "## Issue 29: streaming input (packed datasets)"


# ----------------------------------------------------------------------------------------------
# Synthetic source images (shared with bench/input_memory.py)

class FaceSynth:
    """Deterministic R px face images: image i is a random crop (zoom 1-1.25) of one of `pool`
    demo faces rendered at 64 px, upscaled bicubically, with a per-channel gain of 0.85-1.15 and
    Gaussian grain of std `grain` (a shifted window of one noise field); label = that face's
    severity class."""

    def __init__(self, res: int, pool: int = 16, grain: float = 2.0, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.res, self.seed = res, seed
        self.severity = [k % 4 for k in range(pool)]
        self.faces = [render_face(rng, s, 64) for s in self.severity]
        self.noise = np.random.default_rng(seed + 1).normal(0, grain, (res + 64, res + 64, 3)).astype(np.float32)

    def __call__(self, i: int):
        r = np.random.default_rng([self.seed, 7, i])
        k = int(r.integers(len(self.faces)))
        c = 64 / r.uniform(1.0, 1.25)
        x0, y0 = r.uniform(0, 64 - c, 2)
        img = Image.fromarray(self.faces[k]).resize((self.res, self.res), Image.BICUBIC,
                                                    box=(x0, y0, x0 + c, y0 + c))
        ox, oy = r.integers(0, 64, 2)
        a = np.asarray(img, np.float32) * r.uniform(0.85, 1.15, 3).astype(np.float32)
        a += self.noise[oy:oy + self.res, ox:ox + self.res]
        return np.clip(a, 0, 255).astype(np.uint8), self.severity[k]

    def items(self, n: int):
        for i in range(n):
            yield self(i)


def write_nvidia_folder(synth: FaceSynth, n: int, out: pathlib.Path, level: int) -> float:
    """n images in dataset_tool.py's folder layout (img%08d.png in 1000-image subfolders,
    dataset.json {"labels": [[name, label], ...]}); returns the mean PNG size in bytes."""
    if (out / "dataset.json").is_file() and json.loads((out / "dataset.json").read_text()).get("n") == n:
        return float(json.loads((out / "dataset.json").read_text())["mean_png_bytes"])
    shutil.rmtree(out, ignore_errors=True)
    labels, total = [], 0
    for i, (img, label) in enumerate(synth.items(n)):
        name = f"{i // 1000:05d}/img{i:08d}.png"
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="png", compress_level=level, optimize=False)
        (out / name).write_bytes(buf.getvalue())
        total += buf.tell()
        labels.append([name, label])
    meta = dict(labels=labels, n=n, mean_png_bytes=total / n)
    (out / "dataset.json").write_text(json.dumps(meta))
    return total / n


# ----------------------------------------------------------------------------------------------
# The two loaders

def time_jaxgen(pack: pathlib.Path, res: int, batch: int, warm: int, batches: int, rep: int) -> float:
    """img/s of batch_at_step from the streamed pack in a Prefetcher, steady state."""
    ds = load_packed(pack, res, 3, stream="always")
    images, labels = ds.images, ds.labels
    start = rep * (warm + batches) * 7     # a different stretch of the epoch each repetition

    def fn(step):
        return batch_at_step(images, labels, step, batch, 0, mirror=True)
    with Prefetcher(fn, start, start + warm + batches, depth=2) as pf:
        for s in range(start, start + warm):
            pf.get(s)
        t0 = time.perf_counter()
        for s in range(start + warm, start + warm + batches):
            img, lab = pf.get(s)
            assert img.shape == (batch, res, res, 3)
        dt = time.perf_counter() - t0
    return batch * batches / dt


def time_nvidia(nv, folder: pathlib.Path, batch: int, warm: int, batches: int, rep: int, decoder: str,
                workers: int) -> float:
    """img/s of NVIDIA's DataLoader(ImageFolderDataset) with their defaults, steady state."""
    torch, dataset_mod, misc = nv
    saved = dataset_mod.pyspng
    if decoder == "PIL":
        dataset_mod.pyspng = None          # their fallback path; the forked workers inherit it
    try:
        ds = dataset_mod.ImageFolderDataset(str(folder), use_labels=True, xflip=True)
        sampler = misc.InfiniteSampler(ds, seed=rep)
        it = iter(torch.utils.data.DataLoader(ds, sampler=sampler, batch_size=batch, num_workers=workers,
                                              prefetch_factor=2, pin_memory=False))
        for _ in range(warm):
            next(it)
        t0 = time.perf_counter()
        for _ in range(batches):
            img, c = next(it)
            assert img.shape[0] == batch
        dt = time.perf_counter() - t0
        del it
    finally:
        dataset_mod.pyspng = saved
    return batch * batches / dt


def import_nvidia(checkout: str, pyspng_path: str):
    if pyspng_path:
        sys.path.insert(0, pyspng_path)
    sys.path.insert(0, checkout)
    import torch
    if "__init__" not in vars(torch.utils.data.Sampler):
        # torch >= 2.x dropped Sampler.__init__(data_source), which their InfiniteSampler calls
        # (super().__init__(dataset)); give it back, doing nothing, as older torch did.
        torch.utils.data.Sampler.__init__ = lambda self, data_source=None: None
    from torch_utils import misc
    from training import dataset as dataset_mod
    return torch, dataset_mod, misc


# ----------------------------------------------------------------------------------------------

def machine_line() -> str:
    model = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPU cores, {platform.machine()}"


def load_line() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def record(title: str, cmd: str, body: str) -> None:
    out = HERE / "RESULTS.md"
    text = out.read_text()
    with open(out, "a") as f:
        if RESULTS_HEADER not in text:
            f.write(f"\n{RESULTS_HEADER}\n")
        f.write(f"\n### {title}, {datetime.date.today()}\n\n`{cmd}`\n\n{body}\n")


def nvidia_rates(res: int) -> str:
    """'41-46 (1 GPU), 182-227 (8 GPUs)' from the README table."""
    parts = []
    for gpus, (lo, hi) in NVIDIA_SEC_PER_KIMG.get(res, {}).items():
        parts.append(f"{1000 / hi:.0f}-{1000 / lo:.0f} ({gpus} GPU{'s' if gpus > 1 else ''})")
    return ", ".join(parts) or "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nvlabs", required=True, help="stylegan2-ada-pytorch checkout (read-only; imported)")
    ap.add_argument("--pyspng_path", default="", help="folder holding pyspng for NVIDIA's loader ('' = none)")
    ap.add_argument("--res", default="256,1024")
    ap.add_argument("--n", default="2000,500", help="images per resolution (comma list matching --res)")
    ap.add_argument("--batch", default="32,8", help="batch per resolution")
    ap.add_argument("--warm", type=int, default=8, help="batches taken before timing")
    ap.add_argument("--batches", type=int, default=24, help="batches timed")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=3, help="NVIDIA DataLoader workers (their default: 3)")
    ap.add_argument("--png_level", type=int, default=0, help="PNG compress_level of the source folder "
                    "(NVIDIA's dataset_tool.py writes 0)")
    ap.add_argument("--loaders", default="jaxgen raw,NVIDIA pyspng,jaxgen png,NVIDIA PIL")
    ap.add_argument("--workdir", default="/tmp/jaxgen_input_speed", help="where the datasets are written")
    ap.add_argument("--keep", action="store_true", help="keep --workdir afterwards")
    ap.add_argument("--step_res", default="256,1024", help="training-step timing at these sizes ('' = skip)")
    ap.add_argument("--step_preset", default="cpu", choices=("cpu", "paper"))
    ap.add_argument("--step_batch", type=int, default=4)
    ap.add_argument("--step_steps", type=int, default=3)
    ap.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    a = ap.parse_args()
    res_list = [int(r) for r in a.res.split(",")] if a.res else []     # '' = the step timing only
    ns = [int(x) for x in a.n.split(",")]
    bs = [int(x) for x in a.batch.split(",")]
    loaders = [x.strip() for x in a.loaders.split(",")]
    nv = import_nvidia(a.nvlabs, a.pyspng_path)
    spng = "pyspng " + getattr(nv[1].pyspng, "__version__", "?") if nv[1].pyspng is not None else "none"
    load0, t_start = load_line(), time.time()
    head = (f"{machine_line()}; torch {nv[0].__version__}, pyspng for NVIDIA: {spng}; "
            f"load average {load0} at the start")
    print(head, flush=True)
    work = pathlib.Path(a.workdir)
    rows, ratio_lines = [], []
    try:
        for res, n, batch in zip(res_list, ns, bs):
            synth = FaceSynth(res)
            t0 = time.time()
            folder = work / f"nvidia_{res}_{n}_l{a.png_level}"
            png_bytes = write_nvidia_folder(synth, n, folder, a.png_level)
            packs = {}
            for enc in ("raw", "png"):
                p = work / f"pack_{res}_{n}_{enc}"
                if not (p / "dataset.json").is_file():
                    pack_dataset(folder, p, res, 3, enc)
                packs[enc] = p
            pack_sizes = {enc: sum(f.stat().st_size for f in p.glob("shard-*")) / n
                          for enc, p in packs.items()}
            print(f"{res} px: {n} images written and packed in {time.time() - t0:.0f} s; mean PNG "
                  f"{png_bytes / 1e3:.0f} kB (level {a.png_level}), pack record raw "
                  f"{pack_sizes['raw'] / 1e3:.0f} kB, png {pack_sizes['png'] / 1e3:.0f} kB", flush=True)
            runs = {name: (lambda name=name, rep=0: (
                time_jaxgen(packs[name.split()[1]], res, batch, a.warm, a.batches, rep) if name.startswith("jaxgen")
                else time_nvidia(nv, folder, batch, a.warm, a.batches, rep, name.split()[1], a.workers)))
                for name in loaders}
            for name in loaders:        # warm-up (imports, page cache, first worker start)
                runs[name](rep=99)
            got = {name: [] for name in loaders}
            for rep in range(a.reps):
                order = loaders[rep % len(loaders):] + loaders[:rep % len(loaders)]
                for name in order:
                    got[name].append(runs[name](rep=rep))
                print(f"  rep {rep}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in got.items()), flush=True)
            base = got.get("NVIDIA pyspng") or got.get("NVIDIA PIL")
            for name in loaders:
                ratios = [x / b for x, b in zip(got[name], base)]
                rows.append(f"| {res} | {n} | {batch} | {name} | {statistics.median(got[name]):.0f} | "
                            f"{min(got[name]):.0f} | {max(got[name]):.0f} | {statistics.median(ratios):.2f}x |")
                print(rows[-1], flush=True)
            ratio_lines.append(f"{res} px: mean source PNG {png_bytes / 1e3:.0f} kB (compress_level "
                               f"{a.png_level}); pack records raw {pack_sizes['raw'] / 1e3:.0f} kB, png "
                               f"{pack_sizes['png'] / 1e3:.0f} kB")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    load1 = load_line()
    table = ["| res | images | batch | loader | img/s median | min | max | vs NVIDIA pyspng (median of reps) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"] + rows
    if rows:
        print("\n".join(table))
    step_rows = []
    if a.step_res:
        sys.path.insert(0, str(HERE))
        from train_speed import bench as step_bench
        for res in [int(r) for r in a.step_res.split(",")]:
            r = step_bench(res, a.step_batch, a.step_steps, "ada", a.step_preset)
            step_rows.append(f"| {res} | {a.step_preset} ({r['params']:,} params) | {a.step_batch} | "
                             f"{r['steps']} | {r['img_per_s']:.2f} | {nvidia_rates(res)} |")
            print(step_rows[-1], flush=True)
    step_table = ["| res | widths | batch | steps timed | jaxgen step img/s (this CPU) | NVIDIA README img/s "
                  "(V100, sec/kimg -> img/s) |", "| --- | --- | --- | --- | --- | --- |"] + step_rows
    if step_rows:
        print("\n".join(step_table))
    body = f"{head}, {load1} at the end (loaders); {time.time() - t_start:.0f} s in all.\n\n"
    if rows:
        body += ("; ".join(ratio_lines) + f". Steady state: {a.warm} batches taken, then {a.batches} timed, per "
            f"fresh iterator; {a.reps} interleaved repetitions (order rotated); NVIDIA: DataLoader with "
            f"{a.workers} workers, prefetch_factor 2, InfiniteSampler, xflip; jaxgen: batch_at_step(mirror) "
            "from the streamed pack in a Prefetcher (depth 2). Page cache warm (files just written).\n\n"
            + "\n".join(table))
    if step_rows:
        body += "\n\nImages/s the training step consumes (jitted StyleGAN2-ADA steps on this CPU) and NVIDIA's " \
                "published rates:\n\n" + "\n".join(step_table)
    if a.record:
        record("Input throughput vs NVIDIA's loader (item 4)",
               "python bench/input_speed.py " + shlex.join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
