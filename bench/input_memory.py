"""Peak memory of training on a packed dataset vs the dataset's size (issue 29 item 3 and its
"done when" check).

  python bench/input_memory.py                          # 2,000 vs 16,000 images at 256 px
  python bench/input_memory.py --big_gb 30 --record     # also a 1024 px pack of >= 30 GB

Packs N synthetic face images (bench/input_speed.py's `FaceSynth`: demo faces upscaled to
R px with grain; a pool of --pool of them, each image a copy with its index stamped into its
first row, so that writing 30 GB takes minutes, not hours) with `jaxgen.data.pack.pack_arrays`
(raw encoding) into --workdir, then runs the real entry point as a subprocess,

  python train.py --config configs/acne.py:tiny --config.data.source=folder
      --config.data.path=PACK --config.data.resolution=R --config.data.stream=MODE
      --config.train.batch_size=B --config.train.total_kimg=STEPS*B/1000 ...

(tiny widths: 64 channels at most; R1 off, --config.train.r1_gamma=0, so that one step
program is compiled, as path length is off in :tiny; metrics off; the sample grid and a
checkpoint only at the end; JAXGEN_JAX_CACHE='' so every run compiles the same programs;
--extra adds flags), and reads the
child's peak resident set size from os.wait4 (ru_maxrss: resident pages of every kind,
the images it read included; the page cache is not counted). Each (N, mode) pair runs
once; the table gives peak RSS, wall time and the data summary line's storage part.
--modes always,auto: with 'auto' a pack of up to 2 GiB decoded is held in memory (the
2,000-image set at 256 px: 0.37 GiB), a larger one streamed, so 'auto' is run only for the
packs it holds in memory (for the others it is the 'always' run).

--big_gb G then writes a 1024 px raw pack of at least G*10^9 bytes (ceil(G*10^9 / 3 MiB)
images) after checking the free disk, trains --big_steps steps on it with stream 'auto'
(the summary must say 'streamed'), records MemTotal/MemAvailable, peak RSS, wall time and
the data summary line, and deletes the pack (in a finally).

--record appends the tables to bench/RESULTS.md (command, CPU model, cores, load averages).
"""
import argparse
import math
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from input_speed import FaceSynth, load_line, machine_line, record  # noqa: E402
from jaxgen.data.pack import pack_arrays  # noqa: E402
from jaxgen.data.packed import STREAM_ABOVE_BYTES  # noqa: E402
from jaxgen.utils.logger import lines_to_stdout  # noqa: E402

CLASSES = ["healthy", "mild", "moderate", "severe"]


def pooled_items(res: int, n: int, pool: int):
    """n (image, label): image i is pool image i % pool with i (8 bytes) stamped into row 0."""
    synth = FaceSynth(res)
    base = [synth(i) for i in range(min(pool, n))]
    for i in range(n):
        img, label = base[i % len(base)]
        img = img.copy()
        img[0, :3].reshape(-1)[:8] = np.frombuffer(np.int64(i).tobytes(), np.uint8)
        yield img, label


def make_pack(out: pathlib.Path, res: int, n: int, pool: int) -> float:
    """The pack of n pooled images at `out` (reused when it holds n); seconds taken."""
    t0 = time.time()
    meta = out / "dataset.json"
    if meta.is_file() and f'"num_images": {n},' in meta.read_text():
        return 0.0
    with lines_to_stdout():     # the pack's progress lines
        pack_arrays(pooled_items(res, n, pool), out, res, 3, "raw", class_names=CLASSES, total=n,
                    progress_every=30.0)
    return time.time() - t0


def meminfo() -> dict:
    out = {}
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0]) * 1024
    return out


def run_train(pack: pathlib.Path, res: int, mode: str, batch: int, steps: int, config: str,
              workdir: pathlib.Path, log: pathlib.Path, timeout: float, extra=()) -> dict:
    """train.py on `pack` for `steps` steps in a subprocess: peak RSS (bytes), wall s, data line."""
    shutil.rmtree(workdir, ignore_errors=True)
    kimg = steps * batch / 1000
    extra = list(extra)
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / config), "--workdir", str(workdir),
           "--config.data.source=folder", f"--config.data.path={pack}", f"--config.data.resolution={res}",
           f"--config.data.stream={mode}", "--config.data.cache_dir=", f"--config.train.batch_size={batch}",
           f"--config.train.total_kimg={kimg}", f"--config.train.kimg_per_tick={kimg}",
           "--config.train.snapshot_ticks=1000", "--config.train.image_snapshot_ticks=1000",
           "--config.train.grid_cols=2", "--config.metrics.every_ticks=0"] + extra
    env = dict(os.environ, JAXGEN_JAX_CACHE="")
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
    wall = time.time() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    data = re.search(r"^data \(train\): (.*)$", text, re.M)
    shutil.rmtree(workdir, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"train.py exited {proc.returncode} after {wall:.0f} s; see {log}:\n{text[-2000:]}")
    return dict(rss=ru.ru_maxrss * 1024, wall=wall, data=data.group(1) if data else "?", cmd=cmd)


def storage(data_line: str) -> str:
    """The storage part of the data summary line ('streamed from ...' / 'held in memory (...)')."""
    m = re.search(r"(streamed from .*|held in memory .*)$", data_line)
    return m.group(1) if m else data_line


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="2000,16000", help="pack sizes (images) at --res")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--modes", default="always,auto", help="config.data.stream values to run")
    ap.add_argument("--config", default="configs/acne.py:tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--pool", type=int, default=256, help="distinct synthetic images")
    ap.add_argument("--big_gb", type=float, default=0.0, help="also a 1024 px pack of >= this many GB (10^9)")
    ap.add_argument("--big_res", type=int, default=1024)
    ap.add_argument("--big_batch", type=int, default=4)
    ap.add_argument("--big_steps", type=int, default=4)
    ap.add_argument("--skip_small", action="store_true", help="only the --big_gb run")
    ap.add_argument("--workdir", default="/tmp/jaxgen_input_memory")
    ap.add_argument("--keep", action="store_true", help="keep the small packs in --workdir")
    ap.add_argument("--extra", default="--config.train.r1_gamma=0", help="more train.py flags")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per train.py run")
    ap.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    a = ap.parse_args()
    work = pathlib.Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    head = f"{machine_line()}; load average {load_line()} at the start"
    print(head, flush=True)
    rows, results, body = [], {}, []
    base_cmd = None
    try:
        if not a.skip_small:
            for n in [int(x) for x in a.n.split(",")]:
                pack = work / f"pack_{a.res}_{n}"
                took = make_pack(pack, a.res, n, a.pool)
                print(f"{n} images at {a.res} px packed in {took:.0f} s", flush=True)
                for mode in a.modes.split(","):
                    if mode == "auto" and n * a.res * a.res * 3 > STREAM_ABOVE_BYTES:
                        results[(n, mode)] = results.get((n, "always"))
                        rows.append(f"| {a.res} | {n:,} | {n * a.res * a.res * 3 / 2 ** 30:.2f} | auto | streamed "
                                    "(above 2 GiB): the 'always' run | | |")
                        continue
                    r = run_train(pack, a.res, mode, a.batch, a.steps, a.config, work / "run",
                                  work / f"train_{n}_{mode}.log", a.timeout, a.extra.split())
                    base_cmd = base_cmd or r["cmd"]
                    results[(n, mode)] = r
                    gib = n * a.res * a.res * 3 / 2 ** 30
                    rows.append(f"| {a.res} | {n:,} | {gib:.2f} | {mode} | {storage(r['data'])} | "
                                f"{r['rss'] / 2 ** 20:,.0f} | {r['wall']:.0f} |")
                    print(rows[-1], flush=True)
            table = ["| res | images | decoded GiB | data.stream | data summary: storage | peak RSS (MiB) | wall (s) |",
                     "| --- | --- | --- | --- | --- | --- | --- |"] + rows
            ns = [int(x) for x in a.n.split(",")]
            diffs = []
            for mode in a.modes.split(","):
                lo, hi = results[(ns[0], mode)]["rss"], results[(ns[-1], mode)]["rss"]
                diffs.append(f"stream {mode}: {ns[-1]:,} - {ns[0]:,} images = {(hi - lo) / 2 ** 20:+,.0f} MiB "
                             f"({(hi - lo) / 1e6:+,.0f} MB)")
            print("\n".join(table) + "\n" + "; ".join(diffs), flush=True)
            shown = " ".join(str(x) for x in base_cmd[1:]).replace(str(ROOT) + "/", "")
            body.append(f"{a.steps} steps of batch {a.batch} per run, one run per row; the train.py command "
                        f"(PACK, MODE varied):\n\n`{shown}`\n\n" + "\n".join(table) + "\n\nPeak RSS difference, "
                        + "; ".join(diffs) + " (target: under 300 MB with streaming).")
        if a.big_gb > 0:
            body.append(big_run(a, work))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = f"{head}, {load_line()} at the end.\n\n" + "\n\n".join(body)
    if a.record:
        record("Peak memory vs dataset size, and a pack larger than RAM (item 3, done-when)",
               "python bench/input_memory.py " + shlex.join(sys.argv[1:]), text)


def big_run(a, work: pathlib.Path) -> str:
    """The 'larger than RAM' check: write, train on with stream auto, delete."""
    res = a.big_res
    per = res * res * 3
    n = math.ceil(a.big_gb * 1e9 / per)
    need = n * per
    free = shutil.disk_usage(work).free
    if free < need + (2 << 30):
        raise SystemExit(f"--big_gb {a.big_gb}: {need / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free in {work}")
    pack = work / f"big_{res}_{n}"
    mem0 = meminfo()
    try:
        print(f"writing {n:,} images at {res} px ({need / 1e9:.1f} GB) to {pack}; MemTotal "
              f"{mem0['MemTotal'] / 2 ** 30:.1f} GiB, MemAvailable {mem0['MemAvailable'] / 2 ** 30:.1f} GiB",
              flush=True)
        took = make_pack(pack, res, n, a.pool // 4)
        on_disk = sum(f.stat().st_size for f in pack.iterdir())
        mem1 = meminfo()
        print(f"packed in {took:.0f} s: {on_disk / 1e9:.1f} GB on disk; MemAvailable now "
              f"{mem1['MemAvailable'] / 2 ** 30:.1f} GiB", flush=True)
        r = run_train(pack, res, "auto", a.big_batch, a.big_steps, a.config, work / "run_big",
                      work / "train_big.log", a.timeout, a.extra.split())
        print(f"train.py: peak RSS {r['rss'] / 2 ** 20:,.0f} MiB, {r['wall']:.0f} s; data (train): {r['data']}",
              flush=True)
        if "streamed from" not in r["data"]:
            raise SystemExit("stream 'auto' did not stream the big pack: " + r["data"])
        shown = " ".join(str(x) for x in r["cmd"][1:]).replace(str(ROOT) + "/", "")
        return (f"A pack larger than the machine's memory: {n:,} images at {res} px, raw, {on_disk / 1e9:.1f} GB "
                f"on disk ({need / 2 ** 30:.1f} GiB decoded) against MemTotal {mem0['MemTotal'] / 2 ** 30:.1f} GiB "
                f"(MemAvailable {mem0['MemAvailable'] / 2 ** 30:.1f} GiB before writing); written with "
                f"pack_arrays in {took:.0f} s, trained on with stream 'auto', then deleted:\n\n`{shown}`\n\n"
                "| images | on disk (GB) | steps x batch | peak RSS (MiB) | wall (s) |\n"
                "| --- | --- | --- | --- | --- |\n"
                f"| {n:,} | {on_disk / 1e9:.1f} | {a.big_steps} x {a.big_batch} | {r['rss'] / 2 ** 20:,.0f} | "
                f"{r['wall']:.0f} |\n\ndata (train): {r['data']}")
    finally:
        shutil.rmtree(pack, ignore_errors=True)
        shutil.rmtree(work / f".{pack.name}.packing-{os.getpid()}", ignore_errors=True)


if __name__ == "__main__":
    main()
